-- Deadlines: each missed deadline of a run (task_id NULL) or of one task in it, recorded
-- once. The unique key on (run, task) is what lets several schedulers check deadlines at
-- once: the one whose insert wins enqueues the deadline_missed callback in the same
-- transaction; the others insert nothing. Keep identical names in
-- migrations/postgres/0014_deadline_misses.sql.

CREATE TABLE deadline_misses (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run       INTEGER NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id    TEXT NOT NULL,
    task_id   TEXT,
    -- The deadline as written, for people: "at 09:00 (Asia/Tokyo)", "within 2h".
    deadline  TEXT NOT NULL,
    due_at    TEXT NOT NULL,
    missed_at TEXT NOT NULL,
    -- The deadline had fail = true: what was late was failed.
    failed    INTEGER NOT NULL
);
CREATE UNIQUE INDEX deadline_misses_key ON deadline_misses (run, COALESCE(task_id, ''));
CREATE INDEX deadline_misses_dag_idx ON deadline_misses (dag_id, run);
