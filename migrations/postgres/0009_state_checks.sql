-- The database refuses a state that is not one of ours, whoever writes it (a bug, a hand
-- edit, an older binary). Keep the lists in step with core/src/state.rs (TaskState::ALL,
-- RunState::ALL; a store test inserts every one of them) and with
-- migrations/sqlite/0009_state_checks.sql.

ALTER TABLE task_instances ADD CONSTRAINT task_instances_state_check CHECK (state IN (
    'pending', 'scheduled', 'queued', 'running', 'success', 'failed', 'up_for_retry',
    'upstream_failed', 'skipped', 'removed'));

ALTER TABLE dag_runs ADD CONSTRAINT dag_runs_state_check CHECK (state IN (
    'queued', 'running', 'success', 'failed'));
