//! DAG runs: idempotent creation (unique per DAG and logical date) and a person's
//! trigger, lookups, lists and pages, every change of a run's state (start within
//! `max_active_runs`, finish with its callback, cancel, the compare-and-set), and
//! scheduler leases on runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::plan::plan_run;
use nightshift_core::schedule::DataInterval;
use nightshift_core::state::{RunEvent, RunState};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::callbacks::{insert_callback, NewCallback};
use crate::clock::{db_now, db_now_plus, lease_millis};
use crate::instances::{insert_instances, NewTaskInstance, TaskInstance, INSTANCES_PER_INSERT};
use crate::{
    impl_from_row, in_tx, new_task_instances, on_pool, parse_col, text_enum, Backend, Patch, Store,
    StoreError, Transition, Wake,
};

text_enum! {
    /// Why a DAG run exists.
    pub enum RunType as "run type" {
        Scheduled = "scheduled",
        Manual = "manual",
        Backfill = "backfill",
    }
}

/// A DAG run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub dag_id: String,
    /// The run's name, unique per DAG (e.g. `scheduled__2026-01-01T03:00:00+00:00`).
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: RunState,
    pub conf: Value,
    pub queued_at: DateTime<Utc>,
    /// The DAG's `source_hash` the run was created from.
    pub definition_hash: String,
}

/// A stored DAG run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DagRun {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: RunState,
    pub conf: Value,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub definition_hash: String,
}

impl_from_row!(DagRun, |row| DagRun {
    id: row.try_get("id")?,
    dag_id: row.try_get("dag_id")?,
    run_id: row.try_get("run_id")?,
    run_type: parse_col(row.try_get("run_type")?, "run_type")?,
    logical_date: row.try_get("logical_date")?,
    data_interval_start: row.try_get("data_interval_start")?,
    data_interval_end: row.try_get("data_interval_end")?,
    state: parse_col(row.try_get("state")?, "state")?,
    conf: row.try_get::<Json<Value>, _>("conf")?.0,
    queued_at: row.try_get("queued_at")?,
    start_date: row.try_get("start_date")?,
    end_date: row.try_get("end_date")?,
    definition_hash: row.try_get("definition_hash")?,
});

/// Which runs [`Store::list_runs`] returns, newest logical date first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    pub run_type: Option<RunType>,
    /// `None`: no limit.
    pub limit: Option<i64>,
    pub offset: i64,
}

/// A scheduler asking for up to `limit` unfinished runs to work on. A run stays with the
/// scheduler that claimed it until its lease (`lease` after the claim, in the database's
/// clock) expires or it is released; claiming again renews the lease on runs it already
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunClaim {
    pub scheduler_id: String,
    pub limit: i64,
    pub lease: Duration,
}

/// The `INSERT` of a [`NewRun`], each column beside its value, returning the new row;
/// nothing (no row) when the DAG already has a run at that logical date.
fn insert_run<'a, DB>(run: &'a NewRun) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Option<DateTime<Utc>>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
{
    // A run created running (a backfill's) starts as it is queued.
    let start_date = (run.state == RunState::Running).then_some(run.queued_at);
    let mut q = QueryBuilder::new(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start,
                              data_interval_end, state, conf, queued_at, start_date,
                              definition_hash) ",
    );
    q.push_values([run], |mut row, run| {
        row.push_bind(run.dag_id.as_str()) // dag_id
            .push_bind(run.run_id.as_str()) // run_id
            .push_bind(run.run_type.as_str()) // run_type
            .push_bind(run.logical_date) // logical_date
            .push_bind(run.data_interval_start) // data_interval_start
            .push_bind(run.data_interval_end) // data_interval_end
            .push_bind(run.state.as_str()) // state
            .push_bind(Json(&run.conf)) // conf
            .push_bind(run.queued_at) // queued_at
            .push_bind(start_date) // start_date
            .push_bind(run.definition_hash.as_str()); // definition_hash
    });
    q.push(" ON CONFLICT DO NOTHING RETURNING *");
    q
}

/// A unique violation of an insert of `run`: its run id exists at another logical date.
fn run_id_taken(err: sqlx::Error, run: &NewRun) -> StoreError {
    StoreError::conflict_on_unique(
        err,
        "DAG run",
        format!("{}/{}", run.dag_id, run.run_id),
        "a run with this run id already exists",
    )
}

impl Store {
    /// Creates a run; `None` when the DAG already has a run at that logical date (so
    /// concurrent schedulers create it once). A run id already used at another logical
    /// date is [`StoreError::Conflict`].
    pub async fn create_run(&self, run: &NewRun) -> Result<Option<DagRun>, StoreError> {
        let created: Option<DagRun> = on_pool!(self, |pool| insert_run(run)
            .build_query_as()
            .fetch_optional(pool)
            .await)
        .map_err(|err| run_id_taken(err, run))?;
        if created.is_none() {
            self.check_run_id_free(run).await?;
        }
        Ok(created)
    }

    /// After an insert did nothing: a run id taken at another logical date is a conflict;
    /// a run at the same logical date is the idempotent case.
    async fn check_run_id_free(&self, run: &NewRun) -> Result<(), StoreError> {
        let existing = self.get_run_by_run_id(&run.dag_id, &run.run_id).await?;
        match existing {
            Some(existing) if existing.logical_date != run.logical_date => {
                Err(StoreError::Conflict {
                    what: "DAG run",
                    key: format!("{}/{}", run.dag_id, run.run_id),
                    reason: "a run with this run id already exists".to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Creates a run and its task instances in one transaction; `None` (and nothing
    /// written) when the DAG already has a run at that logical date.
    pub async fn create_run_with_tasks(
        &self,
        run: &NewRun,
        tasks: &[NewTaskInstance],
    ) -> Result<Option<(DagRun, Vec<TaskInstance>)>, StoreError> {
        let created = in_tx!(self, |tx| {
            let created: Option<DagRun> = insert_run(run)
                .build_query_as()
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| run_id_taken(err, run))?;
            let Some(created) = created else {
                drop(tx);
                self.check_run_id_free(run).await?;
                return Ok(None);
            };
            let mut instances = Vec::with_capacity(tasks.len());
            for chunk in tasks.chunks(INSTANCES_PER_INSERT) {
                let rows: Vec<TaskInstance> =
                    insert_instances(created.id, &run.dag_id, chunk, run.queued_at)
                        .build_query_as()
                        .fetch_all(&mut *tx)
                        .await?;
                instances.extend(rows);
            }
            // Ids are drawn in the given order.
            instances.sort_by_key(|ti| ti.id);
            (created, instances)
        });
        Ok(Some(created))
    }

    pub async fn get_run(&self, id: i64) -> Result<Option<DagRun>, StoreError> {
        const SQL: &str = "SELECT * FROM dag_runs WHERE id = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    pub async fn get_run_by_run_id(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<DagRun>, StoreError> {
        const SQL: &str = "SELECT * FROM dag_runs WHERE dag_id = $1 AND run_id = $2";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Runs matching `filter`, newest logical date first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<DagRun>, StoreError> {
        let rows = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT * FROM dag_runs WHERE TRUE");
            if let Some(dag_id) = &filter.dag_id {
                sql.push(" AND dag_id = ");
                sql.push_bind(dag_id.as_str());
            }
            if let Some(run_type) = filter.run_type {
                sql.push(" AND run_type = ");
                sql.push_bind(run_type.as_str());
            }
            push_states_in(&mut sql, &filter.states);
            sql.push(" ORDER BY logical_date DESC, id DESC LIMIT ");
            sql.push_bind(filter.limit.unwrap_or(i64::MAX));
            sql.push(" OFFSET ");
            sql.push_bind(filter.offset);
            sql.build_query_as().fetch_all(pool).await
        })?;
        Ok(rows)
    }

    /// How many runs of `dag_id` are in one of `states` (any state when empty).
    pub async fn count_runs(&self, dag_id: &str, states: &[RunState]) -> Result<i64, StoreError> {
        let count = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM dag_runs WHERE dag_id = ");
            sql.push_bind(dag_id);
            push_states_in(&mut sql, states);
            sql.build_query_scalar().fetch_one(pool).await
        })?;
        Ok(count)
    }

    /// The DAG's run with the latest logical date.
    pub async fn latest_run(&self, dag_id: &str) -> Result<Option<DagRun>, StoreError> {
        const SQL: &str = "
            SELECT * FROM dag_runs WHERE dag_id = $1
            ORDER BY logical_date DESC, id DESC LIMIT 1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Moves a run from `expected` to `new` as one compare-and-set; a move no
    /// [`RunState::on`] event makes is [`StoreError::Conflict`] and writes nothing. Entering `running`
    /// sets `start_date` if unset; a finished state sets `end_date`, any other clears it.
    pub async fn set_run_state(
        &self,
        id: i64,
        expected: RunState,
        new: RunState,
        now: DateTime<Utc>,
    ) -> Result<DagRun, StoreError> {
        check_run_move(id, expected, new)?;
        const SQL: &str = "
            UPDATE dag_runs SET
                state = $3,
                start_date = CASE WHEN $4 THEN COALESCE(start_date, $6) ELSE start_date END,
                end_date = CASE WHEN $5 THEN $6 ELSE NULL END
            WHERE id = $1 AND state = $2
            RETURNING *";
        let row: Option<DagRun> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .bind(expected.as_str())
            .bind(new.as_str())
            .bind(new == RunState::Running)
            .bind(new.is_finished())
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::Stale {
            what: "DAG run",
            id: id.to_string(),
            expected: expected.to_string(),
        })
    }

    /// Claims up to `claim.limit` queued or running runs for one scheduler: runs nobody
    /// holds, runs whose scheduler lease expired, and runs this scheduler already holds
    /// (renewed). Least recently claimed first; several schedulers never get the same run.
    ///
    /// When every such run is already this scheduler's with at least half its lease left,
    /// nothing is written: a scheduler passing over its runs many times a second commits
    /// a lease renewal once per half lease, not on every pass.
    pub async fn claim_runs(&self, claim: &RunClaim) -> Result<Vec<DagRun>, StoreError> {
        // Lease times are the database's (see `clock`): schedulers' clocks may differ.
        // `$2` is half the lease in the first statement (renew when less is left) and the
        // whole lease in the second.
        let (now, now_plus) = (db_now(self), db_now_plus(self, "$2"));
        let held_sql = format!(
            "SELECT *, scheduler_lease_expires_at >= {now_plus} AS lease_fresh
             FROM dag_runs
             WHERE state IN ($3, $4)
               AND (scheduler_owner IS NULL OR scheduler_owner = $1
                    OR scheduler_lease_expires_at < {now})
             ORDER BY scheduler_lease_expires_at NULLS FIRST, id
             LIMIT $5"
        );
        let held: Vec<(DagRun, Option<String>, Option<bool>)> = on_pool!(self, |pool| {
            let rows = sqlx::query(&held_sql)
                .bind(&claim.scheduler_id)
                .bind(lease_millis(claim.lease / 2))
                .bind(RunState::Queued.as_str())
                .bind(RunState::Running.as_str())
                .bind(claim.limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    use sqlx::{FromRow as _, Row as _};
                    Ok((
                        DagRun::from_row(row)?,
                        row.try_get("scheduler_owner")?,
                        row.try_get("lease_fresh")?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        if held.iter().all(|(_, owner, fresh)| {
            owner.as_deref() == Some(claim.scheduler_id.as_str()) && *fresh == Some(true)
        }) {
            let mut runs: Vec<DagRun> = held.into_iter().map(|(run, _, _)| run).collect();
            runs.sort_by_key(|run| run.id);
            return Ok(runs);
        }
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite(_) => "",
        };
        // A MATERIALIZED CTE picks the ids once (see `Store::claim`).
        let sql = format!(
            "WITH picked AS MATERIALIZED (
                 SELECT id FROM dag_runs
                 WHERE state IN ($3, $4)
                   AND (scheduler_owner IS NULL OR scheduler_owner = $1
                        OR scheduler_lease_expires_at < {now})
                 ORDER BY scheduler_lease_expires_at NULLS FIRST, id
                 LIMIT $5 {lock})
             UPDATE dag_runs SET scheduler_owner = $1, scheduler_lease_expires_at = {now_plus}
             WHERE id IN (SELECT id FROM picked)
             RETURNING *"
        );
        let mut rows: Vec<DagRun> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(&claim.scheduler_id)
            .bind(lease_millis(claim.lease))
            .bind(RunState::Queued.as_str())
            .bind(RunState::Running.as_str())
            .bind(claim.limit)
            .fetch_all(pool)
            .await)?;
        rows.sort_by_key(|run| run.id);
        Ok(rows)
    }

    /// Gives back every run `scheduler_id` holds (on shutdown); returns how many.
    pub async fn release_runs(&self, scheduler_id: &str) -> Result<u64, StoreError> {
        const SQL: &str = "
            UPDATE dag_runs SET scheduler_owner = NULL, scheduler_lease_expires_at = NULL
            WHERE scheduler_owner = $1";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(scheduler_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(done)
    }
}

/// Refuses a run move that no [`nightshift_core::state::RunEvent`] makes: callers that
/// name the target state still go through [`RunState::on`].
pub(crate) fn check_run_move(id: i64, from: RunState, to: RunState) -> Result<(), StoreError> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            what: "DAG run",
            key: id.to_string(),
            reason: format!("no run event takes it from {from} to {to}"),
        })
    }
}
/// A run someone asks for (CLI `dags trigger`, API `POST …/dagRuns`, a backfill).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerParams {
    /// Default: `manual__<logical date>` (or `backfill__…` for backfills).
    pub run_id: Option<String>,
    /// Default: `now`.
    pub logical_date: Option<DateTime<Utc>>,
    /// Default: the interval the DAG's schedule puts the logical date in, or an empty
    /// interval at the logical date for a DAG without schedule.
    pub data_interval: Option<DataInterval>,
    /// The run's `conf`: a JSON object (merged over the DAG's `params` in templates).
    pub conf: Value,
    pub run_type: RunType,
    pub now: DateTime<Utc>,
}

/// Starting queued runs of one DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRuns {
    pub dag_id: String,
    pub max_active_runs: i64,
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

/// Which runs [`Store::query_runs`] returns, newest logical date first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// `None`: runs of every DAG.
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// ` AND state IN (…)` of `states`; nothing when empty (any state).
fn push_states_in<'a, DB>(q: &mut QueryBuilder<'a, DB>, states: &[RunState])
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if states.is_empty() {
        return;
    }
    q.push(" AND state IN (");
    let mut list = q.separated(", ");
    for state in states {
        list.push_bind(state.as_str());
    }
    q.push(")");
}

/// `WHERE …` of a [`RunQuery`]: maybe one DAG, some states, a logical date range.
fn push_query_where<'a, DB>(q: &mut QueryBuilder<'a, DB>, query: &'a RunQuery)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    q.push(" WHERE TRUE");
    if let Some(dag_id) = &query.dag_id {
        q.push(" AND dag_id = ");
        q.push_bind(dag_id.as_str());
    }
    push_states_in(q, &query.states);
    if let Some(gte) = query.logical_date_gte {
        q.push(" AND logical_date >= ");
        q.push_bind(gte);
    }
    if let Some(lte) = query.logical_date_lte {
        q.push(" AND logical_date <= ");
        q.push_bind(lte);
    }
}

impl Store {
    /// Creates a queued run of `dag` with all its task instances; the scheduler starts it
    /// when `max_active_runs` allows. A run at the same logical date (or with the same run
    /// id) already existing is [`StoreError::Conflict`].
    pub async fn trigger_run(
        &self,
        dag: &Dag,
        params: &TriggerParams,
    ) -> Result<DagRun, StoreError> {
        let run = new_triggered_run(dag, params)?;
        let tasks = new_task_instances(&plan_run(dag));
        let created = self.create_run_with_tasks(&run, &tasks).await?;
        let Some((created, _)) = created else {
            return Err(StoreError::Conflict {
                what: "DAG run",
                key: format!("{}/{}", dag.id, run.run_id),
                reason: format!(
                    "a run at logical date {} already exists",
                    run.logical_date.to_rfc3339()
                ),
            });
        };
        self.wake(Wake::Scheduler).await;
        Ok(created)
    }

    /// [`Store::trigger_run`] that is idempotent on the logical date: the run of `dag` at
    /// `params.logical_date`, created (queued, with its task instances) unless one exists
    /// already. Of several callers racing, exactly one creates it (the unique key on DAG
    /// and logical date decides); `true` when this call did. A run id taken at another
    /// logical date is [`StoreError::Conflict`].
    pub async fn ensure_run(
        &self,
        dag: &Dag,
        params: &TriggerParams,
    ) -> Result<(DagRun, bool), StoreError> {
        let run = new_triggered_run(dag, params)?;
        let tasks = new_task_instances(&plan_run(dag));
        if let Some((created, _)) = self.create_run_with_tasks(&run, &tasks).await? {
            self.wake(Wake::Scheduler).await;
            return Ok((created, true));
        }
        let existing = self.get_run_at(&run.dag_id, run.logical_date).await?;
        // Deleted between the insert and the read (a retention pass): say so, not panic.
        existing.map(|r| (r, false)).ok_or_else(|| {
            StoreError::not_found(
                "DAG run",
                format!("{}@{}", run.dag_id, run.logical_date.to_rfc3339()),
            )
        })
    }

    /// The run of `dag_id` at `logical_date` (a DAG has at most one).
    pub async fn get_run_at(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<DagRun>, StoreError> {
        const SQL: &str = "SELECT * FROM dag_runs WHERE dag_id = $1 AND logical_date = $2";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(logical_date)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
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
                insert_callback(callback)
                    .build_query_scalar::<i64>()
                    .fetch_one(&mut *tx)
                    .await?;
            }
            run
        });
        Ok(run)
    }

    /// What cancelling `run` changes, as stored now: each unfinished instance and the state
    /// [`Store::cancel_run`] puts it in (the state machine's stop event). Writes nothing.
    pub async fn plan_cancel(&self, run: &DagRun) -> Result<Vec<crate::PlannedChange>, StoreError> {
        let instances = self.list_task_instances(run.id).await?;
        let mut changes = Vec::new();
        for ti in &instances {
            if let Some(event) = ti.state.stop_event() {
                changes.push(crate::PlannedChange::new(ti, ti.state.on(event)?));
            }
        }
        Ok(changes)
    }

    /// Stops a run as Airflow's "mark run failed" does: unfinished instances are failed
    /// (running ones lose their lease, so their workers stop them) or skipped if they
    /// never started, then the run is failed.
    pub async fn cancel_run(&self, run: &DagRun, now: DateTime<Utc>) -> Result<DagRun, StoreError> {
        if run.state.is_finished() {
            // A well-formed request that contradicts the run's state: a conflict (409).
            return Err(StoreError::Conflict {
                what: "DAG run",
                key: format!("{}/{}", run.dag_id, run.run_id),
                reason: format!("the run is already {}", run.state),
            });
        }
        for change in self.plan_cancel(run).await? {
            let ti = change.instance;
            let Some(event) = ti.state.stop_event() else {
                continue;
            };
            let transition = Transition::on(ti.id, ti.state, ti.try_number, event, now)?
                .end_date(Patch::Set(now))
                .next_retry_at(Patch::Null)
                .reason("the run was cancelled while this try ran");
            match self.transition(&transition).await {
                Ok(_) | Err(StoreError::Stale { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let stopped = run.state.on(RunEvent::Stop)?;
        let cancelled = self.set_run_state(run.id, run.state, stopped, now).await?;
        self.wake(Wake::Scheduler).await;
        Ok(cancelled)
    }

    /// A page of runs matching `q`, newest logical date first.
    pub async fn query_runs(&self, q: &RunQuery) -> Result<Vec<DagRun>, StoreError> {
        let rows = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT * FROM dag_runs");
            push_query_where(&mut sql, q);
            sql.push(" ORDER BY logical_date DESC, id DESC LIMIT ");
            sql.push_bind(q.limit);
            sql.push(" OFFSET ");
            sql.push_bind(q.offset);
            sql.build_query_as().fetch_all(pool).await
        })?;
        Ok(rows)
    }

    /// How many runs match `q` (its limit and offset are ignored).
    pub async fn count_query_runs(&self, q: &RunQuery) -> Result<i64, StoreError> {
        let count = on_pool!(self, |pool| {
            let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM dag_runs");
            push_query_where(&mut sql, q);
            sql.build_query_scalar().fetch_one(pool).await
        })?;
        Ok(count)
    }
}

/// The queued run a trigger asks for (defaults filled in as [`TriggerParams`] says).
fn new_triggered_run(dag: &Dag, params: &TriggerParams) -> Result<NewRun, StoreError> {
    if !(params.conf.is_object() || params.conf.is_null()) {
        return Err(StoreError::Invalid {
            what: "conf",
            reason: "must be a JSON object".to_owned(),
        });
    }
    let logical_date = params.logical_date.unwrap_or(params.now);
    let interval = params
        .data_interval
        .unwrap_or_else(|| manual_data_interval(dag, logical_date));
    let prefix = match params.run_type {
        RunType::Backfill => "backfill",
        RunType::Scheduled => "scheduled",
        RunType::Manual => "manual",
    };
    let run_id = params
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{prefix}__{}", logical_date.to_rfc3339()));
    let conf = if params.conf.is_null() {
        Value::Object(Default::default())
    } else {
        params.conf.clone()
    };
    Ok(NewRun {
        dag_id: dag.id.clone(),
        run_id,
        run_type: params.run_type,
        logical_date,
        data_interval_start: interval.start,
        data_interval_end: interval.end,
        state: RunState::Queued,
        conf,
        queued_at: params.now,
        definition_hash: dag.source_hash.clone(),
    })
}

/// The data interval the DAG's schedule gives a run at `logical_date`: when the date is
/// one of the schedule's, the interval starting there (what the scheduler creates for
/// it, so a run created early is that run); otherwise [`manual_data_interval`].
pub fn scheduled_data_interval(dag: &Dag, logical_date: DateTime<Utc>) -> DataInterval {
    let scheduled = dag.schedule.as_ref().and_then(|schedule| {
        let on_schedule = schedule.previous_or_equal(logical_date, dag.timezone)? == logical_date;
        let end = schedule.next_after(logical_date, dag.timezone)?;
        on_schedule.then_some(DataInterval {
            start: logical_date,
            end,
        })
    });
    scheduled.unwrap_or_else(|| manual_data_interval(dag, logical_date))
}

/// The data interval of a run triggered by hand at `logical_date`: for a scheduled DAG,
/// the last complete schedule interval ending at or before it (as Airflow infers it);
/// otherwise the empty interval at the logical date.
pub fn manual_data_interval(dag: &Dag, logical_date: DateTime<Utc>) -> DataInterval {
    let empty = DataInterval {
        start: logical_date,
        end: logical_date,
    };
    let Some(schedule) = &dag.schedule else {
        return empty;
    };
    let Some(end) = schedule.previous_or_equal(logical_date, dag.timezone) else {
        return empty;
    };
    let start = end
        .checked_sub_signed(chrono::TimeDelta::nanoseconds(1))
        .and_then(|before| schedule.previous_or_equal(before, dag.timezone))
        .unwrap_or(end);
    DataInterval { start, end }
}
