//! The claim: queued instances become running tries of one worker, atomically.

use std::collections::HashMap;

use nightshift_core::state::{TaskEvent, TaskState};
use sqlx::types::Json;

use super::{ClaimRequest, RunningTry};
use crate::clock::{db_now_plus, lease_millis};
use crate::{
    id_in_json_list, in_tx, json_list_sql, Backend, DagRun, Store, StoreError, TaskInstance,
};

impl Store {
    /// Atomically claims up to `req.limit` queued instances from `req.queues`, highest
    /// priority first: each becomes `running` at try + 1, leased to the worker, with an
    /// attempt row; a waiting try woken at its next poke is resumed instead (same try,
    /// same attempt row, [`RunningTry::resumed`]). Concurrent claimers never get the same
    /// instance (PostgreSQL skips rows locked by another claimer; SQLite serialises
    /// writers). Each try comes back as a [`RunningTry`], the only handle that can
    /// heartbeat, finish or hand it back.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<RunningTry>, StoreError> {
        if req.queues.is_empty() || req.limit <= 0 {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite(_) => "",
        };
        // The picked ids are a MATERIALIZED CTE: as a plain `IN (subquery)` PostgreSQL
        // may rescan the subquery, skip the rows this statement already updated, and
        // claim more than `limit`.
        // A queued instance whose current try's attempt row is still open and waiting
        // (`up_for_reschedule`, bound as $9) is a waiting try woken at its next poke: the
        // claim resumes that try (same try number, start date and attempt row) instead of
        // starting a new one, so waiting never spends a retry nor makes a new try. An open
        // row in any other state (a try whose instance was moved on without it) is never
        // taken over: the claim starts a new try.
        let waiting = "EXISTS (SELECT 1 FROM attempts a
                               WHERE a.task_instance = task_instances.id
                                 AND a.try_number = task_instances.try_number
                                 AND a.end_date IS NULL AND a.state = $9)";
        let claim_sql = format!(
            "WITH picked AS MATERIALIZED (
                 SELECT id FROM task_instances
                 WHERE state = '{queued}' AND queue IN ({queues})
                 ORDER BY priority DESC, id
                 LIMIT $8 {lock})
             UPDATE task_instances SET
                 state = $1, try_number = try_number + CASE WHEN {waiting} THEN 0 ELSE 1 END,
                 lease_owner = $2, lease_expires_at = {lease_end},
                 start_date = CASE WHEN {waiting} THEN start_date ELSE $4 END, end_date = NULL,
                 next_retry_at = NULL, hostname = $5, updated_at = $4
             WHERE state = $6 AND id IN (SELECT id FROM picked)
             RETURNING *",
            queues = json_list_sql(self, "$7"),
            // In the database's clock, so that a worker's own clock never shortens or
            // stretches its lease (see `clock`).
            lease_end = db_now_plus(self, "$3"),
            // A literal, not a parameter: a generic plan of a prepared statement cannot
            // use the partial index `WHERE state = 'queued'` for a `state = $n`.
            queued = TaskState::Queued.as_str(),
        );
        // The attempt rows and the runs are one statement each, however many tries are
        // claimed: a resumed try's open row is taken over (its `reschedules` counted, its
        // version kept), a new try gets a row recording the version it runs: the one a
        // person's clear kept (the instance's `definition_hash`), else the DAG's current
        // one. An attempt keeps its instance's queued time (the next queueing overwrites
        // it). PostgreSQL does both in one statement (the insert's `NOT EXISTS` sees the
        // rows as they were before the update); SQLite has no writing CTE.
        let resume_sql = format!(
            "UPDATE attempts SET state = $3, worker = $1, hostname = $2,
                                 reschedules = reschedules + 1
             WHERE end_date IS NULL AND {}
               AND try_number = (SELECT ti.try_number FROM task_instances ti
                                 WHERE ti.id = attempts.task_instance)
             RETURNING id, task_instance, reschedules, definition_hash",
            id_in_json_list(self, "task_instance", "$5")
        );
        let insert_sql = format!(
            "INSERT INTO attempts (task_instance, try_number, worker, hostname, state,
                                   queued_at, start_date, definition_hash)
             SELECT ti.id, ti.try_number, $1, $2, $3, ti.queued_at, $4,
                    COALESCE(ti.definition_hash, d.source_hash)
             FROM task_instances ti LEFT JOIN dags d ON d.dag_id = ti.dag_id
             WHERE {} AND NOT EXISTS (SELECT 1 FROM attempts a
                                      WHERE a.task_instance = ti.id
                                        AND a.try_number = ti.try_number)
             RETURNING id, task_instance, 0, definition_hash",
            id_in_json_list(self, "ti.id", "$5")
        );
        let attempts_sql = match self.backend {
            Backend::Postgres(_) => format!(
                "WITH resumed AS ({resume_sql}), inserted AS ({insert_sql})
                 SELECT id, task_instance, reschedules, definition_hash FROM resumed
                 UNION ALL SELECT id, task_instance, 0, definition_hash FROM inserted"
            ),
            Backend::Sqlite(_) => insert_sql,
        };
        let runs_sql = format!(
            "SELECT r.* FROM dag_runs r WHERE {}",
            id_in_json_list(self, "r.id", "$1")
        );
        let running = TaskState::Queued.on(TaskEvent::Claim)?;
        let mut claimed = in_tx!(self, |tx| {
            let instances: Vec<TaskInstance> = sqlx::query_as(&claim_sql)
                .bind(running.as_str())
                .bind(&req.worker_id)
                .bind(lease_millis(req.lease))
                .bind(req.now)
                .bind(&req.hostname)
                .bind(TaskState::Queued.as_str())
                .bind(Json(&req.queues))
                .bind(req.limit)
                .bind(TaskState::UpForReschedule.as_str())
                .fetch_all(&mut *tx)
                .await?;
            if instances.is_empty() {
                Vec::new()
            } else {
                let ids: Vec<i64> = instances.iter().map(|i| i.id).collect();
                // instance id → (attempt id, the try's reschedules: 0 for a new try, the
                // version it runs)
                type Row = (i64, i64, i32, Option<String>);
                let mut attempts: HashMap<i64, (i64, i32, Option<String>)> = HashMap::new();
                let resumed: Vec<Row> = match self.backend {
                    Backend::Postgres(_) => Vec::new(),
                    Backend::Sqlite(_) => {
                        sqlx::query_as(&resume_sql)
                            .bind(&req.worker_id)
                            .bind(&req.hostname)
                            .bind(running.as_str())
                            .bind(req.now)
                            .bind(Json(&ids))
                            .fetch_all(&mut *tx)
                            .await?
                    }
                };
                let rows: Vec<Row> = sqlx::query_as(&attempts_sql)
                    .bind(&req.worker_id)
                    .bind(&req.hostname)
                    .bind(running.as_str())
                    .bind(req.now)
                    .bind(Json(&ids))
                    .fetch_all(&mut *tx)
                    .await?;
                for (attempt, instance, reschedules, hash) in resumed.into_iter().chain(rows) {
                    attempts.insert(instance, (attempt, reschedules, hash));
                }
                let mut run_ids: Vec<i64> = instances.iter().map(|i| i.run).collect();
                run_ids.sort_unstable();
                run_ids.dedup();
                let runs: HashMap<i64, DagRun> = sqlx::query_as::<_, DagRun>(&runs_sql)
                    .bind(Json(&run_ids))
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|run| (run.id, run))
                    .collect();
                let mut claimed = Vec::with_capacity(instances.len());
                for instance in instances {
                    let (Some((attempt_id, reschedules, dag_hash)), Some(run)) =
                        (attempts.get(&instance.id), runs.get(&instance.run))
                    else {
                        return Err(StoreError::not_found(
                            "attempt or run of a claimed task instance",
                            instance.id,
                        ));
                    };
                    claimed.push(RunningTry::new(
                        self.clone(),
                        &req.worker_id,
                        instance,
                        run.clone(),
                        *attempt_id,
                        dag_hash.clone(),
                        *reschedules,
                    ));
                }
                claimed
            }
        });
        claimed.sort_by_key(|c| (std::cmp::Reverse(c.instance().priority), c.instance().id));
        Ok(claimed)
    }
}
