-- Retention (`nightshift db clean`, the scheduler's `history_retention`): keep in step
-- with migrations/sqlite/0016_retention.sql.
--
-- A run's callback requests are found by (dag_id, run_id) when the run is deleted;
-- without this index every batch of deleted runs read the whole outbox.
CREATE INDEX callback_requests_run_idx ON callback_requests (dag_id, run_id);

-- Background maintenance shared by several schedulers: one row per job (`retention`).
-- A scheduler takes the job with a compare-and-set on the lease (in the database's
-- clock, like run leases) when the last pass finished long enough ago, renews the lease
-- while it works and records when it finished, so one pass runs at a time and the
-- interval holds across schedulers and restarts.
CREATE TABLE maintenance (
    name             TEXT PRIMARY KEY,
    owner            TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ
);
