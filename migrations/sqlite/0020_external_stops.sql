-- External jobs are never orphaned or confused (issue 16, item 6); see
-- migrations/postgres/0020_external_stops.sql for the why of each part.
CREATE TABLE installation (
    singleton       INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    installation_id TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
INSERT INTO installation (installation_id) VALUES (lower(hex(randomblob(16))));

ALTER TABLE task_instances ADD COLUMN external_kind TEXT;

CREATE TABLE external_stops (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_instance INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    claimed_until TEXT,
    claims        INTEGER NOT NULL DEFAULT 0,
    done_at       TEXT,
    result        TEXT
);
CREATE INDEX external_stops_pending_idx ON external_stops (id) WHERE done_at IS NULL;

-- SQLite's triggers cannot change NEW: record the stop and clear the id after the update
-- (the UPDATE ... RETURNING that caused it still returns the id it had).
CREATE TRIGGER task_instances_external_given_up
AFTER UPDATE OF state ON task_instances
FOR EACH ROW
WHEN NEW.external_id IS NOT NULL
     AND NEW.state IN ('pending', 'success', 'failed', 'skipped', 'upstream_failed', 'removed')
BEGIN
    INSERT INTO external_stops (task_instance, try_number, kind, external_id, reason)
    VALUES (NEW.id, NEW.try_number, COALESCE(NEW.external_kind, ''), NEW.external_id,
            'the try was given up (' || OLD.state || ' -> ' || NEW.state || ')');
    UPDATE task_instances SET external_id = NULL, external_kind = NULL WHERE id = NEW.id;
END;
