-- The text of each DAG file as loaded, one row per definition version (the hash in
-- dags.source_hash and dag_runs.definition_hash), so the UI shows the file a run was
-- made from, not only the one loaded now. Rows go with their DAG.
CREATE TABLE dag_sources (
    dag_id      TEXT NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    source_hash TEXT NOT NULL,
    file_path   TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dag_id, source_hash)
);
