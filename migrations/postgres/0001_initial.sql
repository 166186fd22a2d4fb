-- nightshift schema, PostgreSQL. Append-only: change the schema in a new migration.
-- Keep table and column names identical to migrations/sqlite/0001_initial.sql.

CREATE TABLE dags (
    dag_id                   TEXT PRIMARY KEY,
    file_path                TEXT NOT NULL,
    definition               JSONB NOT NULL,
    source_hash              TEXT NOT NULL,
    schedule                 TEXT,
    timezone                 TEXT NOT NULL,
    description              TEXT,
    owner                    TEXT,
    tags                     JSONB NOT NULL DEFAULT '[]',
    is_paused                BOOLEAN NOT NULL,
    is_active                BOOLEAN NOT NULL DEFAULT TRUE,
    last_parsed_at           TIMESTAMPTZ NOT NULL,
    next_dagrun_create_after TIMESTAMPTZ,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

CREATE TABLE import_errors (
    file_path  TEXT PRIMARY KEY,
    message    TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_runs (
    id                         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id                     TEXT NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    run_id                     TEXT NOT NULL,
    run_type                   TEXT NOT NULL,
    logical_date               TIMESTAMPTZ NOT NULL,
    data_interval_start        TIMESTAMPTZ NOT NULL,
    data_interval_end          TIMESTAMPTZ NOT NULL,
    state                      TEXT NOT NULL,
    conf                       JSONB NOT NULL DEFAULT '{}',
    queued_at                  TIMESTAMPTZ NOT NULL,
    start_date                 TIMESTAMPTZ,
    end_date                   TIMESTAMPTZ,
    definition_hash            TEXT NOT NULL,
    scheduler_owner            TEXT,
    scheduler_lease_expires_at TIMESTAMPTZ,
    CONSTRAINT dag_runs_dag_logical_date_key UNIQUE (dag_id, logical_date),
    CONSTRAINT dag_runs_dag_run_id_key UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_state_idx ON dag_runs (state, scheduler_lease_expires_at);

CREATE TABLE task_instances (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run              BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
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
    next_retry_at    TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ,
    start_date       TIMESTAMPTZ,
    end_date         TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    external_id      TEXT,
    output           JSONB,
    rendered         JSONB,
    hostname         TEXT,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT task_instances_run_task_map_key UNIQUE (run, task_id, map_index)
);
CREATE INDEX task_instances_claim_idx ON task_instances (state, queue, priority DESC);
CREATE INDEX task_instances_lease_idx ON task_instances (state, lease_expires_at);
CREATE INDEX task_instances_dag_state_idx ON task_instances (dag_id, state);
CREATE INDEX task_instances_pool_state_idx ON task_instances (pool, state);

CREATE TABLE attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_instance BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    worker        TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    state         TEXT NOT NULL,
    start_date    TIMESTAMPTZ NOT NULL,
    end_date      TIMESTAMPTZ,
    exit_code     INTEGER,
    external_id   TEXT,
    error         TEXT,
    CONSTRAINT attempts_ti_try_key UNIQUE (task_instance, try_number)
);

CREATE TABLE task_logs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_instance BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
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
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts      TIMESTAMPTZ NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    dag_id  TEXT,
    run_id  TEXT,
    task_id TEXT,
    ip      TEXT,
    details JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_dag_idx ON audit_log (dag_id, ts);

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE components (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    hostname     TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
