//! Writes only the worker needs: the rendered fields of a running try (with its log
//! lines, [`Store::store_progress`]) and a try handed back by a draining worker.

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;

use crate::tasks::TaskInstance;
use crate::{in_tx, LeaseKey, Store, StoreError};

/// The error recorded on the attempt of a try given back by [`Store::hand_back`].
pub const HANDED_BACK: &str = "handed back: the worker shut down before the try finished";

/// Stores `$rendered` (`&Value`) as the rendered fields of the running try `$key` on
/// `$executor`; yields false when the try is no longer running under that lease.
macro_rules! set_rendered {
    ($executor:expr, $key:expr, $rendered:expr, $now:expr) => {{
        let key: &$crate::LeaseKey = $key;
        sqlx::query(
            "UPDATE task_instances SET rendered = $4, updated_at = $5
             WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $6",
        )
        .bind(key.ti_id)
        .bind(key.try_number)
        .bind(&key.worker_id)
        .bind(sqlx::types::Json($rendered))
        .bind($now)
        .bind(nightshift_core::state::TaskState::Running.as_str())
        .execute($executor)
        .await?
        .rows_affected()
            == 1
    }};
}
pub(crate) use set_rendered;

impl Store {
    /// Gives a running try back (`running → scheduled`, the state machine's `HandBack`)
    /// without it counting against the retry budget: `max_tries` grows by one, because the
    /// next claim numbers its try `try_number + 1` (the attempt row of this try stays, closed
    /// as `scheduled` with [`HANDED_BACK`]). [`StoreError::Stale`] when the lease was lost.
    pub async fn hand_back(
        &self,
        key: &LeaseKey,
        now: DateTime<Utc>,
    ) -> Result<TaskInstance, StoreError> {
        const TI_SQL: &str = "
            UPDATE task_instances SET
                state = $5, max_tries = max_tries + 1, next_retry_at = NULL,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = $6
            WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $4
            RETURNING *";
        const ATTEMPT_SQL: &str = "
            UPDATE attempts SET state = $3, end_date = $4, error = $5
            WHERE task_instance = $1 AND try_number = $2";
        let next = TaskState::Running.on(nightshift_core::state::TaskEvent::HandBack)?;
        let instance = in_tx!(self, |tx| {
            let row: Option<TaskInstance> = sqlx::query_as(TI_SQL)
                .bind(key.ti_id)
                .bind(key.try_number)
                .bind(&key.worker_id)
                .bind(TaskState::Running.as_str())
                .bind(next.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let instance = row.ok_or_else(|| stale_lease(key))?;
            sqlx::query(ATTEMPT_SQL)
                .bind(key.ti_id)
                .bind(key.try_number)
                .bind(next.as_str())
                .bind(now)
                .bind(HANDED_BACK)
                .execute(&mut *tx)
                .await?;
            instance
        });
        Ok(instance)
    }
}

fn stale_lease(key: &LeaseKey) -> StoreError {
    StoreError::Stale {
        what: "task instance",
        id: key.ti_id.to_string(),
        expected: format!(
            "running at try {} leased to {:?}",
            key.try_number, key.worker_id
        ),
    }
}
