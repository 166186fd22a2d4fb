-- Each try records when it was queued (copied from the instance at its claim), so the
-- run page's Gantt chart draws every try's wait for a worker, not only the last one's.
-- Existing tries get the instance's queued time only where it still belongs to them:
-- the instance's latest try, queued before it started (a cleared instance queued again
-- holds the next try's time). Older tries stay NULL and are drawn without a wait.

ALTER TABLE attempts ADD COLUMN queued_at TIMESTAMPTZ;

UPDATE attempts SET queued_at = ti.queued_at
FROM task_instances ti
WHERE ti.id = attempts.task_instance
  AND ti.try_number = attempts.try_number
  AND ti.queued_at <= attempts.start_date;
