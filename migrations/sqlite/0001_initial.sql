-- nightshift schema, SQLite. Append-only: change the schema in a new migration.
-- Timestamps are RFC 3339 TEXT in UTC (as sqlx's chrono encoding writes them, so they
-- compare correctly as text), JSON is TEXT, booleans are 0/1.
-- Keep table and column names identical to migrations/postgres/0001_initial.sql.

CREATE TABLE dags (
    dag_id                   TEXT PRIMARY KEY,
    file_path                TEXT NOT NULL,
    definition               TEXT NOT NULL,
    source_hash              TEXT NOT NULL,
    schedule                 TEXT,
    timezone                 TEXT NOT NULL,
    description              TEXT,
    owner                    TEXT,
    tags                     TEXT NOT NULL DEFAULT '[]',
    is_paused                INTEGER NOT NULL,
    is_active                INTEGER NOT NULL DEFAULT 1,
    last_parsed_at           TEXT NOT NULL,
    next_dagrun_create_after TEXT,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL
);

CREATE TABLE import_errors (
    file_path  TEXT PRIMARY KEY,
    message    TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE dag_runs (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id                     TEXT NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    run_id                     TEXT NOT NULL,
    run_type                   TEXT NOT NULL,
    logical_date               TEXT NOT NULL,
    data_interval_start        TEXT NOT NULL,
    data_interval_end          TEXT NOT NULL,
    state                      TEXT NOT NULL,
    conf                       TEXT NOT NULL DEFAULT '{}',
    queued_at                  TEXT NOT NULL,
    start_date                 TEXT,
    end_date                   TEXT,
    definition_hash            TEXT NOT NULL,
    scheduler_owner            TEXT,
    scheduler_lease_expires_at TEXT,
    CONSTRAINT dag_runs_dag_logical_date_key UNIQUE (dag_id, logical_date),
    CONSTRAINT dag_runs_dag_run_id_key UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_state_idx ON dag_runs (state, scheduler_lease_expires_at);

CREATE TABLE task_instances (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run              INTEGER NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    map_index        INTEGER NOT NULL DEFAULT -1,
    state            TEXT NOT NULL,
    try_number       INTEGER NOT NULL DEFAULT 0,
    max_tries        INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    pool             TEXT NOT NULL,
    pool_slots       INTEGER NOT NULL DEFAULT 1,
    priority         INTEGER NOT NULL DEFAULT 0,
    next_retry_at    TEXT,
    queued_at        TEXT,
    start_date       TEXT,
    end_date         TEXT,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    external_id      TEXT,
    output           TEXT,
    rendered         TEXT,
    hostname         TEXT,
    updated_at       TEXT NOT NULL,
    CONSTRAINT task_instances_run_task_map_key UNIQUE (run, task_id, map_index)
);
CREATE INDEX task_instances_claim_idx ON task_instances (state, queue, priority DESC);
CREATE INDEX task_instances_lease_idx ON task_instances (state, lease_expires_at);
CREATE INDEX task_instances_dag_state_idx ON task_instances (dag_id, state);
CREATE INDEX task_instances_pool_state_idx ON task_instances (pool, state);

CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_instance INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    worker        TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    state         TEXT NOT NULL,
    start_date    TEXT NOT NULL,
    end_date      TEXT,
    exit_code     INTEGER,
    external_id   TEXT,
    error         TEXT,
    CONSTRAINT attempts_ti_try_key UNIQUE (task_instance, try_number)
);

CREATE TABLE task_logs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_instance INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    ts            TEXT NOT NULL,
    stream        TEXT NOT NULL,
    line          TEXT NOT NULL
);
CREATE INDEX task_logs_attempt_idx ON task_logs (task_instance, try_number, id);

CREATE TABLE pools (
    name        TEXT PRIMARY KEY,
    slots       INTEGER NOT NULL CHECK (slots >= 0),
    description TEXT NOT NULL DEFAULT ''
);
INSERT INTO pools (name, slots, description) VALUES ('default_pool', 128, 'Default pool');

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    dag_id  TEXT,
    run_id  TEXT,
    task_id TEXT,
    ip      TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_dag_idx ON audit_log (dag_id, ts);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE components (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
