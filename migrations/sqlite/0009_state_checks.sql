-- The database refuses a state that is not one of ours, whoever writes it (a bug, a hand
-- edit, an older binary). SQLite cannot add a CHECK to an existing table, so triggers
-- abort such a write instead. Keep the lists in step with core/src/state.rs
-- (TaskState::ALL, RunState::ALL; a store test inserts every one of them) and with
-- migrations/postgres/0009_state_checks.sql.

CREATE TRIGGER task_instances_state_check_insert
BEFORE INSERT ON task_instances
WHEN NEW.state NOT IN ('pending', 'scheduled', 'queued', 'running', 'success', 'failed',
                       'up_for_retry', 'upstream_failed', 'skipped', 'removed')
BEGIN
    SELECT RAISE(ABORT, 'task_instances_state_check: unknown task state');
END;

CREATE TRIGGER task_instances_state_check_update
BEFORE UPDATE OF state ON task_instances
WHEN NEW.state NOT IN ('pending', 'scheduled', 'queued', 'running', 'success', 'failed',
                       'up_for_retry', 'upstream_failed', 'skipped', 'removed')
BEGIN
    SELECT RAISE(ABORT, 'task_instances_state_check: unknown task state');
END;

CREATE TRIGGER dag_runs_state_check_insert
BEFORE INSERT ON dag_runs
WHEN NEW.state NOT IN ('queued', 'running', 'success', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'dag_runs_state_check: unknown run state');
END;

CREATE TRIGGER dag_runs_state_check_update
BEFORE UPDATE OF state ON dag_runs
WHEN NEW.state NOT IN ('queued', 'running', 'success', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'dag_runs_state_check: unknown run state');
END;
