-- Every log line gets its line number within its try (1, 2, 3, ... in the order the
-- worker received the lines, across stdout, stderr and nightshift's own lines): the
-- viewer pages, searches and links by it, and the order no longer rests on the id that
-- happened to be assigned at insert. Existing lines are numbered in id order. The stream
-- is one of ours (keep the list in step with LOG_STREAMS in store/src/logs.rs, which the
-- store checks on both backends; SQLite has no database check, see its 0010).

ALTER TABLE task_logs ADD COLUMN line_no BIGINT;

UPDATE task_logs SET line_no = numbered.line_no
FROM (SELECT id, row_number() OVER (PARTITION BY task_instance, try_number ORDER BY id)
             AS line_no
      FROM task_logs) AS numbered
WHERE task_logs.id = numbered.id;

ALTER TABLE task_logs ALTER COLUMN line_no SET NOT NULL;

-- Replaces task_logs_attempt_idx (task_instance, try_number, id): reads go by line number.
CREATE UNIQUE INDEX task_logs_line_idx ON task_logs (task_instance, try_number, line_no);
DROP INDEX task_logs_attempt_idx;

ALTER TABLE task_logs ADD CONSTRAINT task_logs_stream_check
    CHECK (stream IN ('stdout', 'stderr', 'system', 'scheduler'));
