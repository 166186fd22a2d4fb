//! The end of a try as its worker reports it: an outcome ([`Store::finish_attempt`]) or
//! the try handed back by a draining worker ([`Store::hand_back`]).

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{decide_try_end, stale_lease, EndAttempt, FinishAttempt, LeaseKey};
use crate::callbacks::insert_callback;
use crate::logs::insert_lines;
use crate::{in_tx, Backend, Store, StoreError, TaskInstance};

/// The error recorded on the attempt of a try given back by [`crate::RunningTry::hand_back`].
pub const HANDED_BACK: &str = "handed back: the worker shut down before the try finished";

/// Pushes the instance's side of a try's end, reported by the worker holding its lease
/// ([`Store::finish_attempt`]): `UPDATE task_instances SET … WHERE` the try is still
/// running under that lease, each column beside its value. The lease and the external id
/// are dropped; output and rendered fields are kept unless the outcome brings them.
fn push_finish_instance<'a, DB>(q: &mut QueryBuilder<'a, DB>, f: &'a FinishAttempt)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Option<DateTime<Utc>>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
{
    q.push("UPDATE task_instances SET state = ");
    q.push_bind(f.new_state.as_str());
    // A try handed back (`scheduled`) or waiting (`up_for_reschedule`, `awaiting_input`)
    // has not ended the instance.
    q.push(", end_date = ");
    let ends = !matches!(
        f.new_state,
        TaskState::Scheduled | TaskState::UpForReschedule | TaskState::AwaitingInput
    );
    q.push_bind(ends.then_some(f.now));
    q.push(", next_retry_at = ");
    q.push_bind(f.next_retry_at);
    if let Some(output) = &f.output {
        q.push(", output = ");
        q.push_bind(Json(output));
    }
    if let Some(rendered) = &f.progress.rendered {
        q.push(", rendered = ");
        q.push_bind(Json(rendered));
    }
    q.push(", lease_owner = NULL, lease_expires_at = NULL, external_id = NULL, updated_at = ");
    q.push_bind(f.now);
    q.push(" WHERE id = ");
    q.push_bind(f.key.ti_id);
    q.push(" AND try_number = ");
    q.push_bind(f.key.try_number);
    q.push(" AND lease_owner = ");
    q.push_bind(f.key.worker_id.as_str());
    q.push(" AND state = ");
    q.push_bind(TaskState::Running.as_str());
}

impl Store {
    /// Ends a running try for the worker that holds its lease: the instance's state and
    /// its attempt row change in one transaction. The instance's `external_id` is cleared
    /// (the attempt keeps it): the job it named is accounted for, nothing re-attaches to it. [`StoreError::Stale`] when the try was
    /// reaped, cleared or marked meanwhile — the late worker loses.
    pub(crate) async fn finish_attempt(
        &self,
        f: &FinishAttempt,
    ) -> Result<TaskInstance, StoreError> {
        // The state written is the state machine's, never only the worker's word.
        decide_try_end(f.new_state)?;
        if let (Backend::Postgres(pool), None) = (&self.backend, &f.callback) {
            return finish_attempt_in_one_statement(pool, f).await;
        }
        let instance = in_tx!(self, |tx| {
            let mut update = QueryBuilder::new("");
            push_finish_instance(&mut update, f);
            update.push(" RETURNING *");
            let row: Option<TaskInstance> =
                update.build_query_as().fetch_optional(&mut *tx).await?;
            let instance = row.ok_or_else(|| stale_lease(&f.key))?;
            let end = EndAttempt {
                ti_id: f.key.ti_id,
                try_number: f.key.try_number,
                state: f.new_state,
                now: f.now,
                exit_code: f.exit_code,
                error: f.error.as_deref(),
            };
            let done = end.statement().build().execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(end.missing());
            }
            if let Some(callback) = &f.callback {
                insert_callback(callback)
                    .build_query_scalar::<i64>()
                    .fetch_one(&mut *tx)
                    .await?;
            }
            insert_lines(&mut *tx, f.key.ti_id, f.key.try_number, &f.progress.logs).await?;
            instance
        });
        Ok(instance)
    }

    /// Gives a running try back (`running → scheduled`, the state machine's `HandBack`)
    /// without it counting against the retry budget: `max_tries` grows by one, because the
    /// next claim numbers its try `try_number + 1` (the attempt row of this try stays, closed
    /// as `scheduled` with [`HANDED_BACK`]). [`StoreError::Stale`] when the lease was lost.
    pub(crate) async fn hand_back(
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

/// [`Store::finish_attempt`] on PostgreSQL for an outcome without a callback (nearly all
/// of them): the instance, its attempt row and the log's last lines in one statement,
/// one round trip and one commit instead of five round trips. The instance is updated
/// only if its attempt row exists, so, as in the transaction, either all three are
/// written or none.
async fn finish_attempt_in_one_statement(
    pool: &sqlx::PgPool,
    f: &FinishAttempt,
) -> Result<TaskInstance, StoreError> {
    let (ti_id, try_number) = (f.key.ti_id, f.key.try_number);
    let logs = &f.progress.logs;
    let mut q = QueryBuilder::<sqlx::Postgres>::new("WITH ti AS (");
    push_finish_instance(&mut q, f);
    q.push(" AND EXISTS (SELECT 1 FROM attempts WHERE task_instance = ");
    q.push_bind(ti_id);
    q.push(" AND try_number = ");
    q.push_bind(try_number);
    q.push(") RETURNING *), attempt AS (UPDATE attempts SET state = ");
    q.push_bind(f.new_state.as_str());
    // A waiting try's row stays open (see `EndAttempt::statement`).
    q.push(", end_date = ");
    q.push_bind((!super::keeps_try_open(f.new_state)).then_some(f.now));
    q.push(", exit_code = ");
    q.push_bind(f.exit_code);
    q.push(", error = ");
    q.push_bind(f.error.as_deref());
    q.push(" WHERE task_instance = ");
    q.push_bind(ti_id);
    q.push(" AND try_number = ");
    q.push_bind(try_number);
    q.push(
        " AND EXISTS (SELECT 1 FROM ti)),
        logs AS (
            INSERT INTO task_logs (task_instance, try_number, line_no, ts, stream, line)
            SELECT ti.id, ti.try_number, last.n + l.n, l.ts, l.stream, l.line
            FROM ti, UNNEST(",
    );
    q.push_bind(logs.iter().map(|l| l.ts).collect::<Vec<_>>());
    q.push("::timestamptz[], ");
    q.push_bind(logs.iter().map(|l| l.stream.as_str()).collect::<Vec<_>>());
    q.push("::text[], ");
    q.push_bind(logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>());
    q.push(
        "::text[]) WITH ORDINALITY AS l (ts, stream, line, n),
                 (SELECT COALESCE(MAX(line_no), 0) AS n FROM task_logs
                  WHERE task_instance = ",
    );
    q.push_bind(ti_id);
    q.push(" AND try_number = ");
    q.push_bind(try_number);
    q.push(") AS last) SELECT * FROM ti");
    const CURRENT_SQL: &str = "
        SELECT EXISTS (SELECT 1 FROM task_instances
                       WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $4)";
    let row: Option<TaskInstance> = q.build_query_as().fetch_optional(pool).await?;
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
