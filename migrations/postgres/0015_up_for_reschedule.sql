-- Waiting costs no slot: a try that waits (a sensor whose condition is not true yet)
-- gives its worker slot back in the new state 'up_for_reschedule' until its next poke
-- time (kept in next_retry_at), and the claim that wakes it resumes the same try: its
-- attempt row stays open (end_date NULL) while it waits, and `reschedules` counts how
-- often the try gave its slot back. Keep the state list in step with core/src/state.rs
-- (TaskState::ALL) and with migrations/sqlite/0015_up_for_reschedule.sql.

ALTER TABLE task_instances DROP CONSTRAINT task_instances_state_check;
ALTER TABLE task_instances ADD CONSTRAINT task_instances_state_check CHECK (state IN (
    'pending', 'scheduled', 'queued', 'running', 'success', 'failed', 'up_for_retry',
    'up_for_reschedule', 'upstream_failed', 'skipped', 'removed'));

ALTER TABLE attempts ADD COLUMN reschedules INTEGER NOT NULL DEFAULT 0;
