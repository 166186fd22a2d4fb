-- Every log line gets its line number within its try (1, 2, 3, ... in the order the
-- worker received the lines, across stdout, stderr and nightshift's own lines): the
-- viewer pages, searches and links by it, and the order no longer rests on the id that
-- happened to be assigned at insert. Existing lines are numbered in id order. Unlike
-- PostgreSQL (a CHECK), SQLite gets no check of the stream: it cannot add a CHECK to an
-- existing table, and a per-row trigger doubled the cost of storing a log; the store
-- refuses an unknown stream before it writes (store/src/logs.rs, LOG_STREAMS).

ALTER TABLE task_logs ADD COLUMN line_no INTEGER NOT NULL DEFAULT 0;

UPDATE task_logs SET line_no = numbered.line_no
FROM (SELECT id, row_number() OVER (PARTITION BY task_instance, try_number ORDER BY id)
             AS line_no
      FROM task_logs) AS numbered
WHERE task_logs.id = numbered.id;

-- Replaces task_logs_attempt_idx (task_instance, try_number, id): reads go by line number.
CREATE UNIQUE INDEX task_logs_line_idx ON task_logs (task_instance, try_number, line_no);
DROP INDEX task_logs_attempt_idx;
