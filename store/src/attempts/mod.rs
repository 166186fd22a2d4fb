//! Tries of task instances: a worker claims a queued instance (a new try with its attempt
//! row and a lease), keeps the lease with heartbeats, records an external job's id, and
//! finishes the try or hands it back, all through the claim's [`RunningTry`]; the
//! scheduler reaps a try whose lease expired.
//! Every write here is guarded by the try's lease (`state = running AND try_number AND
//! lease_owner`) or, for the reaper, by its expiry in the database's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::state::{TaskEvent, TaskState};
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::{impl_from_row, on_pool, parse_col, NewCallback, Store, StoreError, TryProgress};

pub use finish::HANDED_BACK;
pub(crate) use lease::set_rendered;
pub use running::{FinishError, RunningTry, TryLease, TryOutcome};

/// One try of a task instance, as recorded at claim and updated when it ends.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    pub id: i64,
    pub task_instance: i64,
    pub try_number: i32,
    pub worker: String,
    pub hostname: String,
    /// `running` while it runs, then the state the try ended the instance in.
    pub state: TaskState,
    /// When the try was queued (the instance's queued time at the claim); `None` for a try
    /// recorded before migration 0011 that was not its instance's latest.
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub external_id: Option<String>,
    pub error: Option<String>,
    /// How often this try gave its worker slot back to wait (`up_for_reschedule`) and
    /// was woken again: one try, however many pokes (migration 0015).
    pub reschedules: i32,
    /// The version of the DAG's definition the try ran (its `source_hash`); `None` for a
    /// try recorded before migration 0017.
    pub definition_hash: Option<String>,
}

impl_from_row!(Attempt, |row| Attempt {
    id: row.try_get("id")?,
    task_instance: row.try_get("task_instance")?,
    try_number: row.try_get("try_number")?,
    worker: row.try_get("worker")?,
    hostname: row.try_get("hostname")?,
    state: parse_col(row.try_get("state")?, "state")?,
    queued_at: row.try_get("queued_at")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
    exit_code: row.try_get("exit_code")?,
    external_id: row.try_get("external_id")?,
    error: row.try_get("error")?,
    reschedules: row.try_get("reschedules")?,
    definition_hash: row.try_get("definition_hash")?,
});

/// A worker asking for up to `limit` queued instances from `queues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub worker_id: String,
    pub hostname: String,
    pub queues: Vec<String>,
    pub limit: i64,
    /// The lease runs until `lease` after the claim in the database's clock; heartbeats
    /// extend it.
    pub lease: Duration,
    /// The try's start date, in the worker's clock (leases never use it).
    pub now: DateTime<Utc>,
}

/// Names one running try as held by one worker; every write through it is guarded by
/// `state = running AND try_number AND lease_owner`. Private to the store: outside it,
/// only the try's [`RunningTry`] holds its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LeaseKey {
    pub ti_id: i64,
    pub try_number: i32,
    pub worker_id: String,
}

/// The end of a running try, reported by the worker that holds its lease
/// ([`RunningTry::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FinishAttempt {
    pub key: LeaseKey,
    /// `success`, `failed`, `up_for_retry`, `skipped`, `up_for_reschedule` (the try
    /// waits without a slot until `next_retry_at`), or `scheduled` (handed back).
    pub new_state: TaskState,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    /// Stored as the instance's output when `Some`.
    pub output: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// The task's callback for the new state, written to the outbox in the same
    /// transaction, so an alert is never lost nor sent for an outcome that was not stored.
    pub callback: Option<NewCallback>,
    /// The try's log lines (and rendered fields) not stored yet, stored in the same
    /// transaction; the rendered fields replace the stored ones when given.
    pub progress: TryProgress,
}

/// The scheduler taking back a running try whose lease expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Reap {
    pub ti_id: i64,
    pub try_number: i32,
    /// `up_for_retry` or `failed`.
    pub new_state: TaskState,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub error: String,
    /// The try's end date. Whether the lease expired is decided in the database's clock.
    pub now: DateTime<Utc>,
}

/// The end of a try as its attempt row records it (the worker's outcome or the reaper's).
struct EndAttempt<'a> {
    ti_id: i64,
    try_number: i32,
    state: TaskState,
    now: DateTime<Utc>,
    exit_code: Option<i32>,
    error: Option<&'a str>,
}

impl<'a> EndAttempt<'a> {
    /// The `UPDATE` closing the attempt row, each column beside its value; it changes no
    /// row when the row is missing ([`EndAttempt::missing`]).
    fn statement<DB>(&self) -> QueryBuilder<'a, DB>
    where
        DB: Database,
        for<'q> DB::Arguments<'q>: Default,
        Option<&'a str>: Encode<'a, DB> + Type<DB>,
        &'a str: Encode<'a, DB> + Type<DB>,
        Option<i32>: Encode<'a, DB> + Type<DB>,
        i32: Encode<'a, DB> + Type<DB>,
        i64: Encode<'a, DB> + Type<DB>,
        DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    {
        let mut q = QueryBuilder::new("UPDATE attempts SET state = ");
        q.push_bind(self.state.as_str());
        // A try that waits (`up_for_reschedule`) has not ended: its row stays open, and
        // the claim that wakes it resumes this try (see `claim`); one awaiting a decision
        // (`awaiting_input`) stays open until the decision closes it.
        if keeps_try_open(self.state) {
            q.push(", end_date = NULL");
        } else {
            q.push(", end_date = ");
            q.push_bind(self.now);
        }
        q.push(", exit_code = ");
        q.push_bind(self.exit_code);
        q.push(", error = ");
        q.push_bind(self.error);
        q.push(" WHERE task_instance = ");
        q.push_bind(self.ti_id);
        q.push(" AND try_number = ");
        q.push_bind(self.try_number);
        q
    }

    /// The error when [`EndAttempt::statement`] found no attempt row to close.
    fn missing(&self) -> StoreError {
        StoreError::not_found(
            "attempt",
            format!("task instance {} try {}", self.ti_id, self.try_number),
        )
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

impl Store {
    /// The attempts of one instance, by try number.
    pub async fn list_attempts(&self, ti_id: i64) -> Result<Vec<Attempt>, StoreError> {
        const SQL: &str = "SELECT * FROM attempts WHERE task_instance = $1 ORDER BY try_number";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Every try of every task instance of one run, in one statement (by instance id,
    /// then try number): the run page's Gantt chart and failed-task errors read them all
    /// at once instead of one query per instance. The instances come from their
    /// `(run, task_id, map_index)` key and the tries from `(task_instance, try_number)`.
    pub async fn list_run_attempts(&self, run: i64) -> Result<Vec<Attempt>, StoreError> {
        const SQL: &str = "
            SELECT a.* FROM task_instances ti JOIN attempts a ON a.task_instance = ti.id
            WHERE ti.run = $1 ORDER BY a.task_instance, a.try_number";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(run)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}

/// A try ending its claim in `state` goes on without a slot: its attempt row stays open.
pub(crate) fn keeps_try_open(state: TaskState) -> bool {
    matches!(state, TaskState::UpForReschedule | TaskState::AwaitingInput)
}

/// The state a running try ends the instance in when its worker reports `outcome`, as
/// [`TaskState::on`] decides it for the try-ending event of that outcome; an outcome no
/// such event gives is [`StoreError::Invalid`] and writes nothing.
fn decide_try_end(outcome: TaskState) -> Result<TaskState, StoreError> {
    let event = match outcome {
        TaskState::Success => TaskEvent::Succeed,
        TaskState::UpForReschedule => TaskEvent::Reschedule,
        TaskState::AwaitingInput => TaskEvent::AwaitInput,
        TaskState::UpForRetry => TaskEvent::Fail { retry: true },
        TaskState::Failed => TaskEvent::Fail { retry: false },
        TaskState::Skipped => TaskEvent::Skip,
        TaskState::Scheduled => TaskEvent::HandBack,
        other => {
            return Err(StoreError::Invalid {
                what: "try outcome",
                reason: format!("a running try cannot end in {other}"),
            })
        }
    };
    checked(TaskState::Running.on(event)?, outcome)
}

/// The state a reaped try ends the instance in, as [`TaskState::on`] decides it for
/// [`TaskEvent::Reap`] (with a retry when `outcome` is `up_for_retry`).
fn decide_reap(outcome: TaskState) -> Result<TaskState, StoreError> {
    let retry = outcome == TaskState::UpForRetry;
    checked(TaskState::Running.on(TaskEvent::Reap { retry })?, outcome)
}

/// `decided`, when the caller's `outcome` is what the state machine decided.
fn checked(decided: TaskState, outcome: TaskState) -> Result<TaskState, StoreError> {
    if decided == outcome {
        Ok(decided)
    } else {
        Err(StoreError::Invalid {
            what: "try outcome",
            reason: format!("the state machine ends this try in {decided}, not {outcome}"),
        })
    }
}

// After the macros above, which they use.
mod claim;
mod finish;
mod lease;
mod reap;
mod running;
