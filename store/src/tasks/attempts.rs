//! The worker's side of a task instance: claiming queued instances (each claim opens an
//! attempt row), heartbeats and external ids under the lease, finishing a try, reaping
//! expired leases, and reading a task instance's attempts.

use super::*;
use nightshift_core::state::TaskEvent;

impl Store {
    /// Atomically claims up to `req.limit` queued instances from `req.queues`, highest
    /// priority first: each becomes `running` at try + 1, leased to the worker, with an
    /// attempt row. Concurrent claimers never get the same instance (PostgreSQL skips
    /// rows locked by another claimer; SQLite serialises writers).
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
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
        let claim_sql = format!(
            "WITH picked AS MATERIALIZED (
                 SELECT id FROM task_instances
                 WHERE state = '{queued}' AND queue IN ({queues})
                 ORDER BY priority DESC, id
                 LIMIT $8 {lock})
             UPDATE task_instances SET
                 state = $1, try_number = try_number + 1, lease_owner = $2,
                 lease_expires_at = {lease_end}, start_date = $4, end_date = NULL,
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
        // The attempt rows and the runs (with their DAG's current definition hash, for
        // the worker's DAG cache) are one statement each, however many tries are claimed.
        let attempts_sql = format!(
            "INSERT INTO attempts (task_instance, try_number, worker, hostname, state, start_date)
             SELECT id, try_number, $1, $2, $3, $4 FROM task_instances WHERE {}
             RETURNING id, task_instance",
            id_in_json_list(self, "id", "$5")
        );
        let runs_sql = format!(
            "SELECT r.*, d.source_hash AS dag_source_hash
             FROM dag_runs r LEFT JOIN dags d ON d.dag_id = r.dag_id
             WHERE {}",
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
                .fetch_all(&mut *tx)
                .await?;
            if instances.is_empty() {
                Vec::new()
            } else {
                let ids: Vec<i64> = instances.iter().map(|i| i.id).collect();
                let attempt_ids: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(&attempts_sql)
                    .bind(&req.worker_id)
                    .bind(&req.hostname)
                    .bind(running.as_str())
                    .bind(req.now)
                    .bind(Json(&ids))
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(attempt, instance)| (instance, attempt))
                    .collect();
                let mut run_ids: Vec<i64> = instances.iter().map(|i| i.run).collect();
                run_ids.sort_unstable();
                run_ids.dedup();
                let mut runs: HashMap<i64, (DagRun, Option<String>)> = HashMap::new();
                for row in sqlx::query(&runs_sql)
                    .bind(Json(&run_ids))
                    .fetch_all(&mut *tx)
                    .await?
                {
                    use sqlx::{FromRow as _, Row as _};
                    let run = DagRun::from_row(&row)?;
                    let hash: Option<String> = row.try_get("dag_source_hash")?;
                    runs.insert(run.id, (run, hash));
                }
                let mut claimed = Vec::with_capacity(instances.len());
                for instance in instances {
                    let (Some(&attempt_id), Some((run, dag_hash))) =
                        (attempt_ids.get(&instance.id), runs.get(&instance.run))
                    else {
                        return Err(StoreError::not_found(
                            "attempt or run of a claimed task instance",
                            instance.id,
                        ));
                    };
                    claimed.push(ClaimedTask {
                        run: run.clone(),
                        dag_hash: dag_hash.clone(),
                        instance,
                        attempt_id,
                    });
                }
                claimed
            }
        });
        claimed.sort_by_key(|c| (std::cmp::Reverse(c.instance.priority), c.instance.id));
        Ok(claimed)
    }

    /// Extends the lease of a running try to `lease` from now in the database's clock;
    /// [`StoreError::Stale`] when the try is no longer running under this worker (reaped,
    /// cleared, marked).
    pub async fn heartbeat(&self, key: &LeaseKey, lease: Duration) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE task_instances SET lease_expires_at = {}
             WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $5",
            db_now_plus(self, "$4")
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(key.ti_id)
            .bind(key.try_number)
            .bind(&key.worker_id)
            .bind(lease_millis(lease))
            .bind(TaskState::Running.as_str())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(stale_lease(key));
        }
        Ok(())
    }

    /// Records an external job's id (an ECS task ARN) on the running try, at once, so a
    /// restarted worker can re-attach to it.
    pub async fn set_external_id(
        &self,
        key: &LeaseKey,
        external_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const TI_SQL: &str = "
            UPDATE task_instances SET external_id = $4, updated_at = $5
            WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $6";
        const ATTEMPT_SQL: &str =
            "UPDATE attempts SET external_id = $3 WHERE task_instance = $1 AND try_number = $2";
        in_tx!(self, |tx| {
            let done = sqlx::query(TI_SQL)
                .bind(key.ti_id)
                .bind(key.try_number)
                .bind(&key.worker_id)
                .bind(external_id)
                .bind(now)
                .bind(TaskState::Running.as_str())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(stale_lease(key));
            }
            sqlx::query(ATTEMPT_SQL)
                .bind(key.ti_id)
                .bind(key.try_number)
                .bind(external_id)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Running instances whose lease expired before the database's now, oldest expiry
    /// first.
    pub async fn expired_leases(&self, limit: i64) -> Result<Vec<TaskInstance>, StoreError> {
        let sql = format!(
            "SELECT * FROM task_instances
             WHERE state = $1 AND lease_expires_at < {}
             ORDER BY lease_expires_at, id
             LIMIT $2",
            db_now(self)
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(TaskState::Running.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Ends a running try for the worker that holds its lease: the instance's state and
    /// its attempt row change in one transaction. The instance's `external_id` is cleared
    /// (the attempt keeps it): the job it named is accounted for, nothing re-attaches to it. [`StoreError::Stale`] when the try was
    /// reaped, cleared or marked meanwhile — the late worker loses.
    pub async fn finish_attempt(&self, f: &FinishAttempt) -> Result<TaskInstance, StoreError> {
        if let (Backend::Postgres(pool), None) = (&self.backend, &f.callback) {
            return finish_attempt_in_one_statement(pool, f).await;
        }
        const TI_SQL: &str = concat!(finish_instance!(), " RETURNING *");
        let instance = in_tx!(self, |tx| {
            let row: Option<TaskInstance> = bind_finish_instance!(sqlx::query_as(TI_SQL), f)
                .fetch_optional(&mut *tx)
                .await?;
            let instance = row.ok_or_else(|| stale_lease(&f.key))?;
            end_attempt!(
                &mut *tx,
                &EndAttempt {
                    ti_id: f.key.ti_id,
                    try_number: f.key.try_number,
                    state: f.new_state,
                    now: f.now,
                    exit_code: f.exit_code,
                    error: f.error.as_deref(),
                }
            );
            if let Some(callback) = &f.callback {
                insert_callback!(&mut *tx, callback)?;
            }
            insert_log_lines!(&mut *tx, f.key.ti_id, f.key.try_number, &f.progress.logs);
            instance
        });
        Ok(instance)
    }

    /// Takes back a running try whose lease expired (in the database's clock) into
    /// `r.new_state`, ended at `r.now`, and closes its attempt with `r.error`.
    /// [`StoreError::Stale`] when the try finished, was heartbeated meanwhile, or another
    /// reaper won.
    pub async fn reap(&self, r: &Reap) -> Result<TaskInstance, StoreError> {
        let ti_sql = format!(
            "UPDATE task_instances SET
                 state = $4, end_date = $5, next_retry_at = $6,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $5
             WHERE id = $1 AND try_number = $2 AND state = $3 AND lease_expires_at < {}
             RETURNING *",
            db_now(self)
        );
        let instance = in_tx!(self, |tx| {
            let row: Option<TaskInstance> = sqlx::query_as(&ti_sql)
                .bind(r.ti_id)
                .bind(r.try_number)
                .bind(TaskState::Running.as_str())
                .bind(r.new_state.as_str())
                .bind(r.now)
                .bind(r.next_retry_at)
                .fetch_optional(&mut *tx)
                .await?;
            let instance = row.ok_or_else(|| StoreError::Stale {
                what: "task instance",
                id: r.ti_id.to_string(),
                expected: format!("running at try {} with an expired lease", r.try_number),
            })?;
            end_attempt!(
                &mut *tx,
                &EndAttempt {
                    ti_id: r.ti_id,
                    try_number: r.try_number,
                    state: r.new_state,
                    now: r.now,
                    exit_code: None,
                    error: Some(&r.error),
                }
            );
            instance
        });
        Ok(instance)
    }

    /// The attempts of one instance, by try number.
    pub async fn list_attempts(&self, ti_id: i64) -> Result<Vec<Attempt>, StoreError> {
        const SQL: &str = "SELECT * FROM attempts WHERE task_instance = $1 ORDER BY try_number";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}

/// [`Store::finish_attempt`] on PostgreSQL for an outcome without a callback (nearly all
/// of them): the instance, its attempt row and the log's last lines in one statement,
/// one round trip and one commit instead of five round trips. The instance is updated
/// only if its attempt row exists, so, as in the transaction, either all three are
/// written or none.
async fn finish_attempt_in_one_statement(
    pool: &sqlx::PgPool,
    f: &FinishAttempt,
) -> Result<TaskInstance, StoreError> {
    const SQL: &str = concat!(
        "WITH ti AS (",
        finish_instance!(),
        " AND EXISTS (SELECT 1 FROM attempts WHERE task_instance = $1 AND try_number = $2)
            RETURNING *),
        attempt AS (
            UPDATE attempts SET state = $5, end_date = $9, exit_code = $11, error = $12
            WHERE task_instance = $1 AND try_number = $2 AND EXISTS (SELECT 1 FROM ti)),
        logs AS (
            INSERT INTO task_logs (task_instance, try_number, ts, stream, line)
            SELECT $1, $2, l.ts, l.stream, l.line
            FROM UNNEST($13::timestamptz[], $14::text[], $15::text[]) WITH ORDINALITY
                 AS l (ts, stream, line, n)
            WHERE EXISTS (SELECT 1 FROM ti)
            ORDER BY l.n)
        SELECT * FROM ti"
    );
    const CURRENT_SQL: &str = "
        SELECT EXISTS (SELECT 1 FROM task_instances
                       WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $4)";
    let logs = &f.progress.logs;
    let row: Option<TaskInstance> = bind_finish_instance!(sqlx::query_as(SQL), f)
        .bind(f.exit_code)
        .bind(f.error.as_deref())
        .bind(logs.iter().map(|l| l.ts).collect::<Vec<_>>())
        .bind(logs.iter().map(|l| l.stream.as_str()).collect::<Vec<_>>())
        .bind(logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>())
        .fetch_optional(pool)
        .await?;
    if let Some(instance) = row {
        return Ok(instance);
    }
    let current: bool = sqlx::query_scalar(CURRENT_SQL)
        .bind(f.key.ti_id)
        .bind(f.key.try_number)
        .bind(&f.key.worker_id)
        .bind(TaskState::Running.as_str())
        .fetch_one(pool)
        .await?;
    if current {
        return Err(StoreError::not_found(
            "attempt",
            format!("task instance {} try {}", f.key.ti_id, f.key.try_number),
        ));
    }
    Err(stale_lease(&f.key))
}
