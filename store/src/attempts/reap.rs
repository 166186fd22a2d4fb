//! The scheduler's side of a try: finding leases that expired (in the database's clock)
//! and taking those tries back.

use super::{decide_reap, EndAttempt, Reap};
use crate::clock::db_now;
use crate::{in_tx, on_pool, Store, StoreError, TaskInstance};
use nightshift_core::state::TaskState;

impl Store {
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
        let new_state = decide_reap(r.new_state)?;
        let instance = in_tx!(self, |tx| {
            let row: Option<TaskInstance> = sqlx::query_as(&ti_sql)
                .bind(r.ti_id)
                .bind(r.try_number)
                .bind(TaskState::Running.as_str())
                .bind(new_state.as_str())
                .bind(r.now)
                .bind(r.next_retry_at)
                .fetch_optional(&mut *tx)
                .await?;
            let instance = row.ok_or_else(|| StoreError::Stale {
                what: "task instance",
                id: r.ti_id.to_string(),
                expected: format!("running at try {} with an expired lease", r.try_number),
            })?;
            let end = EndAttempt {
                ti_id: r.ti_id,
                try_number: r.try_number,
                state: new_state,
                now: r.now,
                exit_code: None,
                error: Some(&r.error),
            };
            let done = end.statement().build().execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(end.missing());
            }
            instance
        });
        Ok(instance)
    }
}
