//! The callback outbox (`callback_requests`): every component writes a request in the
//! transaction of the change it is about; only schedulers claim and send them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::Callback;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::{
    add_duration, impl_from_row, on_pool, parse_col, text_enum, Backend, Store, StoreError,
};

text_enum! {
    /// Whose callback a request is.
    pub enum CallbackKind as "callback kind" {
        Task = "task",
        DagRun = "dag_run",
    }
}

text_enum! {
    /// What happened.
    pub enum CallbackEvent as "callback event" {
        Failure = "failure",
        Success = "success",
        Retry = "retry",
        DeadlineMissed = "deadline_missed",
        ApprovalRequested = "approval_requested",
    }
}

text_enum! {
    /// Where a callback request is in its life.
    pub enum CallbackState as "callback state" {
        Pending = "pending",
        Sent = "sent",
        Failed = "failed",
    }
}

/// A callback to send, written to the outbox by whoever made the transition.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCallback {
    pub kind: CallbackKind,
    pub event: CallbackEvent,
    pub dag_id: String,
    pub run_id: String,
    /// `None` for a run-level callback.
    pub task_id: Option<String>,
    /// -1 when not mapped (and for run-level callbacks).
    pub map_index: i32,
    /// 0 for run-level callbacks.
    pub try_number: i32,
    /// The DAG's or task's callback, as in the DAG definition (templates unrendered).
    pub callback: Callback,
    /// The event's facts beyond the columns: at least `state` (the new state, text) and
    /// `error` (text or null). The sender adds the message text and the UI link.
    pub payload: Value,
    pub now: DateTime<Utc>,
}

/// A stored callback request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallbackRequest {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub kind: CallbackKind,
    pub event: CallbackEvent,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    pub map_index: i32,
    pub try_number: i32,
    pub callback: Value,
    pub payload: Value,
    pub state: CallbackState,
    /// Sending attempts started so far.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// A pending request is not sent before this (retry backoff, or another scheduler's
    /// lease while it sends).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
}

impl_from_row!(CallbackRequest, |row| CallbackRequest {
    id: row.try_get("id")?,
    created_at: row.try_get("created_at")?,
    kind: parse_col(row.try_get("kind")?, "kind")?,
    event: parse_col(row.try_get("event")?, "event")?,
    dag_id: row.try_get("dag_id")?,
    run_id: row.try_get("run_id")?,
    task_id: row.try_get("task_id")?,
    map_index: row.try_get("map_index")?,
    try_number: row.try_get("try_number")?,
    callback: row.try_get::<Json<Value>, _>("callback")?.0,
    payload: row.try_get::<Json<Value>, _>("payload")?.0,
    state: parse_col(row.try_get("state")?, "state")?,
    attempts: row.try_get("attempts")?,
    last_error: row.try_get("last_error")?,
    sent_at: row.try_get("sent_at")?,
    next_attempt_at: row.try_get("next_attempt_at")?,
    claimed_by: row.try_get("claimed_by")?,
});

/// A scheduler taking up to `limit` due pending callback requests to send; each is leased
/// to it until `now + lease` and its `attempts` grows by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackClaim {
    pub scheduler_id: String,
    pub limit: i64,
    pub lease: Duration,
    pub now: DateTime<Utc>,
}

/// A sending attempt that failed: try again at `retry_at`, or give up when `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackFailure {
    pub id: i64,
    pub error: String,
    pub retry_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The `INSERT` of a [`NewCallback`] into the outbox (pending, no attempt yet), each
/// column beside its value, returning the new id. Run on the caller's transaction, so the
/// request is written with the change it is about, or not at all.
pub(crate) fn insert_callback<'a, DB>(cb: &'a NewCallback) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
    Json<&'a Callback>: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO callback_requests (created_at, kind, event, dag_id, run_id, task_id,
                                       map_index, try_number, callback, payload, state,
                                       attempts) ",
    );
    q.push_values([cb], |mut row, cb| {
        row.push_bind(cb.now) // created_at
            .push_bind(cb.kind.as_str()) // kind
            .push_bind(cb.event.as_str()) // event
            .push_bind(cb.dag_id.as_str()) // dag_id
            .push_bind(cb.run_id.as_str()) // run_id
            .push_bind(cb.task_id.as_deref()) // task_id
            .push_bind(cb.map_index) // map_index
            .push_bind(cb.try_number) // try_number
            .push_bind(Json(&cb.callback)) // callback
            .push_bind(Json(&cb.payload)) // payload
            .push_bind(CallbackState::Pending.as_str()) // state
            .push("0"); // attempts
    });
    q.push(" RETURNING id");
    q
}

impl Store {
    /// Writes a callback request to the outbox; returns its id.
    pub async fn enqueue_callback(&self, cb: &NewCallback) -> Result<i64, StoreError> {
        let id: i64 = on_pool!(self, |pool| insert_callback(cb)
            .build_query_scalar()
            .fetch_one(pool)
            .await)?;
        Ok(id)
    }

    /// Leases up to `claim.limit` due pending requests to one scheduler, oldest first;
    /// concurrent schedulers never get the same request.
    pub async fn claim_callbacks(
        &self,
        claim: &CallbackClaim,
    ) -> Result<Vec<CallbackRequest>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite(_) => "",
        };
        let sql = format!(
            "WITH picked AS MATERIALIZED (
                 SELECT id FROM callback_requests
                 WHERE state = $1 AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
                 ORDER BY id LIMIT $3 {lock})
             UPDATE callback_requests SET
                 attempts = attempts + 1, next_attempt_at = $4, claimed_by = $5
             WHERE state = $1 AND id IN (SELECT id FROM picked)
             RETURNING *"
        );
        let until = add_duration(claim.now, claim.lease);
        let mut rows: Vec<CallbackRequest> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(CallbackState::Pending.as_str())
            .bind(claim.now)
            .bind(claim.limit)
            .bind(until)
            .bind(&claim.scheduler_id)
            .fetch_all(pool)
            .await)?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Marks a pending request sent.
    pub async fn callback_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        const SQL: &str = "
            UPDATE callback_requests SET state = $2, sent_at = $3, last_error = NULL,
                                         next_attempt_at = NULL
            WHERE id = $1 AND state = $4";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(id)
            .bind(CallbackState::Sent.as_str())
            .bind(now)
            .bind(CallbackState::Pending.as_str())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        stale_callback(id, done)
    }

    /// Records a failed sending attempt: pending again from `retry_at`, or failed for good.
    pub async fn callback_failed(&self, f: &CallbackFailure) -> Result<(), StoreError> {
        const SQL: &str = "
            UPDATE callback_requests SET state = $2, last_error = $3, next_attempt_at = $4
            WHERE id = $1 AND state = $5";
        let state = if f.retry_at.is_some() {
            CallbackState::Pending
        } else {
            CallbackState::Failed
        };
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(f.id)
            .bind(state.as_str())
            .bind(&f.error)
            .bind(f.retry_at)
            .bind(CallbackState::Pending.as_str())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        stale_callback(f.id, done)
    }

    /// The callback requests of one DAG (all DAGs when `None`), newest first.
    pub async fn list_callbacks(
        &self,
        dag_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CallbackRequest>, StoreError> {
        const SQL: &str = "
            SELECT * FROM callback_requests WHERE ($1 IS NULL OR dag_id = $1)
            ORDER BY id DESC LIMIT $2";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}

fn stale_callback(id: i64, rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::Stale {
            what: "callback request",
            id: id.to_string(),
            expected: CallbackState::Pending.to_string(),
        });
    }
    Ok(())
}
