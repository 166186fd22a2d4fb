//! The `require` kind (Digdag's `require>`): waits for another DAG's run at a logical
//! date — or for one task of it — to finish, and takes its result.
//!
//! It waits as a sensor does: each claim looks once, and a run that is not finished yet
//! ends the claim with [`Outcome::Reschedule`], so the try holds no worker slot between
//! looks. Each look records the required run as the try's external id
//! (`<dag_id>/<run_id>`), which the UI links to. With `if_missing = "trigger"` a missing
//! run is created (exactly once, however many requirers race: the store's unique key on
//! DAG and logical date decides). `rerun_on` applies only to a run that had already
//! finished when the try first looked, and only on that first look: once per try, never
//! on every poke. A required run that failed fails the try (retryable, naming the run and
//! its state) unless `ignore_failure`; a skipped required task skips it.

mod runs;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{IfMissing, RequireTask, RerunOn};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, StoreError};
use serde_json::json;

use super::{Interrupt, Outcome, TaskContext};
pub use runs::{required_run_id, DagLookupError, RequiredDag, RequiredRuns};

/// A rendered `require` task (its `logical_date` resolved to RFC 3339) and the handle on
/// other DAGs' runs (attached by the worker).
#[derive(Debug, Clone, PartialEq)]
pub struct RequireSpec {
    pub task: RequireTask,
    pub runs: Option<RequiredRuns>,
}

impl RequireSpec {
    pub fn new(task: RequireTask) -> RequireSpec {
        RequireSpec { task, runs: None }
    }
}

/// What ends a `require` try at once (besides a cancel or its timeout).
#[derive(Debug, thiserror::Error)]
enum RequireError {
    #[error("the worker gave this require task no access to other DAGs' runs")]
    NoStore,
    #[error("logical_date {0:?} is not an RFC 3339 date-time")]
    BadDate(String),
    #[error(
        "DAG {0} is not known: it was never loaded, so no run of it will come (check the \
         name, or the DAG folder)"
    )]
    UnknownDag(String),
    #[error(
        "DAG {0} is no longer loaded (its file was removed from the DAG folder), so its run \
         at {1} will not come"
    )]
    DagGone(String, String),
    #[error(transparent)]
    Definition(DagLookupError),
    #[error("the required run {0} is this task's own run: it would wait for itself")]
    OwnRun(String),
    #[error("the required run {run} (id {id}, {state}) has no task {task:?}")]
    NoSuchTask {
        run: String,
        id: i64,
        state: RunState,
        task: String,
    },
}

/// Why a look could not decide: the store did not answer (counted as "not yet", like a
/// sensor's failing poke), or the try must end.
#[derive(Debug, thiserror::Error)]
enum LookError {
    #[error("cannot read the required run: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fatal(#[from] RequireError),
}

impl From<DagLookupError> for LookError {
    fn from(err: DagLookupError) -> LookError {
        match err {
            DagLookupError::Store(err) => LookError::Store(err),
            other => LookError::Fatal(RequireError::Definition(other)),
        }
    }
}

/// The state that decides: the required run's, or that of its required task's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    Run(RunState),
    /// The instances' states folded into one: unfinished while any is; else failed if
    /// any failed (or was removed, or upstream failed); skipped if all were; else success.
    Task(TaskState),
}

impl Watched {
    /// The task's instances' states folded into one ([`Watched::Task`]).
    pub fn of_task(states: &[TaskState]) -> Option<Watched> {
        let unfinished = states.iter().find(|s| !s.is_finished());
        let failed = states.iter().find(|s| {
            matches!(
                s,
                TaskState::Failed | TaskState::UpstreamFailed | TaskState::Removed
            )
        });
        let folded = match (unfinished, failed) {
            _ if states.is_empty() => return None,
            (Some(state), _) | (None, Some(state)) => *state,
            (None, None) if states.iter().all(|s| *s == TaskState::Skipped) => TaskState::Skipped,
            (None, None) => TaskState::Success,
        };
        Some(Watched::Task(folded))
    }

    fn finished(self) -> bool {
        match self {
            Watched::Run(state) => state.is_finished(),
            Watched::Task(state) => state.is_finished(),
        }
    }

    fn failed(self) -> bool {
        match self {
            Watched::Run(state) => state == RunState::Failed,
            Watched::Task(state) => matches!(
                state,
                TaskState::Failed | TaskState::UpstreamFailed | TaskState::Removed
            ),
        }
    }

    fn state_name(self) -> &'static str {
        match self {
            Watched::Run(state) => state.as_str(),
            Watched::Task(state) => state.as_str(),
        }
    }
}

/// Whether a first look that finds the required run already finished in `watched` runs
/// it again.
pub fn wants_rerun(rerun_on: RerunOn, watched: Watched) -> bool {
    watched.finished()
        && match rerun_on {
            RerunOn::None => false,
            RerunOn::Failed => watched.failed(),
            RerunOn::All => true,
        }
}

/// `<dag_id>/<run_id>`: how a required run is named in errors, logs and the external id
/// (DAG ids never contain `/`, so the first one splits it).
pub fn run_key(run: &DagRun) -> String {
    format!("{}/{}", run.dag_id, run.run_id)
}

/// The verdict on a look at `run` in `watched`: `Ok` ends the try with that outcome,
/// `Err` is why not yet.
pub fn verdict(task: &RequireTask, run: &DagRun, watched: Watched) -> Result<Outcome, String> {
    let key = run_key(run);
    let what = match &task.task {
        Some(task_id) => format!("task {task_id} of the required run {key} (id {})", run.id),
        None => format!("the required run {key} (id {})", run.id),
    };
    if !watched.finished() {
        return Err(format!("{what} is {}", watched.state_name()));
    }
    let output = || {
        let mut output = json!({
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "logical_date": run.logical_date.to_rfc3339(),
            "state": watched.state_name(),
        });
        if let (Some(task_id), Some(map)) = (&task.task, output.as_object_mut()) {
            map.insert("task_id".to_owned(), json!(task_id));
        }
        Some(output)
    };
    if watched.failed() {
        if task.ignore_failure {
            return Ok(Outcome::Success { output: output() });
        }
        let mut error = format!("{what} ended {}", watched.state_name());
        if task.task.is_some() {
            error.push_str(&format!(" (the run is {})", run.state));
        }
        return Ok(Outcome::retryable(error));
    }
    if watched == Watched::Task(TaskState::Skipped) {
        return Ok(Outcome::Skipped {
            reason: format!("{what} was skipped"),
            exit_code: None,
        });
    }
    Ok(Outcome::Success { output: output() })
}

/// Runs one claim of a `require` try: one look, then its result, a reschedule to the
/// next look, or the end of its timeout.
pub async fn run(spec: &RequireSpec, ctx: &TaskContext) -> Outcome {
    let look_no = u64::from(ctx.wakes) + 1;
    // Woken at (or after) the end of its timeout: one last look, bounded only by a cancel.
    let last_chance = ctx.timeout.is_some_and(|left| left.is_zero());
    let looked = look(spec, ctx);
    let result = if last_chance {
        tokio::select! {
            r = looked => r,
            () = ctx.cancel.cancelled() => return Interrupt::Cancelled.outcome(),
        }
    } else {
        tokio::select! {
            r = looked => r,
            why = ctx.interrupted() => return stopped(ctx, why, look_no, None),
        }
    };
    let reason = match result {
        Ok(Ok(outcome)) => {
            if let Outcome::Failed { error, .. } = &outcome {
                ctx.system(format!("look {look_no}: {error}"));
            } else {
                ctx.system(format!("look {look_no}: done"));
            }
            return outcome;
        }
        Ok(Err(reason)) => reason,
        Err(LookError::Fatal(err)) => return Outcome::fatal(err.to_string()),
        Err(err @ LookError::Store(_)) => err.to_string(),
    };
    let wake_in = match ctx.timeout {
        Some(_) if last_chance => {
            ctx.system(format!("look {look_no}: not yet ({reason})"));
            let why = Interrupt::TimedOut(ctx.timeout.unwrap_or_default());
            return stopped(ctx, why, look_no, Some(reason));
        }
        Some(left) => spec.task.poke_interval.min(left),
        None => spec.task.poke_interval,
    };
    ctx.system(format!(
        "look {look_no}: not yet ({reason}); next look in {}, without a worker slot",
        humantime::format_duration(wake_in)
    ));
    Outcome::Reschedule { wake_in, reason }
}

/// One look: `Ok(Ok(outcome))` ends the try, `Ok(Err(reason))` waits.
async fn look(spec: &RequireSpec, ctx: &TaskContext) -> Result<Result<Outcome, String>, LookError> {
    let task = &spec.task;
    let runs = spec.runs.as_ref().ok_or(RequireError::NoStore)?;
    let text = task.logical_date.clone().unwrap_or_default();
    let at = DateTime::parse_from_rfc3339(&text)
        .map_err(|_| RequireError::BadDate(text.clone()))?
        .with_timezone(&Utc);
    let run = match runs.find(&task.dag, at).await? {
        Some(run) => run,
        None => match missing(spec, runs, at, ctx).await? {
            Ok(run) => run,
            Err(reason) => return Ok(Err(reason)),
        },
    };
    let key = run_key(&run);
    if run.dag_id == ctx.dag_id && run.run_id == ctx.run_id {
        return Err(RequireError::OwnRun(key).into());
    }
    // Every look records the run (a wait's end clears the instance's copy; the attempt
    // keeps it), so the task page links to it while it waits and after.
    if let Err(err) = ctx.external.record(&key).await {
        tracing::warn!(error = %err, run = %key, "cannot record the required run");
    }
    let watched = match &task.task {
        None => Watched::Run(run.state),
        Some(task_id) => {
            let states = runs.task_states(&run, task_id).await?;
            Watched::of_task(&states).ok_or_else(|| RequireError::NoSuchTask {
                run: key.clone(),
                id: run.id,
                state: run.state,
                task: task_id.clone(),
            })?
        }
    };
    // `rerun_on`: only for a run already finished when this try first looked.
    if ctx.wakes == 0 && wants_rerun(task.rerun_on, watched) {
        let required = runs
            .dag(&task.dag)
            .await?
            .ok_or_else(|| RequireError::UnknownDag(task.dag.clone()))?;
        match runs
            .rerun(&required.dag, &run, task.rerun_on, task.task.as_deref(), Utc::now())
            .await
        {
            Ok(0) => {}
            Ok(cleared) => {
                let rerun_on = match task.rerun_on {
                    RerunOn::None => "none",
                    RerunOn::Failed => "failed",
                    RerunOn::All => "all",
                };
                ctx.system(format!(
                    "the required run {key} (id {}) had ended {}; rerun_on = \"{rerun_on}\": \
                     cleared {cleared} task instances to run it again",
                    run.id,
                    watched.state_name(),
                ));
                return Ok(Err(format!("the required run {key} (id {}) runs again", run.id)));
            }
            Err(StoreError::Stale { .. }) => {
                return Ok(Err(format!(
                    "the required run {key} (id {}) changed while it was being re-run (another requirer re-ran it)",
                    run.id
                )))
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(verdict(task, &run, watched))
}

/// No run of the required DAG at `at`: create it (`if_missing = "trigger"`) or say why
/// not yet. A DAG that is unknown or no longer loaded ends the try: no run will come.
async fn missing(
    spec: &RequireSpec,
    runs: &RequiredRuns,
    at: DateTime<Utc>,
    ctx: &TaskContext,
) -> Result<Result<DagRun, String>, LookError> {
    let task = &spec.task;
    let required = runs
        .dag(&task.dag)
        .await?
        .ok_or_else(|| RequireError::UnknownDag(task.dag.clone()))?;
    if !required.is_active {
        return Err(RequireError::DagGone(task.dag.clone(), at.to_rfc3339()).into());
    }
    let paused = if required.is_paused {
        format!(
            " (DAG {} is paused: its runs start once it is unpaused)",
            task.dag
        )
    } else {
        String::new()
    };
    if task.if_missing == IfMissing::Wait {
        return Ok(Err(format!(
            "no run of DAG {} at {} yet{paused}",
            task.dag,
            at.to_rfc3339()
        )));
    }
    let (run, created) = runs.create(&required.dag, at, Utc::now()).await?;
    if created {
        ctx.system(format!(
            "if_missing = \"trigger\": created the run {} (id {}){paused}",
            run_key(&run),
            run.id
        ));
    }
    Ok(Ok(run))
}

/// The outcome of a `require` try stopped by a cancel or its timeout after `looks` looks.
fn stopped(ctx: &TaskContext, why: Interrupt, looks: u64, last: Option<String>) -> Outcome {
    let Interrupt::TimedOut(left) = why else {
        return why.outcome();
    };
    // The whole timeout, counted from the try's first look; as for a sensor, a retry
    // would wait the same way, so it is not retried.
    let timed_out = Interrupt::TimedOut(ctx.try_timeout.unwrap_or(left));
    let mut message = format!("require {timed_out} after {looks} looks");
    if let Some(last) = last {
        message.push_str(&format!("; last look: {last}"));
    }
    Outcome::fatal(message)
}

#[cfg(test)]
mod tests;
