//! The one write of a task instance's state from outside a try: a compare-and-set
//! [`Transition`], alone, several in one transaction ([`Store::transition_all`]), or all
//! or nothing ([`Store::transition_atomically`]). Leaving `running` this way closes the
//! try's attempt row.

use chrono::{DateTime, Utc};
use nightshift_core::state::{IllegalTransition, TaskEvent, TaskState};
use serde_json::Value;
use sqlx::types::Json;

use sqlx::{Database, Encode, QueryBuilder, Type};

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
    fn as_ref(&self) -> Patch<&T> {
        match self {
            Patch::Keep => Patch::Keep,
            Patch::Null => Patch::Null,
            Patch::Set(value) => Patch::Set(value),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Keep => Patch::Keep,
            Patch::Null => Patch::Null,
            Patch::Set(value) => Patch::Set(f(value)),
        }
    }
}

/// A compare-and-set of one task instance's state: it applies only if the instance is
/// still in `expected_state` at `try_number`. Leaving `running` always drops the lease
/// and closes the try's attempt row (see [`Transition::reason`]).
///
/// The only way to make one is [`Transition::on`]: the new state is what
/// [`TaskState::on`] decides for an event, so no transition the state machine refuses can
/// be written. The other columns are set with the builder methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    id: i64,
    expected_state: TaskState,
    try_number: i32,
    new_state: TaskState,
    now: DateTime<Utc>,
    next_retry_at: Patch<DateTime<Utc>>,
    queued_at: Patch<DateTime<Utc>>,
    start_date: Patch<DateTime<Utc>>,
    end_date: Patch<DateTime<Utc>>,
    output: Patch<Value>,
    rendered: Patch<Value>,
    external_id: Patch<String>,
    definition_hash: Patch<String>,
    max_tries: Option<i32>,
    reason: Option<String>,
}

impl Transition {
    /// The transition `event` makes of instance `id`, in `from` at `try_number`: the new
    /// state is [`TaskState::on`]'s decision, and an event it refuses in `from` is the
    /// error. It changes only the state (and `updated_at`) until the builder methods add
    /// columns.
    pub fn on(
        id: i64,
        from: TaskState,
        try_number: i32,
        event: TaskEvent,
        now: DateTime<Utc>,
    ) -> Result<Transition, IllegalTransition> {
        let new_state = from.on(event)?;
        Ok(Transition {
            id,
            expected_state: from,
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
            definition_hash: Patch::Keep,
            max_tries: None,
            reason: None,
        })
    }

    pub fn next_retry_at(self, next_retry_at: Patch<DateTime<Utc>>) -> Transition {
        Transition {
            next_retry_at,
            ..self
        }
    }

    pub fn queued_at(self, queued_at: Patch<DateTime<Utc>>) -> Transition {
        Transition { queued_at, ..self }
    }

    pub fn start_date(self, start_date: Patch<DateTime<Utc>>) -> Transition {
        Transition { start_date, ..self }
    }

    pub fn end_date(self, end_date: Patch<DateTime<Utc>>) -> Transition {
        Transition { end_date, ..self }
    }

    pub fn output(self, output: Patch<Value>) -> Transition {
        Transition { output, ..self }
    }

    pub fn rendered(self, rendered: Patch<Value>) -> Transition {
        Transition { rendered, ..self }
    }

    pub fn external_id(self, external_id: Patch<String>) -> Transition {
        Transition {
            external_id,
            ..self
        }
    }

    /// The version of the DAG's definition the instance's next tries run (a person's
    /// clear that keeps the run's version); `Patch::Null`: the DAG's current one.
    pub fn definition_hash(self, definition_hash: Patch<String>) -> Transition {
        Transition {
            definition_hash,
            ..self
        }
    }

    /// A new retry budget (a cleared instance's).
    pub fn max_tries(self, max_tries: i32) -> Transition {
        Transition {
            max_tries: Some(max_tries),
            ..self
        }
    }

    /// Why a running try is taken away (a person cleared or marked it, its run was
    /// cancelled or timed out): the error its attempt row is closed with. Its worker's
    /// own outcome is then refused as stale, so the row would otherwise stay open.
    pub fn reason(self, reason: impl Into<String>) -> Transition {
        Transition {
            reason: Some(reason.into()),
            ..self
        }
    }

    /// The instance's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The state the instance must still be in.
    pub fn expected_state(&self) -> TaskState {
        self.expected_state
    }

    /// The state the state machine decided.
    pub fn new_state(&self) -> TaskState {
        self.new_state
    }
}

impl Transition {
    /// Whether this transition ends a running or waiting (`up_for_reschedule`,
    /// `awaiting_input`) try from outside (its worker's own outcome goes through
    /// [`Store::finish_attempt`]).
    fn takes_a_try_away(&self) -> bool {
        match self.expected_state {
            TaskState::Running => self.new_state != TaskState::Running,
            // Its wake (`Schedule`) keeps the try: the claim resumes it.
            TaskState::UpForReschedule => self.new_state != TaskState::Scheduled,
            // Every way out of waiting for a decision (the decision, a clear, a mark, a
            // cancel) ends the try.
            TaskState::AwaitingInput => true,
            _ => false,
        }
    }

    /// Whether this transition may end a waiting try that was woken and is `scheduled`
    /// or `queued` for its next poke (its attempt row is still open, see
    /// `attempts::claim`): it leaves the path to the claim. For an instance that was not
    /// waiting the close changes no row.
    fn may_end_a_woken_try(&self) -> bool {
        let towards_claim = |s| matches!(s, TaskState::Scheduled | TaskState::Queued);
        towards_claim(self.expected_state) && !towards_claim(self.new_state)
    }

    /// Whether the try's attempt row is closed with this transition.
    fn closes_attempt(&self) -> bool {
        self.takes_a_try_away() || self.may_end_a_woken_try()
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
            let was = match self.expected_state {
                TaskState::Running => "running",
                TaskState::AwaitingInput => "awaiting input",
                _ => "waiting",
            };
            format!(
                "stopped while {was}: the task instance was set to {}",
                self.new_state
            )
        });
        (state, reason)
    }
}

pub(super) fn stale_try(id: i64, state: TaskState, try_number: i32) -> StoreError {
    StoreError::Stale {
        what: "task instance",
        id: id.to_string(),
        expected: format!("{state} at try {try_number}"),
    }
}

/// Pushes `UPDATE task_instances SET …` for what `t` writes, each column beside its
/// value; a column the transition keeps is left out. Leaving `running` drops the lease.
/// The caller adds the `FROM`/`WHERE` (one instance, or a batch).
fn push_transition_update<'a, DB>(q: &mut QueryBuilder<'a, DB>, t: &'a Transition)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
{
    q.push("UPDATE task_instances SET state = ");
    q.push_bind(t.new_state.as_str());
    q.push(", updated_at = ");
    q.push_bind(t.now);
    push_patch(q, "next_retry_at", t.next_retry_at.as_ref().map(|at| *at));
    push_patch(q, "queued_at", t.queued_at.as_ref().map(|at| *at));
    push_patch(q, "start_date", t.start_date.as_ref().map(|at| *at));
    push_patch(q, "end_date", t.end_date.as_ref().map(|at| *at));
    push_patch(q, "output", t.output.as_ref().map(Json));
    push_patch(q, "rendered", t.rendered.as_ref().map(Json));
    push_patch(q, "external_id", t.external_id.as_ref().map(String::as_str));
    push_patch(
        q,
        "definition_hash",
        t.definition_hash.as_ref().map(String::as_str),
    );
    if let Some(max_tries) = t.max_tries {
        q.push(", max_tries = ");
        q.push_bind(max_tries);
    }
    if t.new_state != TaskState::Running {
        q.push(", lease_owner = NULL, lease_expires_at = NULL");
    }
}

/// Pushes `, column = value` (or `= NULL`) for a patch that writes the column.
fn push_patch<'a, DB, T>(q: &mut QueryBuilder<'a, DB>, column: &str, patch: Patch<T>)
where
    DB: Database,
    T: 'a + Encode<'a, DB> + Type<DB>,
{
    match patch {
        Patch::Keep => {}
        Patch::Null => {
            q.push(format_args!(", {column} = NULL"));
        }
        Patch::Set(value) => {
            q.push(format_args!(", {column} = "));
            q.push_bind(value);
        }
    }
}

/// The compare-and-set of one instance: `t`'s update where the instance is still in
/// `t.expected_state` at `t.try_number`, returning `returning` (`*`, the row as written,
/// or `id`) of the row it changed.
pub(super) fn transition_statement<'a, DB>(
    t: &'a Transition,
    returning: &str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Json<&'a Value>: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("");
    push_transition_update(&mut q, t);
    q.push(" WHERE id = ");
    q.push_bind(t.id);
    q.push(" AND state = ");
    q.push_bind(t.expected_state.as_str());
    q.push(" AND try_number = ");
    q.push_bind(t.try_number);
    q.push(format_args!(" RETURNING {returning}"));
    q
}

/// Closes the still-open attempt row of a try that `t` took away (a row already closed
/// is left as it is), with the state and error of [`Transition::taken_attempt`].
fn close_taken_attempt_statement<'a, DB>(
    t: &'a Transition,
    state: TaskState,
    error: &'a str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new("UPDATE attempts SET state = ");
    q.push_bind(state.as_str());
    q.push(", end_date = ");
    q.push_bind(t.now);
    q.push(", error = COALESCE(error, ");
    q.push_bind(error);
    q.push(") WHERE task_instance = ");
    q.push_bind(t.id);
    q.push(" AND try_number = ");
    q.push_bind(t.try_number);
    q.push(" AND end_date IS NULL");
    q
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
        if t.closes_attempt() {
            let (state, error) = t.taken_attempt();
            return Ok(in_tx!(self, |tx| {
                let row: Option<TaskInstance> = transition_statement(t, "*")
                    .build_query_as()
                    .fetch_optional(&mut *tx)
                    .await?;
                let instance =
                    row.ok_or_else(|| stale_try(t.id, t.expected_state, t.try_number))?;
                close_taken_attempt_statement(t, state, &error)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                instance
            }));
        }
        let row: Option<TaskInstance> = on_pool!(self, |pool| transition_statement(t, "*")
            .build_query_as()
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
        let taken: Vec<(TaskState, String)> = ts.iter().map(Transition::taken_attempt).collect();
        Ok(in_tx!(self, |tx| {
            let mut written = Vec::with_capacity(ts.len());
            for (t, (state, error)) in ts.iter().zip(&taken) {
                let row: Option<TaskInstance> = transition_statement(t, "*")
                    .build_query_as()
                    .fetch_optional(&mut *tx)
                    .await?;
                let row = row.ok_or_else(|| stale_try(t.id, t.expected_state, t.try_number))?;
                written.push(row);
                if t.closes_attempt() {
                    close_taken_attempt_statement(t, *state, error)
                        .build()
                        .execute(&mut *tx)
                        .await?;
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
                        // One compare-and-set per instance (the SQLite arm's loop).
                        for &i in &group {
                            let t = &ts[i];
                            let won: Option<i64> = transition_statement(t, "id")
                                .build_query_scalar()
                                .fetch_optional(&mut *tx)
                                .await?;
                            applied[i] = won.is_some();
                            if applied[i] && t.closes_attempt() {
                                let (state, error) = t.taken_attempt();
                                close_taken_attempt_statement(t, state, &error)
                                    .build()
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                        continue;
                    }
                    let tries: Vec<i32> = group.iter().map(|&i| ts[i].try_number).collect();
                    // The same update of many instances: their ids and try numbers as arrays.
                    let mut q = QueryBuilder::new("");
                    push_transition_update(&mut q, first);
                    push_picked(&mut q, &ids, &tries);
                    q.push(
                        " WHERE task_instances.id = picked.id
                           AND task_instances.try_number = picked.try_number
                           AND task_instances.state = ",
                    );
                    q.push_bind(first.expected_state.as_str());
                    q.push(" RETURNING task_instances.id");
                    let won: std::collections::HashSet<i64> = q
                        .build_query_scalar::<i64>()
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .collect();
                    for &i in &group {
                        applied[i] = won.contains(&ts[i].id);
                    }
                    if first.may_end_a_woken_try() && !won.is_empty() {
                        // A woken waiting try among them: its open attempt row is
                        // closed, in one statement for the group.
                        let (state, error) = first.taken_attempt();
                        let (won_ids, won_tries): (Vec<i64>, Vec<i32>) = group
                            .iter()
                            .filter(|&&i| applied[i])
                            .map(|&i| (ts[i].id, ts[i].try_number))
                            .unzip();
                        let mut q = QueryBuilder::new("UPDATE attempts SET state = ");
                        q.push_bind(state.as_str());
                        q.push(", end_date = ");
                        q.push_bind(first.now);
                        q.push(", error = COALESCE(error, ");
                        q.push_bind(&error);
                        q.push(")");
                        push_picked(&mut q, &won_ids, &won_tries);
                        q.push(
                            " WHERE attempts.task_instance = picked.id
                               AND attempts.try_number = picked.try_number
                               AND attempts.end_date IS NULL",
                        );
                        q.build().execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
            }
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                // One compare-and-set per instance (as for a PostgreSQL group of one).
                for (t, applied) in ts.iter().zip(&mut applied) {
                    let won: Option<i64> = transition_statement(t, "id")
                        .build_query_scalar()
                        .fetch_optional(&mut *tx)
                        .await?;
                    *applied = won.is_some();
                    if *applied && t.closes_attempt() {
                        let (state, error) = t.taken_attempt();
                        close_taken_attempt_statement(t, state, &error)
                            .build()
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
            }
        }
        Ok(applied)
    }
}

/// PostgreSQL: ` FROM UNNEST($ids, $tries) AS picked (id, try_number)`, the (instance,
/// try) pairs one grouped update applies to.
fn push_picked<'q>(q: &mut QueryBuilder<'q, sqlx::Postgres>, ids: &'q [i64], tries: &'q [i32]) {
    q.push(" FROM UNNEST(");
    q.push_bind(ids);
    q.push("::bigint[], ");
    q.push_bind(tries);
    q.push("::int[]) AS picked (id, try_number)");
}
