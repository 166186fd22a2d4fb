-- Definition versions (issue 15): each kept DAG file (dag_sources, one row per
-- definition hash) becomes a numbered version of its DAG with the parsed definition it
-- meant, so a try can run the definition of any version, not only the one loaded now.
-- Existing rows are numbered in the order they were loaded; the current version gets
-- its definition from dags (older ones have none: only their text was kept).
ALTER TABLE dag_sources ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dag_sources ADD COLUMN definition TEXT;
UPDATE dag_sources SET version = (
    SELECT COUNT(*) FROM dag_sources o
    WHERE o.dag_id = dag_sources.dag_id
      AND (o.created_at < dag_sources.created_at
           OR (o.created_at = dag_sources.created_at AND o.source_hash <= dag_sources.source_hash)));
UPDATE dag_sources SET definition = (
    SELECT d.definition FROM dags d
    WHERE d.dag_id = dag_sources.dag_id AND d.source_hash = dag_sources.source_hash);
CREATE UNIQUE INDEX dag_sources_version_key ON dag_sources (dag_id, version);

-- The version a task instance's next try runs when a person cleared it keeping the
-- run's version; NULL: the DAG's current version (a clear's default, Airflow 2's).
ALTER TABLE task_instances ADD COLUMN definition_hash TEXT;
-- The version each try ran (NULL for tries from before versions were recorded).
ALTER TABLE attempts ADD COLUMN definition_hash TEXT;
