//! Task instances and their attempts: creation, the compare-and-set [`Store::transition`],
//! the atomic [`Store::claim`] with leases, heartbeats, reaping and finishing a try.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::plan::InstanceView;
use nightshift_core::state::TaskState;
use serde_json::Value;
use sqlx::types::Json;

use crate::clock::{db_now, db_now_plus, lease_millis};
use crate::logs::{insert_log_lines, TryProgress};
use crate::runs::DagRun;
use crate::scheduling::{insert_callback, NewCallback};
use crate::{
    id_in_json_list, impl_from_row, in_tx, json_list_sql, on_pool, parse_col, Backend, Store,
    StoreError,
};

/// One task instance: one task of one DAG run at one map index.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskInstance {
    pub id: i64,
    /// The DAG run's primary key ([`DagRun::id`]).
    pub run: i64,
    pub dag_id: String,
    pub task_id: String,
    /// -1 for an unmapped task; 0.. for the instances of a `for_each` task.
    pub map_index: i32,
    pub state: TaskState,
    /// The current (or last) try; 0 before the first claim, incremented by each claim.
    pub try_number: i32,
    /// Kept for the engine's retry decision; the store does not interpret it.
    pub max_tries: i32,
    pub kind: String,
    pub queue: String,
    pub pool: String,
    pub pool_slots: i32,
    pub priority: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// The worker holding the running try, and until when; both `None` unless running.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// An external job's id (an ECS task ARN) that no worker accounted for yet, so the
    /// next try re-attaches to it: set by [`Store::set_external_id`], cleared when a worker
    /// records the try's outcome ([`Store::finish_attempt`]), kept when a try is reaped or
    /// handed back. Each attempt keeps its own for the record.
    pub external_id: Option<String>,
    pub output: Option<Value>,
    pub rendered: Option<Value>,
    pub hostname: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl_from_row!(TaskInstance, |row| TaskInstance {
    id: row.try_get("id")?,
    run: row.try_get("run")?,
    dag_id: row.try_get("dag_id")?,
    task_id: row.try_get("task_id")?,
    map_index: row.try_get("map_index")?,
    state: parse_col(row.try_get("state")?, "state")?,
    try_number: row.try_get("try_number")?,
    max_tries: row.try_get("max_tries")?,
    kind: row.try_get("kind")?,
    queue: row.try_get("queue")?,
    pool: row.try_get("pool")?,
    pool_slots: row.try_get("pool_slots")?,
    priority: row.try_get("priority")?,
    next_retry_at: row.try_get("next_retry_at")?,
    queued_at: row.try_get("queued_at")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
    lease_owner: row.try_get("lease_owner")?,
    lease_expires_at: row.try_get("lease_expires_at")?,
    external_id: row.try_get("external_id")?,
    output: row
        .try_get::<Option<Json<Value>>, _>("output")?
        .map(|json| json.0),
    rendered: row
        .try_get::<Option<Json<Value>>, _>("rendered")?
        .map(|json| json.0),
    hostname: row.try_get("hostname")?,
    updated_at: row.try_get("updated_at")?,
});

/// A task instance to create with its run (or later, for a dynamic fan-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskInstance {
    pub task_id: String,
    pub map_index: i32,
    pub state: TaskState,
    pub max_tries: i32,
    pub kind: String,
    pub queue: String,
    pub pool: String,
    pub pool_slots: i32,
    pub priority: i32,
}

/// Where a read of a run's instances left off; see [`Store::instance_changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeMark(i64);

/// A run's instances as [`Store::instance_changes`] read them.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceChanges {
    /// The instances read, ordered by task id and map index.
    pub views: Vec<InstanceView>,
    /// True when `views` are all of the run's instances, false when only those that
    /// changed since the mark passed in.
    pub complete: bool,
    /// What to pass as `since` to read only the changes after this read; `None` when the
    /// backend cannot tell (read the whole run again).
    pub mark: Option<ChangeMark>,
}

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
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub external_id: Option<String>,
    pub error: Option<String>,
}

impl_from_row!(Attempt, |row| Attempt {
    id: row.try_get("id")?,
    task_instance: row.try_get("task_instance")?,
    try_number: row.try_get("try_number")?,
    worker: row.try_get("worker")?,
    hostname: row.try_get("hostname")?,
    state: parse_col(row.try_get("state")?, "state")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
    exit_code: row.try_get("exit_code")?,
    external_id: row.try_get("external_id")?,
    error: row.try_get("error")?,
});

/// What a [`Transition`] does to one nullable column.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    /// Leave the column as it is.
    #[default]
    Keep,
    /// Set it to NULL.
    Null,
    Set(T),
}

impl<T> Patch<T> {
    /// (whether to write the column, the value to write).
    fn parts(&self) -> (bool, Option<&T>) {
        match self {
            Patch::Keep => (false, None),
            Patch::Null => (true, None),
            Patch::Set(value) => (true, Some(value)),
        }
    }
}

/// A compare-and-set of one task instance's state: it applies only if the instance is
/// still in `expected_state` at `try_number`. Leaving `running` always drops the lease
/// and closes the try's attempt row (see [`Transition::reason`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub id: i64,
    pub expected_state: TaskState,
    pub try_number: i32,
    pub new_state: TaskState,
    pub now: DateTime<Utc>,
    pub next_retry_at: Patch<DateTime<Utc>>,
    pub queued_at: Patch<DateTime<Utc>>,
    pub start_date: Patch<DateTime<Utc>>,
    pub end_date: Patch<DateTime<Utc>>,
    pub output: Patch<Value>,
    pub rendered: Patch<Value>,
    pub external_id: Patch<String>,
    pub max_tries: Option<i32>,
    /// Why a running try is taken away (a person cleared or marked it, its run was
    /// cancelled or timed out): the error its attempt row is closed with. Its worker's
    /// own outcome is then refused as stale, so the row would otherwise stay open.
    pub reason: Option<String>,
}

impl Transition {
    /// A transition that changes only the state (and `updated_at`); set the other fields
    /// with struct update syntax: `Transition { end_date: Patch::Set(now), ..Transition::new(…) }`.
    pub fn new(
        id: i64,
        expected_state: TaskState,
        try_number: i32,
        new_state: TaskState,
        now: DateTime<Utc>,
    ) -> Transition {
        Transition {
            id,
            expected_state,
            try_number,
            new_state,
            now,
            next_retry_at: Patch::Keep,
            queued_at: Patch::Keep,
            start_date: Patch::Keep,
            end_date: Patch::Keep,
            output: Patch::Keep,
            rendered: Patch::Keep,
            external_id: Patch::Keep,
            max_tries: None,
            reason: None,
        }
    }
}

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

/// A claimed instance (now `running` at its new try, leased to the worker), its run,
/// and the attempt row recorded for the try.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub instance: TaskInstance,
    pub run: DagRun,
    pub attempt_id: i64,
    /// The `source_hash` of the DAG's current definition at the claim (`None`: the DAG
    /// is gone), so the worker knows without asking whether its cached copy is current.
    pub dag_hash: Option<String>,
}

impl ClaimedTask {
    /// The key that heartbeats and finishes this try.
    pub fn lease_key(&self) -> LeaseKey {
        LeaseKey {
            ti_id: self.instance.id,
            try_number: self.instance.try_number,
            worker_id: self.instance.lease_owner.clone().unwrap_or_default(),
        }
    }
}

/// Names one running try as held by one worker; every write through it is guarded by
/// `state = running AND try_number AND lease_owner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub ti_id: i64,
    pub try_number: i32,
    pub worker_id: String,
}

/// The end of a running try, reported by the worker that holds its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishAttempt {
    pub key: LeaseKey,
    /// `success`, `failed`, `up_for_retry`, `skipped`, or `scheduled` (handed back).
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

/// Instances per `INSERT` of [`insert_task_instances!`]: 9 parameters a row keeps one
/// statement far below both backends' parameter limits (SQLite 32,766, PostgreSQL 65,535).
pub(crate) const INSTANCES_PER_INSERT: usize = 1000;

/// The multi-row `INSERT` of `rows` new instances of one run: `$1` the run, `$2` its DAG,
/// `$3` the time, then 9 parameters per row. Existing instances (same task id and map
/// index) are left alone and not returned.
pub(crate) fn insert_task_instances_sql(rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "INSERT INTO task_instances (run, dag_id, task_id, map_index, state, try_number,
                                     max_tries, kind, queue, pool, pool_slots, priority,
                                     updated_at) VALUES ",
    );
    for row in 0..rows {
        let p = 4 + 9 * row;
        let sep = if row == 0 { "" } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(
            sql,
            "{sep}($1, $2, ${p}, ${}, ${}, 0, ${}, ${}, ${}, ${}, ${}, ${}, $3)",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        );
    }
    sql.push_str(" ON CONFLICT (run, task_id, map_index) DO NOTHING RETURNING *");
    sql
}

/// Inserts `$tis` (`&[NewTaskInstance]`) into run `$run` of DAG `$dag_id` on an executor
/// (the caller's transaction), [`INSTANCES_PER_INSERT`] rows a statement; yields the new
/// rows (`Vec<TaskInstance>`, in the given order; existing ones are skipped).
macro_rules! insert_task_instances {
    ($executor:expr, $run:expr, $dag_id:expr, $tis:expr, $now:expr) => {{
        let tis: &[$crate::tasks::NewTaskInstance] = $tis;
        let mut inserted: Vec<$crate::tasks::TaskInstance> = Vec::with_capacity(tis.len());
        for chunk in tis.chunks($crate::tasks::INSTANCES_PER_INSERT) {
            let sql = $crate::tasks::insert_task_instances_sql(chunk.len());
            let mut query = sqlx::query_as::<_, $crate::tasks::TaskInstance>(&sql)
                .bind($run)
                .bind($dag_id)
                .bind($now);
            for ti in chunk {
                query = query
                    .bind(&ti.task_id)
                    .bind(ti.map_index)
                    .bind(ti.state.as_str())
                    .bind(ti.max_tries)
                    .bind(&ti.kind)
                    .bind(&ti.queue)
                    .bind(&ti.pool)
                    .bind(ti.pool_slots)
                    .bind(ti.priority);
            }
            let mut rows = query.fetch_all($executor).await?;
            // Identities are drawn in VALUES order: by id is the given order.
            rows.sort_by_key(|row| row.id);
            inserted.extend(rows);
        }
        inserted
    }};
}
pub(crate) use insert_task_instances;

struct EndAttempt<'a> {
    ti_id: i64,
    try_number: i32,
    state: TaskState,
    now: DateTime<Utc>,
    exit_code: Option<i32>,
    error: Option<&'a str>,
}

const END_ATTEMPT_SQL: &str = "
    UPDATE attempts SET state = $3, end_date = $4, exit_code = $5, error = $6
    WHERE task_instance = $1 AND try_number = $2";

/// Closes the attempt row of a try on `$executor` (the caller's transaction); returns
/// from the caller with NotFound when the row is missing.
macro_rules! end_attempt {
    ($executor:expr, $end:expr) => {{
        let end: &EndAttempt<'_> = $end;
        let done = sqlx::query(END_ATTEMPT_SQL)
            .bind(end.ti_id)
            .bind(end.try_number)
            .bind(end.state.as_str())
            .bind(end.now)
            .bind(end.exit_code)
            .bind(end.error)
            .execute($executor)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(
                "attempt",
                format!("task instance {} try {}", end.ti_id, end.try_number),
            ));
        }
    }};
}

impl Transition {
    /// Whether this transition ends a running try from outside (its worker's own outcome
    /// goes through [`Store::finish_attempt`]).
    fn takes_a_try_away(&self) -> bool {
        self.expected_state == TaskState::Running && self.new_state != TaskState::Running
    }

    /// The state and error a try taken away is recorded with: the instance's new state
    /// when it is an outcome (marked success or failed), otherwise `failed` (cleared: the
    /// try was stopped and did not finish).
    fn taken_attempt(&self) -> (TaskState, String) {
        let state = if self.new_state.is_finished() || self.new_state == TaskState::UpForRetry {
            self.new_state
        } else {
            TaskState::Failed
        };
        let reason = self.reason.clone().unwrap_or_else(|| {
            format!(
                "stopped while running: the task instance was set to {}",
                self.new_state
            )
        });
        (state, reason)
    }
}

/// Closes the still-open attempt row of a try that a [`Transition`] took away, in the
/// caller's transaction (a row already closed is left as it is).
const CLOSE_TAKEN_ATTEMPT_SQL: &str = "
    UPDATE attempts SET state = $3, end_date = $4, error = COALESCE(error, $5)
    WHERE task_instance = $1 AND try_number = $2 AND end_date IS NULL";

macro_rules! close_taken_attempt {
    ($executor:expr, $t:expr) => {{
        let t: &Transition = $t;
        let (state, error) = t.taken_attempt();
        sqlx::query(CLOSE_TAKEN_ATTEMPT_SQL)
            .bind(t.id)
            .bind(t.try_number)
            .bind(state.as_str())
            .bind(t.now)
            .bind(error)
            .execute($executor)
            .await?;
    }};
}

fn stale_try(id: i64, state: TaskState, try_number: i32) -> StoreError {
    StoreError::Stale {
        what: "task instance",
        id: id.to_string(),
        expected: format!("{state} at try {try_number}"),
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

/// The `UPDATE … SET` of a transition: `$4`… are the new values ([`bind_transition_fields!`]).
macro_rules! transition_update {
    () => {
        "UPDATE task_instances SET
            state = $4,
            next_retry_at = CASE WHEN $5 THEN $6 ELSE next_retry_at END,
            queued_at = CASE WHEN $7 THEN $8 ELSE queued_at END,
            start_date = CASE WHEN $9 THEN $10 ELSE start_date END,
            end_date = CASE WHEN $11 THEN $12 ELSE end_date END,
            output = CASE WHEN $13 THEN $14 ELSE output END,
            rendered = CASE WHEN $15 THEN $16 ELSE rendered END,
            external_id = CASE WHEN $17 THEN $18 ELSE external_id END,
            max_tries = COALESCE($19, max_tries),
            lease_owner = CASE WHEN $20 THEN lease_owner ELSE NULL END,
            lease_expires_at = CASE WHEN $20 THEN lease_expires_at ELSE NULL END,
            updated_at = $21"
    };
}

/// One compare-and-set transition of a task instance (see [`Transition`]).
const TRANSITION_SQL: &str = concat!(
    transition_update!(),
    " WHERE id = $1 AND state = $2 AND try_number = $3 RETURNING *"
);

/// The same transition of many instances in one statement (PostgreSQL): `$1` their ids
/// and `$3` their try numbers as arrays; returns the ids it applied to.
const TRANSITION_BATCH_SQL: &str = concat!(
    transition_update!(),
    " FROM UNNEST($1::bigint[], $3::int[]) AS picked (id, try_number)
      WHERE task_instances.id = picked.id AND task_instances.try_number = picked.try_number
        AND task_instances.state = $2
      RETURNING task_instances.id"
);

/// The instance's side of a try's end, reported by the worker holding its lease
/// ([`Store::finish_attempt`]); `$1`…`$10` are bound by [`bind_finish_instance!`].
macro_rules! finish_instance {
    () => {
        "UPDATE task_instances SET
            state = $5, end_date = $6, next_retry_at = $7, output = COALESCE($8, output),
            rendered = COALESCE($10, rendered),
            lease_owner = NULL, lease_expires_at = NULL, external_id = NULL, updated_at = $9
        WHERE id = $1 AND try_number = $2 AND lease_owner = $3 AND state = $4"
    };
}

/// Binds a [`FinishAttempt`] to `$1`…`$10` of [`finish_instance!`] (either query kind).
macro_rules! bind_finish_instance {
    ($query:expr, $f:expr) => {{
        let f: &FinishAttempt = $f;
        // A try handed back (`scheduled`) has not ended the instance.
        let end_date = (f.new_state != TaskState::Scheduled).then_some(f.now);
        $query
            .bind(f.key.ti_id)
            .bind(f.key.try_number)
            .bind(&f.key.worker_id)
            .bind(TaskState::Running.as_str())
            .bind(f.new_state.as_str())
            .bind(end_date)
            .bind(f.next_retry_at)
            .bind(f.output.as_ref().map(Json))
            .bind(f.now)
            .bind(f.progress.rendered.as_ref().map(Json))
    }};
}

/// Binds a [`Transition`]'s parameters to [`TRANSITION_SQL`] (either query kind).
macro_rules! bind_transition {
    ($query:expr, $t:expr) => {{
        let t: &Transition = $t;
        bind_transition_fields!(
            $query
                .bind(t.id)
                .bind(t.expected_state.as_str())
                .bind(t.try_number),
            t
        )
    }};
}

/// Binds what a [`Transition`] writes (`$4`…`$21` of [`transition_update!`]).
macro_rules! bind_transition_fields {
    ($query:expr, $t:expr) => {{
        let t: &Transition = $t;
        let next_retry_at = t.next_retry_at.parts();
        let queued_at = t.queued_at.parts();
        let start_date = t.start_date.parts();
        let end_date = t.end_date.parts();
        let output = t.output.parts();
        let rendered = t.rendered.parts();
        let external_id = t.external_id.parts();
        $query
            .bind(t.new_state.as_str())
            .bind(next_retry_at.0)
            .bind(next_retry_at.1)
            .bind(queued_at.0)
            .bind(queued_at.1)
            .bind(start_date.0)
            .bind(start_date.1)
            .bind(end_date.0)
            .bind(end_date.1)
            .bind(output.0)
            .bind(output.1.map(Json))
            .bind(rendered.0)
            .bind(rendered.1.map(Json))
            .bind(external_id.0)
            .bind(external_id.1)
            .bind(t.max_tries)
            .bind(t.new_state == TaskState::Running)
            .bind(t.now)
    }};
}

/// Groups `ts` (by position) into runs of transitions that differ only in the instance
/// and its try number, so each group can be one statement.
fn same_change_groups(ts: &[Transition]) -> Vec<Vec<usize>> {
    let change = |t: &Transition| Transition {
        id: 0,
        try_number: 0,
        ..t.clone()
    };
    let mut groups: Vec<(Transition, Vec<usize>)> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let key = change(t);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

impl Store {
    /// Adds task instances to run `run` (e.g. a dynamic fan-out); instances that already
    /// exist (same task id and map index) are left alone. Returns the new ones.
    pub async fn insert_task_instances(
        &self,
        run: i64,
        tasks: &[NewTaskInstance],
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        const DAG_OF_RUN: &str = "SELECT dag_id FROM dag_runs WHERE id = $1";
        let inserted = in_tx!(self, |tx| {
            let dag_id: Option<String> = sqlx::query_scalar(DAG_OF_RUN)
                .bind(run)
                .fetch_optional(&mut *tx)
                .await?;
            let dag_id = dag_id.ok_or_else(|| StoreError::not_found("DAG run", run))?;
            insert_task_instances!(&mut *tx, run, &dag_id, tasks, now)
        });
        Ok(inserted)
    }

    /// The instances of one run, ordered by task id and map index.
    pub async fn list_task_instances(&self, run: i64) -> Result<Vec<TaskInstance>, StoreError> {
        const SQL: &str = "SELECT * FROM task_instances WHERE run = $1 ORDER BY task_id, map_index";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(run)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// What the scheduler evaluates of a run's instances ([`InstanceView`]: no outputs,
    /// rendered fields or leases), ordered by task id and map index: all of them when
    /// `since` is `None`, otherwise (on PostgreSQL) only those inserted or changed since
    /// the read that returned `since`. Reading a run of 10,000 instances on every pass
    /// cost 24 ms; the rows that changed meanwhile are a few dozen.
    ///
    /// On PostgreSQL every write stamps the row with its transaction id
    /// (`0006_instance_changes.sql`), and a read returns, as [`InstanceChanges::mark`],
    /// its snapshot's xmin: every transaction below it had ended before the read and is
    /// in what it saw, so one that commits later has an id at or above it and is in the
    /// next read. SQLite, an embedded file with one writer, always reads the whole run.
    pub async fn instance_changes(
        &self,
        run: i64,
        since: Option<ChangeMark>,
    ) -> Result<InstanceChanges, StoreError> {
        type Row = (i64, String, i32, String, i32, Option<DateTime<Utc>>);
        let view = |(id, task_id, map_index, state, try_number, next_retry_at): Row| {
            Ok::<_, sqlx::Error>(InstanceView {
                id,
                task_id,
                map_index,
                state: parse_col(state, "state")?,
                try_number: try_number.max(0) as u32,
                next_retry_at,
            })
        };
        match &self.backend {
            Backend::Postgres(pool) => {
                // One statement, so the mark is the xmin of the snapshot the rows come from;
                // the LEFT JOIN returns it even when no row changed.
                const SQL: &str = "
                    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS mark,
                           ti.id, ti.task_id, ti.map_index, ti.state, ti.try_number,
                           ti.next_retry_at
                    FROM (SELECT 1) AS one
                    LEFT JOIN task_instances ti ON ti.run = $1 AND ti.changed_xid >= $2";
                type PgRow = (
                    i64,
                    Option<i64>,
                    Option<String>,
                    Option<i32>,
                    Option<String>,
                    Option<i32>,
                    Option<DateTime<Utc>>,
                );
                let rows: Vec<PgRow> = sqlx::query_as(SQL)
                    .bind(run)
                    .bind(since.map_or(i64::MIN, |mark| mark.0))
                    .fetch_all(pool)
                    .await?;
                let mark = rows.first().map(|row| ChangeMark(row.0));
                let mut views = rows
                    .into_iter()
                    .filter_map(|(_, id, task_id, map_index, state, try_number, retry)| {
                        Some((id?, task_id?, map_index?, state?, try_number?, retry))
                    })
                    .map(view)
                    .collect::<Result<Vec<_>, _>>()?;
                views.sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
                Ok(InstanceChanges {
                    views,
                    complete: since.is_none(),
                    mark,
                })
            }
            Backend::Sqlite(pool) => {
                const SQL: &str = "
                    SELECT id, task_id, map_index, state, try_number, next_retry_at
                    FROM task_instances WHERE run = $1 ORDER BY task_id, map_index";
                let rows: Vec<Row> = sqlx::query_as(SQL).bind(run).fetch_all(pool).await?;
                let views = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
                Ok(InstanceChanges {
                    views,
                    complete: true,
                    mark: None,
                })
            }
        }
    }

    /// The instances of the named tasks in one run (a try's upstreams, for their
    /// outputs), ordered by task id and map index.
    pub async fn list_task_instances_of(
        &self,
        run: i64,
        task_ids: &[String],
    ) -> Result<Vec<TaskInstance>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        // On PostgreSQL a text[] parameter, so the planner knows how few ids there are and
        // uses the (run, task_id, map_index) index; a JSON list made it scan the whole run
        // (milliseconds per try in a run of 10,000 instances).
        const PG_SQL: &str = "SELECT * FROM task_instances WHERE run = $1 AND task_id = ANY($2)
                              ORDER BY task_id, map_index";
        const SQLITE_SQL: &str = "SELECT * FROM task_instances
                                  WHERE run = $1 AND task_id IN (SELECT value FROM json_each($2))
                                  ORDER BY task_id, map_index";
        let rows = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as(PG_SQL)
                    .bind(run)
                    .bind(task_ids)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as(SQLITE_SQL)
                    .bind(run)
                    .bind(Json(task_ids))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// The instances of several runs (for a grid), ordered by run, task id, map index.
    pub async fn list_task_instances_for_runs(
        &self,
        runs: &[i64],
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let runs_in = id_in_json_list(self, "run", "$1");
        let sql = format!(
            "SELECT * FROM task_instances WHERE {runs_in} ORDER BY run, task_id, map_index"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(runs))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    pub async fn get_task_instance(&self, id: i64) -> Result<Option<TaskInstance>, StoreError> {
        const SQL: &str = "SELECT * FROM task_instances WHERE id = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// The instance of `task_id` at `map_index` in run `run`.
    pub async fn find_task_instance(
        &self,
        run: i64,
        task_id: &str,
        map_index: i32,
    ) -> Result<Option<TaskInstance>, StoreError> {
        const SQL: &str =
            "SELECT * FROM task_instances WHERE run = $1 AND task_id = $2 AND map_index = $3";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(run)
            .bind(task_id)
            .bind(map_index)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Queued and running instances of a DAG, across its runs (for `max_active_tasks`).
    pub async fn count_active_tasks(&self, dag_id: &str) -> Result<i64, StoreError> {
        const SQL: &str =
            "SELECT COUNT(*) FROM task_instances WHERE dag_id = $1 AND state IN ($2, $3)";
        let count = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(dag_id)
            .bind(TaskState::Queued.as_str())
            .bind(TaskState::Running.as_str())
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }

    /// Applies `t` as one conditional UPDATE; [`StoreError::Stale`] when the instance is
    /// no longer in `t.expected_state` at `t.try_number`.
    pub async fn transition(&self, t: &Transition) -> Result<TaskInstance, StoreError> {
        if t.takes_a_try_away() {
            return Ok(in_tx!(self, |tx| {
                let row: Option<TaskInstance> = bind_transition!(sqlx::query_as(TRANSITION_SQL), t)
                    .fetch_optional(&mut *tx)
                    .await?;
                let instance =
                    row.ok_or_else(|| stale_try(t.id, t.expected_state, t.try_number))?;
                close_taken_attempt!(&mut *tx, t);
                instance
            }));
        }
        let row: Option<TaskInstance> = on_pool!(self, |pool| bind_transition!(
            sqlx::query_as(TRANSITION_SQL),
            t
        )
        .fetch_optional(pool)
        .await)?;
        row.ok_or_else(|| stale_try(t.id, t.expected_state, t.try_number))
    }

    /// Applies `ts` in order in one transaction, all or nothing: when another writer
    /// changed any of these instances first, nothing is written and the answer is
    /// [`StoreError::Stale`] for that instance. With `reopen`, that run — if it is
    /// finished — goes back to `running` in the same transaction (its instances changed,
    /// so the scheduler evaluates it again). Returns the instances as written, in order.
    pub async fn transition_atomically(
        &self,
        ts: &[Transition],
        reopen: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        use nightshift_core::state::RunEvent;
        const RUN_SQL: &str = "SELECT * FROM dag_runs WHERE id = $1";
        const REOPEN_SQL: &str = "
            UPDATE dag_runs SET state = $3, start_date = COALESCE(start_date, $4),
                end_date = NULL
            WHERE id = $1 AND state = $2";
        Ok(in_tx!(self, |tx| {
            let mut written = Vec::with_capacity(ts.len());
            for t in ts {
                let row: Option<TaskInstance> = bind_transition!(sqlx::query_as(TRANSITION_SQL), t)
                    .fetch_optional(&mut *tx)
                    .await?;
                let row = row.ok_or_else(|| stale_try(t.id, t.expected_state, t.try_number))?;
                written.push(row);
                if t.takes_a_try_away() {
                    close_taken_attempt!(&mut *tx, t);
                }
            }
            if let Some(run) = reopen {
                let current: DagRun = sqlx::query_as(RUN_SQL)
                    .bind(run)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("DAG run", run))?;
                // Only a finished run reopens; a queued or running one stays as it is.
                if let Ok(reopened) = current.state.on(RunEvent::Reopen) {
                    let done = sqlx::query(REOPEN_SQL)
                        .bind(run)
                        .bind(current.state.as_str())
                        .bind(reopened.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Stale {
                            what: "DAG run",
                            id: run.to_string(),
                            expected: current.state.to_string(),
                        });
                    }
                }
            }
            written
        }))
    }

    /// Applies several transitions in one transaction (one commit), each a
    /// compare-and-set as in [`Store::transition`]; returns, in order, whether each was
    /// applied (`false`: another writer changed that instance first).
    pub async fn transition_all(&self, ts: &[Transition]) -> Result<Vec<bool>, StoreError> {
        if ts.is_empty() {
            return Ok(Vec::new());
        }
        /// One compare-and-set per statement, closing the attempt of a try taken away.
        macro_rules! one_by_one {
            ($tx:expr, $positions:expr, $applied:expr) => {
                for &i in $positions {
                    let t = &ts[i];
                    let done = bind_transition!(sqlx::query(TRANSITION_SQL), t)
                        .execute(&mut *$tx)
                        .await?;
                    let won = done.rows_affected() == 1;
                    if won && t.takes_a_try_away() {
                        close_taken_attempt!(&mut *$tx, t);
                    }
                    $applied[i] = won;
                }
            };
        }
        let mut applied = vec![false; ts.len()];
        match &self.backend {
            // A fan-out making thousands of instances ready is one statement per kind of
            // change, not one round trip per instance.
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for group in same_change_groups(ts) {
                    let first = &ts[group[0]];
                    let ids: Vec<i64> = group.iter().map(|&i| ts[i].id).collect();
                    let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len();
                    if group.len() == 1 || first.takes_a_try_away() || distinct < ids.len() {
                        one_by_one!(tx, &group, applied);
                        continue;
                    }
                    let tries: Vec<i32> = group.iter().map(|&i| ts[i].try_number).collect();
                    let won: std::collections::HashSet<i64> = bind_transition_fields!(
                        sqlx::query_scalar::<_, i64>(TRANSITION_BATCH_SQL)
                            .bind(&ids)
                            .bind(first.expected_state.as_str())
                            .bind(&tries),
                        first
                    )
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                    for &i in &group {
                        applied[i] = won.contains(&ts[i].id);
                    }
                }
                tx.commit().await?;
            }
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let all: Vec<usize> = (0..ts.len()).collect();
                one_by_one!(tx, &all, applied);
                tx.commit().await?;
            }
        }
        Ok(applied)
    }
}

// After the macros above, which it uses.
mod attempts;
