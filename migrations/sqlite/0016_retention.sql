-- Retention (`nightshift db clean`, the scheduler's `history_retention`): keep in step
-- with migrations/postgres/0016_retention.sql.
--
-- A run's callback requests are found by (dag_id, run_id) when the run is deleted;
-- without this index every batch of deleted runs read the whole outbox.
CREATE INDEX callback_requests_run_idx ON callback_requests (dag_id, run_id);

-- Background maintenance shared by several schedulers: one row per job (`retention`).
-- A scheduler takes the job with a compare-and-set on the lease (in the database's
-- clock, like run leases) when the last pass finished long enough ago, renews the lease
-- while it works and records when it finished, so one pass runs at a time and the
-- interval holds across schedulers and restarts.
--
-- Giving space back (auto_vacuum = INCREMENTAL) cannot be switched on here: an existing
-- file needs a full VACUUM, which rewrites it. New files get it when they are created
-- (Store::connect); `nightshift db vacuum` converts an existing one.
CREATE TABLE maintenance (
    name             TEXT PRIMARY KEY,
    owner            TEXT,
    lease_expires_at TEXT,
    last_finished_at TEXT
);
