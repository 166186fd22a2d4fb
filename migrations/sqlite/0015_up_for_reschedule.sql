-- Waiting costs no slot: a try that waits (a sensor whose condition is not true yet)
-- gives its worker slot back in the new state 'up_for_reschedule' until its next poke
-- time (kept in next_retry_at), and the claim that wakes it resumes the same try: its
-- attempt row stays open (end_date NULL) while it waits, and `reschedules` counts how
-- often the try gave its slot back. Keep the state list in step with core/src/state.rs
-- (TaskState::ALL) and with migrations/postgres/0015_up_for_reschedule.sql.

DROP TRIGGER task_instances_state_check_insert;
DROP TRIGGER task_instances_state_check_update;

CREATE TRIGGER task_instances_state_check_insert
BEFORE INSERT ON task_instances
WHEN NEW.state NOT IN ('pending', 'scheduled', 'queued', 'running', 'success', 'failed',
                       'up_for_retry', 'up_for_reschedule', 'upstream_failed', 'skipped',
                       'removed')
BEGIN
    SELECT RAISE(ABORT, 'task_instances_state_check: unknown task state');
END;

CREATE TRIGGER task_instances_state_check_update
BEFORE UPDATE OF state ON task_instances
WHEN NEW.state NOT IN ('pending', 'scheduled', 'queued', 'running', 'success', 'failed',
                       'up_for_retry', 'up_for_reschedule', 'upstream_failed', 'skipped',
                       'removed')
BEGIN
    SELECT RAISE(ABORT, 'task_instances_state_check: unknown task state');
END;

ALTER TABLE attempts ADD COLUMN reschedules INTEGER NOT NULL DEFAULT 0;
