//! Task instances: one task of one DAG run at one map index. Creating them (with a run,
//! added later, fanned out), reading them (by run, by id, the scheduler's changed rows,
//! the UI's pages), and, in the submodules, every change of their state: the
//! compare-and-set [`Transition`] ([`transition`]), a person's mark and clear ([`mark`]),
//! and the scheduler's queueing and fan-out ([`queue`]). A try's own life (claim,
//! heartbeat, finish, reap) is in [`crate::attempts`].

use chrono::{DateTime, Utc};
use nightshift_core::plan::{InstanceView, PlannedInstance};
use nightshift_core::state::TaskState;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::{
    id_in_json_list, impl_from_row, in_tx, on_pool, parse_col, Backend, DagRun, Store, StoreError,
};

pub use approval::ApprovalDecision;
pub use mark::{ClearPlan, MarkPlan, MarkRequest, PlannedChange};
pub use queue::{ExpandMapped, QueueRequest};
pub use transition::{Patch, Transition};

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
    /// next try re-attaches to it: set by [`crate::RunningTry::set_external_id`], cleared when a worker
    /// records the try's outcome ([`crate::RunningTry::finish`]), kept when a try is reaped or
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

/// Which instances of one run [`Store::query_task_instances`] returns, by task and map index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInstanceQuery {
    pub run: i64,
    pub task_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<TaskState>,
    pub limit: i64,
    pub offset: i64,
}

/// Instances per `INSERT` ([`insert_instances`]): 12 parameters a row keeps one
/// statement far below both backends' parameter limits (SQLite 32,766, PostgreSQL 65,535).
pub(crate) const INSTANCES_PER_INSERT: usize = 1000;

/// The multi-row `INSERT` of `rows` (at most [`INSTANCES_PER_INSERT`]), new instances of
/// run `run` of DAG `dag_id`, each column beside its value. Existing instances (same task
/// id and map index) are left alone and not returned; the new rows come back in any
/// order, and their ids are drawn in the given order.
pub(crate) fn insert_instances<'a, DB>(
    run: i64,
    dag_id: &'a str,
    rows: &'a [NewTaskInstance],
    now: DateTime<Utc>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(
        "INSERT INTO task_instances (run, dag_id, task_id, map_index, state, try_number,
                                     max_tries, kind, queue, pool, pool_slots, priority,
                                     updated_at) ",
    );
    q.push_values(rows, |mut row, ti| {
        row.push_bind(run) // run
            .push_bind(dag_id) // dag_id
            .push_bind(ti.task_id.as_str()) // task_id
            .push_bind(ti.map_index) // map_index
            .push_bind(ti.state.as_str()) // state
            .push("0") // try_number
            .push_bind(ti.max_tries) // max_tries
            .push_bind(ti.kind.as_str()) // kind
            .push_bind(ti.queue.as_str()) // queue
            .push_bind(ti.pool.as_str()) // pool
            .push_bind(ti.pool_slots) // pool_slots
            .push_bind(ti.priority) // priority
            .push_bind(now); // updated_at
    });
    q.push(" ON CONFLICT (run, task_id, map_index) DO NOTHING RETURNING *");
    q
}

/// `WHERE …` of [`TaskInstanceQuery`]: one run, maybe one task, maybe some states.
fn push_query_where<'a, DB>(q: &mut QueryBuilder<'a, DB>, query: &'a TaskInstanceQuery)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    q.push(" WHERE run = ");
    q.push_bind(query.run);
    if let Some(task_id) = &query.task_id {
        q.push(" AND task_id = ");
        q.push_bind(task_id.as_str());
    }
    if !query.states.is_empty() {
        q.push(" AND state IN (");
        let mut states = q.separated(", ");
        for state in &query.states {
            states.push_bind(state.as_str());
        }
        q.push(")");
    }
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
            let mut inserted = Vec::with_capacity(tasks.len());
            for chunk in tasks.chunks(INSTANCES_PER_INSERT) {
                let rows: Vec<TaskInstance> = insert_instances(run, &dag_id, chunk, now)
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                inserted.extend(rows);
            }
            // Ids are drawn in the given order.
            inserted.sort_by_key(|ti| ti.id);
            inserted
        });
        Ok(inserted)
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
            let mut count = 0;
            for chunk in instances.chunks(INSTANCES_PER_INSERT) {
                let rows: Vec<TaskInstance> = insert_instances(run.id, &run.dag_id, chunk, now)
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                count += rows.len() as u64;
            }
            count
        });
        Ok(count)
    }

    /// Test setup only (`testkit::force_state`): writes `state` into instance `id` as it
    /// is, with no state machine and no compare-and-set, to put a fixture in a state
    /// without walking the events that lead there. Nothing outside tests calls it.
    #[doc(hidden)]
    pub async fn force_state_for_tests(
        &self,
        id: i64,
        state: TaskState,
    ) -> Result<TaskInstance, StoreError> {
        const SQL: &str = "UPDATE task_instances SET state = $2 WHERE id = $1 RETURNING *";
        let row: Option<TaskInstance> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(state.as_str())
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("task instance", id))
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

    /// A page of one run's instances, by task id and map index.
    pub async fn query_task_instances(
        &self,
        q: &TaskInstanceQuery,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let rows = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT * FROM task_instances");
            push_query_where(&mut sql, q);
            sql.push(" ORDER BY task_id, map_index LIMIT ");
            sql.push_bind(q.limit);
            sql.push(" OFFSET ");
            sql.push_bind(q.offset);
            sql.build_query_as().fetch_all(pool).await
        })?;
        Ok(rows)
    }

    /// How many instances match `q` (its limit and offset are ignored).
    pub async fn count_query_task_instances(
        &self,
        q: &TaskInstanceQuery,
    ) -> Result<i64, StoreError> {
        let count = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM task_instances");
            push_query_where(&mut sql, q);
            sql.build_query_scalar().fetch_one(pool).await
        })?;
        Ok(count)
    }
}

/// The store rows for planned instances, all `pending`.
pub fn new_task_instances(planned: &[PlannedInstance]) -> Vec<NewTaskInstance> {
    planned
        .iter()
        .map(|p| NewTaskInstance {
            task_id: p.task_id.clone(),
            map_index: p.map_index,
            state: TaskState::Pending,
            max_tries: p.max_tries as i32,
            kind: p.kind.to_owned(),
            queue: p.queue.clone(),
            pool: p.pool.clone(),
            pool_slots: p.pool_slots as i32,
            priority: p.priority,
        })
        .collect()
}

/// What `core::plan` needs to know of stored instances.
pub fn instance_views(instances: &[TaskInstance]) -> Vec<InstanceView> {
    instances
        .iter()
        .map(|ti| InstanceView {
            id: ti.id,
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            state: ti.state,
            try_number: ti.try_number.max(0) as u32,
            next_retry_at: ti.next_retry_at,
        })
        .collect()
}

// After the macros above, which they use.
mod approval;
mod mark;
mod queue;
mod transition;
