//! The one write of a task instance's state from outside a try: a compare-and-set
//! [`Transition`], alone, several in one transaction ([`Store::transition_all`]), or all
//! or nothing ([`Store::transition_atomically`]). Leaving `running` this way closes the
//! try's attempt row.

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use serde_json::Value;
use sqlx::types::Json;

use crate::{in_tx, on_pool, Backend, DagRun, Store, StoreError, TaskInstance};

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
