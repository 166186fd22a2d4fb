-- Scheduling: the callback outbox. Append-only; keep identical names in
-- migrations/postgres/0002_scheduling.sql.
--
-- Whoever makes a transition that has a callback (the worker finishing a try, the
-- scheduler reaping a lease or ending a run) inserts a row in the same breath; only
-- schedulers send them. `next_attempt_at` is both the retry backoff of a pending
-- request and the lease of the scheduler sending it.

CREATE TABLE callback_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    event           TEXT NOT NULL,
    dag_id          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    task_id         TEXT,
    map_index       INTEGER NOT NULL DEFAULT -1,
    try_number      INTEGER NOT NULL DEFAULT 0,
    callback        TEXT NOT NULL,
    payload         TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    sent_at         TEXT,
    next_attempt_at TEXT,
    claimed_by      TEXT
);
CREATE INDEX callback_requests_pending_idx ON callback_requests (state, next_attempt_at);
CREATE INDEX task_instances_state_run_idx ON task_instances (state, run);
