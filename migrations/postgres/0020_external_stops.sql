-- External jobs are never orphaned or confused (issue 16, item 6).
--
-- installation: one row, this installation's id, generated once. Deterministic job
-- names and client tokens (ECS startedBy, Athena ClientRequestToken, Redshift statement
-- names, BigQuery job ids) include it, so two installations with the same DAG, run and
-- task ids on one cloud account never pick up each other's jobs.
CREATE TABLE installation (
    singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    installation_id TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO installation (installation_id) VALUES (replace(gen_random_uuid()::text, '-', ''));

-- Which task kind owns the instance's external_id (the kind whose cancel API stops it).
ALTER TABLE task_instances ADD COLUMN external_kind TEXT;

-- Jobs to stop: a try that owned an external job was given up without its worker
-- (reaped with no retries left, its run cancelled or timed out, marked or cleared by a
-- person). Workers drain the queue through each kind's cancel API.
CREATE TABLE external_stops (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_instance BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_until TIMESTAMPTZ,
    claims        INTEGER NOT NULL DEFAULT 0,
    done_at       TIMESTAMPTZ,
    result        TEXT
);
CREATE INDEX external_stops_pending_idx ON external_stops (id) WHERE done_at IS NULL;

-- The one place that notices a given-up job: an instance whose state moves to one where
-- no try of it runs any more (a person's clear to pending, or a finished state) while
-- it still holds an external id. A worker that records its try's outcome clears
-- external_id in the same UPDATE, so this fires only when nobody accounted for the job.
-- The retry path (up_for_retry, scheduled, queued, running) keeps the id: the next try
-- re-attaches to the job instead.
CREATE FUNCTION nightshift_external_given_up() RETURNS trigger AS $$
BEGIN
    INSERT INTO external_stops (task_instance, try_number, kind, external_id, reason)
    VALUES (NEW.id, NEW.try_number, COALESCE(NEW.external_kind, ''), NEW.external_id,
            'the try was given up (' || OLD.state || ' -> ' || NEW.state || ')');
    NEW.external_id := NULL;
    NEW.external_kind := NULL;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER task_instances_external_given_up
BEFORE UPDATE OF state ON task_instances
FOR EACH ROW
WHEN (NEW.external_id IS NOT NULL
      AND NEW.state IN ('pending', 'success', 'failed', 'skipped', 'upstream_failed', 'removed'))
EXECUTE FUNCTION nightshift_external_given_up();
