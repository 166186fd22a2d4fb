//! Writes under a running try's lease: heartbeats, the external job's id, the rendered
//! fields.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{stale_lease, LeaseKey};
use crate::clock::{db_now_plus, lease_millis};
use crate::{in_tx, on_pool, Store, StoreError};

/// The `UPDATE` storing `rendered` as the rendered fields of the running try `key`, each
/// column beside its value; it changes no row when the try is no longer running under
/// that lease.
pub(crate) fn set_rendered<'a, DB>(
    key: &'a LeaseKey,
    rendered: &'a Value,
    now: DateTime<Utc>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("UPDATE task_instances SET rendered = ");
    q.push_bind(Json(rendered));
    q.push(", updated_at = ");
    q.push_bind(now);
    q.push(" WHERE id = ");
    q.push_bind(key.ti_id);
    q.push(" AND try_number = ");
    q.push_bind(key.try_number);
    q.push(" AND lease_owner = ");
    q.push_bind(key.worker_id.as_str());
    q.push(" AND state = ");
    q.push_bind(TaskState::Running.as_str());
    q
}

impl Store {
    /// Extends the lease of a running try to `lease` from now in the database's clock;
    /// [`StoreError::Stale`] when the try is no longer running under this worker (reaped,
    /// cleared, marked).
    pub(crate) async fn heartbeat(
        &self,
        key: &LeaseKey,
        lease: Duration,
    ) -> Result<(), StoreError> {
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
    /// restarted worker can re-attach to it, with the kind that owns it (whose cancel API
    /// stops it if the try is given up, see `external`).
    pub(crate) async fn set_external_id(
        &self,
        key: &LeaseKey,
        external_id: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const TI_SQL: &str = "
            UPDATE task_instances SET external_id = $4, updated_at = $5, external_kind = $7
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
                .bind(kind)
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
}
