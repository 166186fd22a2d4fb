//! The scheduler's writes that must be atomic across several schedulers: queueing scheduled
//! instances within pools and `max_active_tasks`, starting queued runs within
//! `max_active_runs`, fanning out a mapped task, ending a run with its callback, and the
//! callback outbox (`callback_requests`) every component writes and only schedulers send.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::Callback;
use nightshift_core::plan::{select_for_queue, Capacity, QueueCandidate};
use nightshift_core::state::{RunEvent, RunState, TaskEvent, TaskState};
use serde_json::Value;
use sqlx::types::Json;

use crate::runs::DagRun;
use crate::tasks::{insert_task_instances, NewTaskInstance};
use crate::{
    add_duration, id_in_json_list, impl_from_row, in_tx, on_pool, parse_col, text_enum, Backend,
    Store, StoreError,
};

/// How many scheduled candidates one queueing pass reads per instance it may queue; the
/// ones that do not fit a pool or DAG limit are passed over, so read more than `limit`.
const CANDIDATES_PER_SLOT: usize = 8;

/// One pass of queueing scheduled instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRequest {
    pub now: DateTime<Utc>,
    /// At most this many instances are queued.
    pub limit: usize,
    /// `max_active_tasks` per DAG id; instances of a DAG not listed are not queued.
    pub max_active_tasks: BTreeMap<String, i64>,
}

/// Starting queued runs of one DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRuns {
    pub dag_id: String,
    pub max_active_runs: i64,
    pub now: DateTime<Utc>,
}

/// Fanning out the placeholder (map index -1) of a `for_each` task: `instances[0]`
/// (map index 0) replaces the placeholder, the others are inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandMapped {
    pub placeholder: i64,
    /// The placeholder's state as the caller saw it (compare-and-set).
    pub expected_state: TaskState,
    pub instances: Vec<NewTaskInstance>,
    pub now: DateTime<Utc>,
}

/// Ending a running DAG run, with the run-level callback to send, if the DAG has one.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishRun {
    pub id: i64,
    /// `success` or `failed`.
    pub new_state: RunState,
    pub now: DateTime<Utc>,
    pub callback: Option<NewCallback>,
}

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

pub(crate) const INSERT_CALLBACK: &str = "
    INSERT INTO callback_requests (created_at, kind, event, dag_id, run_id, task_id, map_index,
                                   try_number, callback, payload, state, attempts)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0)
    RETURNING id";

/// Inserts a [`NewCallback`] on an executor; yields the new id.
macro_rules! insert_callback {
    ($executor:expr, $cb:expr) => {{
        let cb: &$crate::scheduling::NewCallback = $cb;
        sqlx::query_scalar::<_, i64>($crate::scheduling::INSERT_CALLBACK)
            .bind(cb.now)
            .bind(cb.kind.as_str())
            .bind(cb.event.as_str())
            .bind(&cb.dag_id)
            .bind(&cb.run_id)
            .bind(&cb.task_id)
            .bind(cb.map_index)
            .bind(cb.try_number)
            .bind(sqlx::types::Json(&cb.callback))
            .bind(sqlx::types::Json(&cb.payload))
            .bind($crate::scheduling::CallbackState::Pending.as_str())
            .fetch_one($executor)
            .await
    }};
}
pub(crate) use insert_callback;

struct Candidate {
    id: i64,
    dag_id: String,
    pool: String,
    pool_slots: i32,
}

impl_from_row!(Candidate, |row| Candidate {
    id: row.try_get("id")?,
    dag_id: row.try_get("dag_id")?,
    pool: row.try_get("pool")?,
    pool_slots: row.try_get("pool_slots")?,
});

impl Store {
    /// Moves scheduled instances to `queued`, highest priority first, then the oldest run,
    /// as far as free pool slots and each DAG's `max_active_tasks` allow. One transaction
    /// that first locks every pool row (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`
    /// serialises writers anyway), so concurrent schedulers never overfill a pool or a DAG.
    /// Returns how many instances were queued.
    pub async fn queue_scheduled(&self, req: &QueueRequest) -> Result<u64, StoreError> {
        if req.limit == 0 {
            return Ok(0);
        }
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE",
            Backend::Sqlite(_) => "",
        };
        let pools_sql = format!("SELECT name, slots FROM pools ORDER BY name {lock}");
        const USED_SQL: &str = "
            SELECT pool, COALESCE(SUM(pool_slots), 0) AS used FROM task_instances
            WHERE state IN ($1, $2) GROUP BY pool";
        const ACTIVE_SQL: &str = "
            SELECT dag_id, COUNT(*) AS active FROM task_instances
            WHERE state IN ($1, $2) GROUP BY dag_id";
        const CANDIDATES_SQL: &str = "
            SELECT ti.id, ti.dag_id, ti.pool, ti.pool_slots
            FROM task_instances ti JOIN dag_runs r ON r.id = ti.run
            WHERE ti.state = $1
            ORDER BY ti.priority DESC, r.logical_date, ti.id
            LIMIT $2";
        let update_sql = format!(
            "UPDATE task_instances SET state = $1, queued_at = $2, updated_at = $2
             WHERE state = $3 AND {}",
            id_in_json_list(self, "id", "$4")
        );
        // Most passes have nothing to queue: they are answered by an index lookup, not
        // by locking the pools and counting every queued and running instance.
        const ANY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM task_instances WHERE state = $1)";
        let any: bool = on_pool!(self, |pool| sqlx::query_scalar(ANY_SQL)
            .bind(TaskState::Scheduled.as_str())
            .fetch_one(pool)
            .await)?;
        if !any {
            return Ok(0);
        }
        let active_states = [TaskState::Queued.as_str(), TaskState::Running.as_str()];
        let candidate_limit =
            i64::try_from(req.limit.saturating_mul(CANDIDATES_PER_SLOT)).unwrap_or(i64::MAX);
        let queued = in_tx!(self, |tx| {
            let pools: Vec<(String, i32)> = sqlx::query_as(&pools_sql).fetch_all(&mut *tx).await?;
            let used: Vec<(String, i64)> = sqlx::query_as(USED_SQL)
                .bind(active_states[0])
                .bind(active_states[1])
                .fetch_all(&mut *tx)
                .await?;
            let active: Vec<(String, i64)> = sqlx::query_as(ACTIVE_SQL)
                .bind(active_states[0])
                .bind(active_states[1])
                .fetch_all(&mut *tx)
                .await?;
            let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES_SQL)
                .bind(TaskState::Scheduled.as_str())
                .bind(candidate_limit)
                .fetch_all(&mut *tx)
                .await?;
            let used: BTreeMap<String, i64> = used.into_iter().collect();
            let active: BTreeMap<String, i64> = active.into_iter().collect();
            let capacity = Capacity {
                pool_free: pools
                    .into_iter()
                    .map(|(name, slots)| {
                        let free = i64::from(slots) - used.get(&name).copied().unwrap_or(0);
                        (name, free)
                    })
                    .collect(),
                dag_free: req
                    .max_active_tasks
                    .iter()
                    .map(|(dag, max)| (dag.clone(), max - active.get(dag).copied().unwrap_or(0)))
                    .collect(),
                limit: req.limit,
            };
            let candidates: Vec<QueueCandidate> = candidates
                .into_iter()
                .map(|c| QueueCandidate {
                    id: c.id,
                    dag_id: c.dag_id,
                    pool: c.pool,
                    pool_slots: u32::try_from(c.pool_slots).unwrap_or(u32::MAX),
                })
                .collect();
            let chosen = select_for_queue(&candidates, &capacity);
            if chosen.is_empty() {
                0
            } else {
                sqlx::query(&update_sql)
                    .bind(TaskState::Scheduled.on(TaskEvent::Queue)?.as_str())
                    .bind(req.now)
                    .bind(TaskState::Scheduled.as_str())
                    .bind(Json(&chosen))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        });
        Ok(queued)
    }

    /// The DAGs that have queued runs, by id.
    pub async fn dags_with_queued_runs(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT dag_id FROM dag_runs WHERE state = $1 ORDER BY dag_id";
        let rows = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(RunState::Queued.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Starts the oldest queued runs of one DAG (by logical date) while fewer than
    /// `max_active_runs` are running; returns the runs started. The DAG's row is locked
    /// for the transaction (PostgreSQL), so two schedulers never start one run too many.
    pub async fn start_queued_runs(&self, req: &StartRuns) -> Result<Vec<DagRun>, StoreError> {
        let lock_sql = match self.backend {
            Backend::Postgres(_) => "SELECT dag_id FROM dags WHERE dag_id = $1 FOR UPDATE",
            Backend::Sqlite(_) => "SELECT dag_id FROM dags WHERE dag_id = $1",
        };
        const COUNT_SQL: &str = "SELECT COUNT(*) FROM dag_runs WHERE dag_id = $1 AND state = $2";
        const PICK_SQL: &str = "
            SELECT id FROM dag_runs WHERE dag_id = $1 AND state = $2
            ORDER BY logical_date, id LIMIT $3";
        const START_SQL: &str = "
            UPDATE dag_runs SET state = $1, start_date = COALESCE(start_date, $2), end_date = NULL
            WHERE id = $3 AND state = $4
            RETURNING *";
        let started = in_tx!(self, |tx| {
            let _: Option<String> = sqlx::query_scalar(lock_sql)
                .bind(&req.dag_id)
                .fetch_optional(&mut *tx)
                .await?;
            let running: i64 = sqlx::query_scalar(COUNT_SQL)
                .bind(&req.dag_id)
                .bind(RunState::Running.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let free = req.max_active_runs - running;
            let mut started = Vec::new();
            if free > 0 {
                let ids: Vec<i64> = sqlx::query_scalar(PICK_SQL)
                    .bind(&req.dag_id)
                    .bind(RunState::Queued.as_str())
                    .bind(free)
                    .fetch_all(&mut *tx)
                    .await?;
                let running = RunState::Queued.on(RunEvent::Start)?;
                for id in ids {
                    let run: Option<DagRun> = sqlx::query_as(START_SQL)
                        .bind(running.as_str())
                        .bind(req.now)
                        .bind(id)
                        .bind(RunState::Queued.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    started.extend(run);
                }
            }
            started
        });
        Ok(started)
    }

    /// Fans out a `for_each` placeholder (see [`ExpandMapped`]) in one transaction;
    /// [`StoreError::Stale`] when the placeholder is no longer unexpanded in
    /// `expected_state`. Returns the number of instances (placeholder included).
    pub async fn expand_mapped(&self, req: &ExpandMapped) -> Result<u64, StoreError> {
        const PLACEHOLDER_SQL: &str = "
            UPDATE task_instances SET map_index = 0, state = $3, updated_at = $4
            WHERE id = $1 AND state = $2 AND map_index = -1
            RETURNING run, dag_id";
        let Some((first, rest)) = req.instances.split_first() else {
            return Err(StoreError::Conflict {
                what: "task instance",
                key: req.placeholder.to_string(),
                reason: "a fan-out needs at least one instance".to_owned(),
            });
        };
        let count = in_tx!(self, |tx| {
            let row: Option<(i64, String)> = sqlx::query_as(PLACEHOLDER_SQL)
                .bind(req.placeholder)
                .bind(req.expected_state.as_str())
                .bind(first.state.as_str())
                .bind(req.now)
                .fetch_optional(&mut *tx)
                .await?;
            let (run, dag_id) = row.ok_or_else(|| StoreError::Stale {
                what: "task instance",
                id: req.placeholder.to_string(),
                expected: format!("an unexpanded {} placeholder", req.expected_state),
            })?;
            let inserted = insert_task_instances!(&mut *tx, run, &dag_id, rest, req.now);
            1 + inserted.len() as u64
        });
        Ok(count)
    }

    /// Adds instances to an existing run (tasks added to its DAG file after the run was
    /// created), in one transaction; an instance that already exists is left as it is,
    /// so two schedulers may race. Returns how many were inserted.
    pub async fn add_task_instances(
        &self,
        run: &DagRun,
        instances: &[NewTaskInstance],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if instances.is_empty() {
            return Ok(0);
        }
        let count = in_tx!(self, |tx| {
            insert_task_instances!(&mut *tx, run.id, &run.dag_id, instances, now).len() as u64
        });
        Ok(count)
    }

    /// Ends a running run in `req.new_state` and enqueues its callback in the same
    /// transaction; [`StoreError::Stale`] when the run is no longer running.
    pub async fn finish_run(&self, req: &FinishRun) -> Result<DagRun, StoreError> {
        const SQL: &str = "
            UPDATE dag_runs SET state = $3, end_date = $4
            WHERE id = $1 AND state = $2
            RETURNING *";
        crate::runs::check_run_move(req.id, RunState::Running, req.new_state)?;
        let run = in_tx!(self, |tx| {
            let row: Option<DagRun> = sqlx::query_as(SQL)
                .bind(req.id)
                .bind(RunState::Running.as_str())
                .bind(req.new_state.as_str())
                .bind(req.now)
                .fetch_optional(&mut *tx)
                .await?;
            let run = row.ok_or_else(|| StoreError::Stale {
                what: "DAG run",
                id: req.id.to_string(),
                expected: RunState::Running.to_string(),
            })?;
            if let Some(callback) = &req.callback {
                insert_callback!(&mut *tx, callback)?;
            }
            run
        });
        Ok(run)
    }

    /// Writes a callback request to the outbox; returns its id.
    pub async fn enqueue_callback(&self, cb: &NewCallback) -> Result<i64, StoreError> {
        let id = on_pool!(self, |pool| insert_callback!(pool, cb))?;
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
