-- Approval steps (issue 15): an `approval` task waits for a person in the new state
-- 'awaiting_input' (Airflow 3.3's name), holding no worker slot, until someone approves
-- or rejects it or its timeout (kept in next_retry_at) decides. Its try's attempt row
-- stays open while it waits, as for 'up_for_reschedule'. Keep the state list in step
-- with core/src/state.rs (TaskState::ALL) and with migrations/sqlite/0018_awaiting_input.sql.

ALTER TABLE task_instances DROP CONSTRAINT task_instances_state_check;
ALTER TABLE task_instances ADD CONSTRAINT task_instances_state_check CHECK (state IN (
    'pending', 'scheduled', 'queued', 'running', 'success', 'failed', 'up_for_retry',
    'up_for_reschedule', 'awaiting_input', 'upstream_failed', 'skipped', 'removed'));

-- The scheduler's timeout check reads the waiting approvals whose time is up.
CREATE INDEX task_instances_awaiting_input_idx ON task_instances (next_retry_at)
    WHERE state = 'awaiting_input';
