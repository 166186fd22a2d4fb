-- Rebuilds the daily marts for one target date from the staging tables the extract
-- loaded. Rendered by the template engine; :target_date is a bound parameter.
CREATE SCHEMA IF NOT EXISTS mart;

CREATE TABLE IF NOT EXISTS mart.daily_lessons (
    target_date date NOT NULL,
    teacher_id  bigint NOT NULL,
    lessons     bigint NOT NULL,
    students    bigint NOT NULL,
    PRIMARY KEY (target_date, teacher_id)
);

DELETE FROM mart.daily_lessons WHERE target_date = CAST(:target_date AS date);

INSERT INTO mart.daily_lessons (target_date, teacher_id, lessons, students)
SELECT CAST(:target_date AS date), l.teacher_id, count(*), count(DISTINCT l.student_id)
FROM staging.lesson AS l
WHERE CAST(l.started_at AS date) = CAST(:target_date AS date)
GROUP BY l.teacher_id;
