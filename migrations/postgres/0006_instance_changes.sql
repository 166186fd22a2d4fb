-- The scheduler keeps each running run's instances in memory and reads back only the
-- rows that changed since its last read, instead of the whole run on every pass (24 ms a
-- pass with 10,000 instances). Every insert and update stamps the row with its
-- transaction's id; a read returns the rows stamped at or after the oldest transaction
-- still running at the previous read (that read's snapshot xmin), so a transaction that
-- commits late is still seen. See Store::instance_changes.
ALTER TABLE task_instances ADD COLUMN changed_xid BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION task_instances_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := txid_current();
    RETURN NEW;
END
$$;

CREATE TRIGGER task_instances_changed BEFORE INSERT OR UPDATE ON task_instances
    FOR EACH ROW EXECUTE FUNCTION task_instances_stamp_change();

CREATE INDEX task_instances_changes_idx ON task_instances (run, changed_xid);
