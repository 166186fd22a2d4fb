//! The UI's and the metrics' aggregate reads over the history: the DAG overview, the
//! latest runs per DAG, the grid's cells, the charts' runs and tries (run durations, a
//! year's calendar, a task's tries), instance counts per state, queue depths, pool usage,
//! and the connection pool's statistics.

use chrono::{DateTime, Utc};
use nightshift_core::state::{RunState, TaskState};
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::{
    id_in_json_list, impl_from_row, json_list_sql, on_pool, parse_col, Backend, DagRecord, DagRun,
    Store, StoreError,
};

/// Which DAGs the overview lists: failing ones (latest run failed) first, then by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagOverviewFilter {
    /// Only DAGs whose latest run failed.
    pub failing_only: bool,
    pub paused: Option<bool>,
    pub active: Option<bool>,
    /// A substring of the DAG id (case-insensitive).
    pub search: Option<String>,
    /// Only DAGs with this tag (exactly, as written).
    pub tag: Option<String>,
    /// Only DAGs of this owner (exactly, as written).
    pub owner: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// One row of the DAG overview.
#[derive(Debug, Clone, PartialEq)]
pub struct DagOverview {
    pub dag: DagRecord,
    /// The state of the run with the latest logical date.
    pub latest_state: Option<RunState>,
}

struct OverviewRow(DagOverview);

impl_from_row!(OverviewRow, |row| OverviewRow(DagOverview {
    dag: sqlx::FromRow::from_row(row)?,
    latest_state: match row.try_get::<Option<String>, _>("latest_state")? {
        Some(state) => Some(parse_col(state, "latest_state")?),
        None => None,
    },
}));

/// One cell of the grid: how many instances of `task_id` in `run` are in `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridCell {
    pub run: i64,
    pub task_id: String,
    pub state: TaskState,
    pub count: i64,
    /// The lowest map index among them (-1 for an unmapped task).
    pub min_map_index: i32,
    /// The highest try number among them: above 1, one of them was retried.
    pub max_try: i32,
}

impl_from_row!(GridCell, |row| GridCell {
    run: row.try_get("run")?,
    task_id: row.try_get("task_id")?,
    state: parse_col(row.try_get("state")?, "state")?,
    count: row.try_get("n")?,
    min_map_index: row.try_get("min_map_index")?,
    max_try: row.try_get("max_try")?,
});

/// A run as the history charts show it: when, how long, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub state: RunState,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// A task instance of the run failed (for a run that succeeded anyway, e.g. through an
    /// `all_done` cleanup task, the mark that it did). Only looked up for successful runs:
    /// a failed run says so itself, and an unfinished one may still fail.
    pub failed_task: bool,
}

impl_from_row!(RunOutcome, |row| RunOutcome {
    run_id: row.try_get("run_id")?,
    logical_date: row.try_get("logical_date")?,
    state: parse_col(row.try_get("state")?, "state")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
    failed_task: row.try_get("failed_task")?,
});

/// One try of a task (an attempt), for its duration chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryPoint {
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub map_index: i32,
    pub try_number: i32,
    pub state: TaskState,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
}

impl_from_row!(TryPoint, |row| TryPoint {
    run_id: row.try_get("run_id")?,
    logical_date: row.try_get("logical_date")?,
    map_index: row.try_get("map_index")?,
    try_number: row.try_get("try_number")?,
    state: parse_col(row.try_get("state")?, "state")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
});

/// Slots a pool's queued and running instances hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: String,
    pub queued_slots: i64,
    pub running_slots: i64,
}

/// A run's outcome: `$2` is the success state, `$3` the failed task state. The EXISTS
/// runs only for successful runs (CASE evaluates its branches lazily on both backends).
const RUN_OUTCOME_SELECT: &str = "
    SELECT r.run_id, r.logical_date, r.state, r.start_date, r.end_date,
           CASE WHEN r.state = $2 THEN EXISTS (
               SELECT 1 FROM task_instances ti WHERE ti.state = $3 AND ti.run = r.id)
           ELSE FALSE END AS failed_task
    FROM dag_runs r";

const OVERVIEW_FROM: &str = "
    FROM (SELECT d.*, (SELECT r.state FROM dag_runs r WHERE r.dag_id = d.dag_id
                       ORDER BY r.logical_date DESC, r.id DESC LIMIT 1) AS latest_state
          FROM dags d) AS o";

/// `%term%` for a `LIKE … ESCAPE '\'` on a lowercased column: LIKE's wildcards and the
/// escape character itself are escaped, so they match literally (`hello_commands` finds
/// that DAG, `%` finds a `%`). Both backends take the same `ESCAPE` clause.
fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `FROM … WHERE …` of the overview: every DAG with the state of its latest run,
/// filtered by `filter`.
/// `has_tag` is the backend's test that the JSON array `tags` holds the bound string
/// that follows it.
fn push_overview_from_where<'a, DB>(
    q: &mut QueryBuilder<'a, DB>,
    filter: &'a DagOverviewFilter,
    has_tag: &str,
) where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    q.push(OVERVIEW_FROM);
    q.push(" WHERE TRUE");
    if filter.failing_only {
        q.push(" AND latest_state = ");
        q.push_bind(RunState::Failed.as_str());
    }
    if let Some(paused) = filter.paused {
        q.push(" AND is_paused = ");
        q.push_bind(paused);
    }
    if let Some(active) = filter.active {
        q.push(" AND is_active = ");
        q.push_bind(active);
    }
    if let Some(search) = &filter.search {
        q.push(" AND LOWER(dag_id) LIKE ");
        q.push_bind(like_pattern(search));
        q.push(" ESCAPE '\\'");
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND ");
        q.push(has_tag);
        q.push_bind(tag);
        q.push(")");
    }
    if let Some(owner) = &filter.owner {
        q.push(" AND owner = ");
        q.push_bind(owner);
    }
}

/// The start of a test that a DAG's `tags` (a JSON array) holds a string; the string is
/// bound after it and a `)` closes it.
fn has_tag_sql(store: &Store) -> &'static str {
    match &store.backend {
        Backend::Postgres(_) => "(tags ? ",
        Backend::Sqlite(_) => "EXISTS (SELECT 1 FROM json_each(tags) WHERE json_each.value = ",
    }
}

impl Store {
    /// A page of the DAG overview: failing DAGs first, then by id.
    pub async fn dag_overviews(
        &self,
        filter: &DagOverviewFilter,
    ) -> Result<Vec<DagOverview>, StoreError> {
        let rows: Vec<OverviewRow> = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT *");
            push_overview_from_where(&mut sql, filter, has_tag_sql(self));
            sql.push(" ORDER BY CASE WHEN latest_state = ");
            sql.push_bind(RunState::Failed.as_str());
            sql.push(" THEN 0 ELSE 1 END, dag_id LIMIT ");
            sql.push_bind(filter.limit);
            sql.push(" OFFSET ");
            sql.push_bind(filter.offset);
            sql.build_query_as().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    /// How many DAGs match `filter` (its limit and offset are ignored).
    pub async fn count_dag_overviews(&self, filter: &DagOverviewFilter) -> Result<i64, StoreError> {
        let count = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT COUNT(*)");
            push_overview_from_where(&mut sql, filter, has_tag_sql(self));
            sql.build_query_scalar().fetch_one(pool).await
        })?;
        Ok(count)
    }

    /// The latest `per_dag` runs of each of `dag_ids`, by DAG then newest first. Each DAG's
    /// runs come from its (dag_id, logical_date) index, so years of history cost nothing.
    /// PostgreSQL needs a LATERAL join for that: given the `r.id IN (correlated subquery)`
    /// join that SQLite runs once per DAG, it ran the subquery once per (run, DAG) pair
    /// (2.5 s for 10,000 runs, see `benches/history.rs`). SQLite has no LATERAL.
    pub async fn recent_runs(
        &self,
        dag_ids: &[String],
        per_dag: i64,
    ) -> Result<Vec<DagRun>, StoreError> {
        let join = match &self.backend {
            Backend::Postgres(_) => {
                "CROSS JOIN LATERAL (
                 SELECT r2.* FROM dag_runs r2 WHERE r2.dag_id = d.dag_id
                 ORDER BY r2.logical_date DESC, r2.id DESC LIMIT $2) r"
            }
            Backend::Sqlite(_) => {
                "JOIN dag_runs r ON r.id IN (
                 SELECT r2.id FROM dag_runs r2 WHERE r2.dag_id = d.dag_id
                 ORDER BY r2.logical_date DESC, r2.id DESC LIMIT $2)"
            }
        };
        let sql = format!(
            "SELECT r.* FROM dags d {join}
             WHERE d.dag_id IN ({})
             ORDER BY r.dag_id, r.logical_date DESC, r.id DESC",
            json_list_sql(self, "$1")
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(dag_ids))
            .bind(per_dag)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The grid's cells for the given runs: instance counts per (run, task, state), so a
    /// task mapped over hundreds of items is one row per state.
    pub async fn grid_cells(&self, runs: &[i64]) -> Result<Vec<GridCell>, StoreError> {
        let runs_in = id_in_json_list(self, "run", "$1");
        let sql = format!(
            "SELECT run, task_id, state, COUNT(*) AS n, MIN(map_index) AS min_map_index,
                    MAX(try_number) AS max_try
             FROM task_instances WHERE {runs_in}
             GROUP BY run, task_id, state ORDER BY run, task_id, state"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(runs))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Which of `runs` have a failed task instance (the DAG list marks a successful run
    /// that has one). One probe of the (state, run) index per run.
    pub async fn runs_with_failed_tasks(&self, runs: &[i64]) -> Result<Vec<i64>, StoreError> {
        let runs_in = id_in_json_list(self, "run", "$1");
        let sql = format!(
            "SELECT DISTINCT run FROM task_instances WHERE state = $2 AND {runs_in} ORDER BY run"
        );
        let rows = on_pool!(self, |pool| sqlx::query_scalar(&sql)
            .bind(Json(runs))
            .bind(TaskState::Failed.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The latest `limit` runs of `dag_id`, newest first, for the run-duration chart: one
    /// range of the (dag_id, logical_date) index, and for each successful run one probe of
    /// the (state, run) index for a failed task.
    pub async fn run_outcomes(
        &self,
        dag_id: &str,
        limit: i64,
    ) -> Result<Vec<RunOutcome>, StoreError> {
        let sql = format!(
            "{RUN_OUTCOME_SELECT} WHERE r.dag_id = $1
             ORDER BY r.logical_date DESC LIMIT $4"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(dag_id)
            .bind(RunState::Success.as_str())
            .bind(TaskState::Failed.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The runs of `dag_id` with a logical date in `[from, to)`, oldest first (the
    /// calendar's year), at most `limit` of them.
    pub async fn run_outcomes_between(
        &self,
        dag_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RunOutcome>, StoreError> {
        let sql = format!(
            "{RUN_OUTCOME_SELECT} WHERE r.dag_id = $1 AND r.logical_date >= $5
             AND r.logical_date < $6 ORDER BY r.logical_date LIMIT $4"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(dag_id)
            .bind(RunState::Success.as_str())
            .bind(TaskState::Failed.as_str())
            .bind(limit)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The tries of `task_id` (of one map index, or all) in the latest `limit` runs of
    /// `dag_id`, newest first, at most `limit` of them. From the runs' (dag_id,
    /// logical_date) index to each run's instance (the (run, task_id, map_index) key) to
    /// its attempts (the (task_instance, try_number) key): no scan of the task's history.
    pub async fn task_try_outcomes(
        &self,
        dag_id: &str,
        task_id: &str,
        map_index: Option<i32>,
        limit: i64,
    ) -> Result<Vec<TryPoint>, StoreError> {
        const SQL: &str = "
            SELECT r.run_id, r.logical_date, ti.map_index, a.try_number, a.state,
                   a.start_date, a.end_date
            FROM (SELECT id, run_id, logical_date FROM dag_runs WHERE dag_id = $1
                  ORDER BY logical_date DESC LIMIT $4) r
            JOIN task_instances ti ON ti.run = r.id AND ti.task_id = $2
            JOIN attempts a ON a.task_instance = ti.id
            WHERE ($3 IS NULL OR ti.map_index = $3)
            ORDER BY r.logical_date DESC, ti.map_index DESC, a.try_number DESC
            LIMIT $4";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(task_id)
            .bind(map_index)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Queued and running slots per pool (pools with none are absent).
    pub async fn pool_usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        const SQL: &str = "
            SELECT pool,
                   COALESCE(SUM(CASE WHEN state = $1 THEN pool_slots ELSE 0 END), 0) AS queued,
                   COALESCE(SUM(CASE WHEN state = $2 THEN pool_slots ELSE 0 END), 0) AS running
            FROM task_instances WHERE state IN ($1, $2) GROUP BY pool";
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(TaskState::Queued.as_str())
            .bind(TaskState::Running.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(pool, queued_slots, running_slots)| PoolUsage {
                pool,
                queued_slots,
                running_slots,
            })
            .collect())
    }
}

/// How many task instances are in one state (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount {
    pub state: TaskState,
    pub count: i64,
}

/// Queued task instances waiting for a worker, per queue and pool (for metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    pub pool: String,
    pub queued: i64,
}

/// The connection pool's use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbPoolStats {
    /// Connections open (idle or in use).
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// The states in which task instances are still in flight: counting them stays cheap
/// however long the history (finished ones are counted as they finish, by the workers).
pub const ACTIVE_TASK_STATES: [TaskState; 7] = [
    TaskState::Pending,
    TaskState::Scheduled,
    TaskState::Queued,
    TaskState::Running,
    TaskState::UpForRetry,
    TaskState::UpForReschedule,
    TaskState::AwaitingInput,
];

impl Store {
    /// The number of task instances in each of [`ACTIVE_TASK_STATES`], zeros included.
    pub async fn count_active_task_instances(&self) -> Result<Vec<StateCount>, StoreError> {
        const SQL: &str = "
            SELECT state, COUNT(*) FROM task_instances
            WHERE state IN ($1, $2, $3, $4, $5, $6, $7) GROUP BY state";
        let [a, b, c, d, e, f, g] = ACTIVE_TASK_STATES.map(TaskState::as_str);
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d)
            .bind(e)
            .bind(f)
            .bind(g)
            .fetch_all(pool)
            .await)?;
        ACTIVE_TASK_STATES
            .iter()
            .map(|&state| {
                let count = rows
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                Ok(StateCount { state, count })
            })
            .collect()
    }

    /// Queued task instances per (queue, pool); pairs with none are absent.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        const SQL: &str = "
            SELECT queue, pool, COUNT(*) FROM task_instances
            WHERE state = $1 GROUP BY queue, pool ORDER BY queue, pool";
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(TaskState::Queued.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(queue, pool, queued)| QueueDepth {
                queue,
                pool,
                queued,
            })
            .collect())
    }

    /// Open, idle and maximum connections of this process's pool (no round trip).
    pub fn db_pool_stats(&self) -> DbPoolStats {
        let (open, idle, max) = match &self.backend {
            Backend::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Backend::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        DbPoolStats {
            open,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max,
        }
    }
}
