-- Every state change of a task instance updates each of its indexes. These two serve no
-- query any more: claims use the partial index of 0005 (state = 'queued', in claim
-- order), and every other lookup by state (scheduled candidates, queued and running
-- counts per pool or DAG, expired leases) starts with `state`, which
-- task_instances_lease_idx (state, lease_expires_at) covers.
DROP INDEX task_instances_claim_idx;
DROP INDEX task_instances_pool_state_idx;
