//! Working on one running DAG run: applying core::plan's decisions (trigger rules,
//! retries, removed tasks, tasks added to the DAG file), fanning out `for_each` tasks over an upstream's output,
//! failing a run past its `dagrun_timeout`, and ending a run with its callback.

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::dag::{Dag, Task};
use nightshift_core::plan::{
    evaluate_run, plan_missing, planned_instance, Action, InstanceView, UNMAPPED,
};
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_store::{
    new_task_instances, CallbackEvent, CallbackKind, DagRun, ExpandMapped, FinishRun, LogLine,
    NewCallback, Patch, TaskInstance, Transition,
};
use serde_json::{json, Value};
use tracing::instrument;

use crate::callbacks::event_payload;
use crate::instance_cache::RunInstances;
use crate::scheduler::{store_err, Scheduler, SchedulerError};

/// Airflow's default `max_map_length`: a fan-out over more items fails instead (the
/// `max_map_length` setting, [`crate::SchedulerConfig::max_map_length`], changes it).
pub const MAX_MAP_LENGTH: usize = 1024;

/// Evaluation passes per run and tick: each pass can settle one more level of a chain of
/// skips or upstream failures without waiting for the next tick.
const MAX_PASSES: usize = 16;

/// A `for_each` placeholder to fan out, with the upstream whose output it maps over.
#[derive(Clone, Copy)]
struct FanOut<'a> {
    dag: &'a Dag,
    run: &'a DagRun,
    task: &'a Task,
    /// The placeholder instance (map index -1) the fan-out replaces.
    placeholder: i64,
    /// The upstream task whose JSON list output gives the items.
    upstream: &'a str,
    /// That upstream's instances in this run.
    upstream_instances: &'a [TaskInstance],
}

/// What handling one run did.
#[derive(Debug, Default)]
pub(crate) struct RunProgress {
    pub transitions: usize,
    pub expanded: usize,
    pub finished: bool,
}

impl Scheduler {
    #[instrument(skip_all, fields(dag_id = %run.dag_id, run_id = %run.run_id))]
    pub(crate) async fn handle_run(
        &self,
        dag: &Dag,
        dag_hash: &str,
        run: &DagRun,
        now: DateTime<Utc>,
    ) -> Result<RunProgress, SchedulerError> {
        // The run's instances as the last pass left them; a pass that fails drops them.
        let mut instances = self.instances.take(run.id);
        let progress = self
            .work_on_run(dag, dag_hash, run, &mut instances, now)
            .await?;
        if !progress.finished {
            self.instances.put(run.id, instances);
        }
        Ok(progress)
    }

    async fn work_on_run(
        &self,
        dag: &Dag,
        dag_hash: &str,
        run: &DagRun,
        instances: &mut RunInstances,
        now: DateTime<Utc>,
    ) -> Result<RunProgress, SchedulerError> {
        let mut progress = RunProgress::default();
        // The instances as evaluated: brought up to date once (the rows changed since the
        // last pass), then kept in step with the transitions this pass applies; read again
        // only after a fan-out, new instances or a lost race.
        self.refresh_views(run, instances).await?;
        for _ in 0..MAX_PASSES {
            let views = &instances.views;
            if let Some(timeout) = timed_out(dag, run, now) {
                let error = format!(
                    "the run exceeded its dagrun_timeout of {}",
                    nightshift_core::duration::format_duration(timeout)
                );
                tracing::info!(%error, "run timed out");
                self.stop_run(dag, run, views, error, now).await?;
                progress.finished = true;
                return Ok(progress);
            }
            // Tasks added to the DAG file join the running run (evaluated next pass). Only
            // a definition not yet checked against this run can have any: instances are
            // never deleted.
            if !instances.checked_against(dag_hash) {
                let missing = plan_missing(dag, views);
                if !missing.is_empty() {
                    let added = self
                        .store
                        .add_task_instances(run, &new_task_instances(&missing), now)
                        .await
                        .map_err(store_err("adding instances of new tasks"))?;
                    tracing::info!(added, "tasks new in the DAG file join the running run");
                    if added > 0 {
                        self.refresh_views(run, instances).await?;
                        continue;
                    }
                }
                instances.set_checked_against(dag_hash);
            }
            let views = &instances.views;
            let evaluation = evaluate_run(dag, views, now);
            if evaluation.actions.is_empty() {
                if let Some(outcome) = evaluation.outcome {
                    let cause = match outcome {
                        RunState::Failed => Some(self.root_cause(dag, views).await?),
                        _ => None,
                    };
                    progress.finished = self.finish_run(dag, run, outcome, cause, now).await?;
                }
                break;
            }
            let mut changed = false;
            let mut reread = false;
            // State changes go to the store in one transaction: a fan-out of thousands of
            // instances becoming ready costs one commit, not thousands.
            let mut transitions = Vec::new();
            for action in &evaluation.actions {
                if let Action::Transition {
                    id,
                    from,
                    try_number,
                    event,
                } = action
                {
                    if let Some(t) = transition(*id, *from, *try_number, *event, now) {
                        transitions.push(t);
                    }
                }
            }
            let applied = self
                .store
                .transition_all(&transitions)
                .await
                .map_err(store_err("applying transitions"))?;
            for (t, applied) in transitions.iter().zip(applied) {
                if applied {
                    progress.transitions += 1;
                    changed = true;
                    instances.set_state(t.id(), t.new_state());
                } else {
                    tracing::debug!(ti_id = t.id(), "lost a race; moving on");
                    reread = true;
                }
            }
            for action in evaluation.actions {
                match action {
                    Action::Transition { .. } => {}
                    Action::Expand {
                        id,
                        task_id,
                        upstream,
                    } => {
                        let Some(task) = dag.tasks.get(&task_id) else {
                            continue;
                        };
                        let upstreams = self
                            .store
                            .list_task_instances_of(run.id, std::slice::from_ref(&upstream))
                            .await
                            .map_err(store_err("reading a fan-out's upstream"))?;
                        let fan_out = FanOut {
                            dag,
                            run,
                            task,
                            placeholder: id,
                            upstream: &upstream,
                            upstream_instances: &upstreams,
                        };
                        if self.expand(&fan_out, now).await? {
                            progress.expanded += 1;
                            changed = true;
                        }
                        reread = true;
                    }
                }
            }
            if !changed {
                break;
            }
            if reread {
                self.refresh_views(run, instances).await?;
            }
        }
        Ok(progress)
    }

    async fn refresh_views(
        &self,
        run: &DagRun,
        instances: &mut RunInstances,
    ) -> Result<(), SchedulerError> {
        instances
            .refresh(&self.store, run.id)
            .await
            .map_err(store_err("listing task instances"))
    }

    /// Applies `event` to one instance with a compare-and-set; false when another writer
    /// won (stale) or the state machine refuses.
    async fn transition(
        &self,
        id: i64,
        from: TaskState,
        try_number: u32,
        event: TaskEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let Some(t) = transition(id, from, try_number, event, now) else {
            return Ok(false);
        };
        match self.store.transition(&t).await {
            Ok(_) => Ok(true),
            Err(err) if err.is_stale() => {
                tracing::debug!(ti_id = id, error = %err, "lost a race; moving on");
                Ok(false)
            }
            Err(err) => Err(store_err("applying a transition")(err)),
        }
    }

    /// Fans out the placeholder `id` of `task` over the JSON list `upstream` produced:
    /// one instance per item (map index 0..n, scheduled at once); an empty list skips
    /// the task; anything else fails it with a log line saying why.
    #[instrument(skip_all, fields(
        dag_id = %fan_out.dag.id,
        run_id = %fan_out.run.run_id,
        task_id = %fan_out.task.id,
    ))]
    async fn expand(
        &self,
        fan_out: &FanOut<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let FanOut {
            task,
            placeholder: id,
            upstream,
            upstream_instances,
            ..
        } = *fan_out;
        let items = match upstream_items(upstream, upstream_instances, self.config.max_map_length) {
            Ok(items) => items,
            Err(message) => {
                tracing::info!(error = %message, "for_each cannot fan out; the task fails");
                return self.fail_placeholder(fan_out, message, now).await;
            }
        };
        if items == 0 {
            tracing::info!("for_each over an empty list; the task is skipped");
            return self
                .transition(id, TaskState::Pending, 0, TaskEvent::Skip, now)
                .await;
        }
        let scheduled = TaskState::Pending
            .on(TaskEvent::Schedule)
            .unwrap_or(TaskState::Scheduled);
        let planned: Vec<_> = (0..items)
            .map(|index| planned_instance(task, i32::try_from(index).unwrap_or(i32::MAX)))
            .collect();
        let mut rows = new_task_instances(&planned);
        for row in &mut rows {
            row.state = scheduled;
        }
        let request = ExpandMapped {
            placeholder: id,
            expected_state: TaskState::Pending,
            instances: rows,
            now,
        };
        match self.store.expand_mapped(&request).await {
            Ok(count) => {
                tracing::info!(instances = count, "for_each fanned out");
                Ok(true)
            }
            Err(err) if err.is_stale() => Ok(false),
            Err(err) => Err(store_err("fanning out a mapped task")(err)),
        }
    }

    /// Fails a `for_each` placeholder that cannot fan out, with the reason in its log (try
    /// 0, stream `scheduler`) and the task's on_failure callback.
    async fn fail_placeholder(
        &self,
        fan_out: &FanOut<'_>,
        message: String,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let FanOut {
            dag,
            run,
            task,
            placeholder: id,
            ..
        } = *fan_out;
        let log = [LogLine {
            ts: now,
            stream: "scheduler".to_owned(),
            line: message.clone(),
        }];
        self.store
            .append_logs(id, 0, &log)
            .await
            .map_err(store_err("writing a task log"))?;
        if !self
            .transition(id, TaskState::Pending, 0, TaskEvent::MarkFailed, now)
            .await?
        {
            return Ok(false);
        }
        if let Some(callback) = &task.on_failure {
            let request = NewCallback {
                kind: CallbackKind::Task,
                event: CallbackEvent::Failure,
                dag_id: dag.id.clone(),
                run_id: run.run_id.clone(),
                task_id: Some(task.id.clone()),
                map_index: UNMAPPED,
                try_number: 0,
                callback: callback.clone(),
                payload: event_payload(TaskState::Failed.as_str(), Some(&message)),
                now,
            };
            self.enqueue(&request).await?;
        }
        Ok(true)
    }

    /// Fails a running run for `error` (it exceeded its `dagrun_timeout`, or missed a
    /// deadline with `fail = true`): queued, running and up_for_retry instances are marked
    /// failed (a worker still running one then loses its lease and stops it), pending and
    /// scheduled ones skipped, each try closed with `error`; then the run fails with its
    /// `on_failure` callback.
    #[instrument(skip_all, fields(dag_id = %dag.id, run_id = %run.run_id))]
    pub(crate) async fn stop_run(
        &self,
        dag: &Dag,
        run: &DagRun,
        instances: &[InstanceView],
        error: String,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let transitions: Vec<Transition> = instances
            .iter()
            .filter_map(|ti| {
                let event = ti.state.stop_event()?;
                let t = transition(ti.id, ti.state, ti.try_number, event, now)?;
                Some(t.reason(error.clone()))
            })
            .collect();
        self.store
            .transition_all(&transitions)
            .await
            .map_err(store_err("stopping the run's instances"))?;
        let cause = RootCause {
            error,
            failed: Vec::new(),
        };
        self.finish_run(dag, run, RunState::Failed, Some(cause), now)
            .await?;
        Ok(())
    }

    /// Ends the run in `outcome` and enqueues the DAG's callback for it in one
    /// transaction; false when another scheduler or a person got there first.
    async fn finish_run(
        &self,
        dag: &Dag,
        run: &DagRun,
        outcome: RunState,
        cause: Option<RootCause>,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let (callback, event) = match outcome {
            RunState::Failed => (&dag.on_failure, CallbackEvent::Failure),
            _ => (&dag.on_success, CallbackEvent::Success),
        };
        let callback = callback.as_ref().map(|callback| NewCallback {
            kind: CallbackKind::DagRun,
            event,
            dag_id: dag.id.clone(),
            run_id: run.run_id.clone(),
            task_id: None,
            map_index: UNMAPPED,
            try_number: 0,
            callback: callback.clone(),
            payload: run_payload(outcome, cause.as_ref()),
            now,
        });
        let request = FinishRun {
            id: run.id,
            new_state: outcome,
            now,
            callback,
        };
        match self.store.finish_run(&request).await {
            Ok(_) => {
                tracing::info!(state = %outcome, "run finished");
                Ok(true)
            }
            Err(err) if err.is_stale() => Ok(false),
            Err(err) => Err(store_err("finishing a run")(err)),
        }
    }

    pub(crate) async fn enqueue(&self, request: &NewCallback) -> Result<(), SchedulerError> {
        self.store
            .enqueue_callback(request)
            .await
            .map(|_| ())
            .map_err(store_err("enqueueing a callback"))
    }
}

/// `Some(timeout)` when the run has been running longer than the DAG's `dagrun_timeout`.
fn timed_out(dag: &Dag, run: &DagRun, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let timeout = dag.dagrun_timeout?;
    let started = run.start_date?;
    let limit = TimeDelta::from_std(timeout).ok()?;
    (now - started > limit).then_some(timeout)
}

/// Why a run failed: the instances that failed themselves (not the upstream_failed ones
/// downstream of them), in dependency order, each with the first line of its last error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RootCause {
    /// `failed tasks: load, report[2]` (or the timeout), the alert's one-line reason.
    pub error: String,
    pub failed: Vec<FailedTask>,
}

/// One instance that failed, as the run alert names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FailedTask {
    pub task_id: String,
    pub map_index: i32,
    /// The first line of the last try's error; `None` when there is none (marked failed).
    pub error: Option<String>,
}

/// The alert names at most this many failed instances (a fan-out can fail thousands).
const MAX_NAMED_FAILURES: usize = 10;

impl Scheduler {
    /// The run's root cause: the failed instances in dependency order (then map index);
    /// failed or upstream_failed leaves when no instance failed itself (a run failed by a
    /// person's mark on a leaf).
    async fn root_cause(
        &self,
        dag: &Dag,
        instances: &[InstanceView],
    ) -> Result<RootCause, SchedulerError> {
        let failed = failed_first(dag, instances);
        let mut named = Vec::new();
        for ti in failed.iter().take(MAX_NAMED_FAILURES) {
            let attempts = self
                .store
                .list_attempts(ti.id)
                .await
                .map_err(store_err("reading a failed task's attempts"))?;
            let error = attempts
                .iter()
                .rev()
                .find_map(|a| a.error.as_deref())
                .and_then(first_line);
            named.push(FailedTask {
                task_id: ti.task_id.clone(),
                map_index: ti.map_index,
                error,
            });
        }
        let mut shown: Vec<String> = failed.iter().map(|ti| instance_name(ti)).collect();
        if shown.len() > MAX_NAMED_FAILURES {
            let more = shown.len() - MAX_NAMED_FAILURES;
            shown.truncate(MAX_NAMED_FAILURES);
            shown.push(format!("and {more} more"));
        }
        Ok(RootCause {
            error: format!("failed tasks: {}", shown.join(", ")),
            failed: named,
        })
    }
}

/// The run's failed instances in dependency order, then by map index; when none failed
/// itself, its failed or upstream_failed leaves.
fn failed_first<'a>(dag: &Dag, instances: &'a [InstanceView]) -> Vec<&'a InstanceView> {
    let order: std::collections::HashMap<&str, usize> = dag
        .topological_order()
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let mut failed: Vec<&InstanceView> = instances
        .iter()
        .filter(|ti| ti.state == TaskState::Failed)
        .collect();
    if failed.is_empty() {
        let leaves = dag.leaves();
        failed = instances
            .iter()
            .filter(|ti| {
                leaves.contains(&ti.task_id.as_str())
                    && matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
            })
            .collect();
    }
    failed.sort_by_key(|ti| {
        (
            order
                .get(ti.task_id.as_str())
                .copied()
                .unwrap_or(usize::MAX),
            ti.task_id.clone(),
            ti.map_index,
        )
    });
    failed
}

fn instance_name(ti: &InstanceView) -> String {
    if ti.map_index == UNMAPPED {
        ti.task_id.clone()
    } else {
        format!("{}[{}]", ti.task_id, ti.map_index)
    }
}

/// The first non-empty line of an error, trimmed.
fn first_line(error: &str) -> Option<String> {
    error
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// A run callback's payload: the state, the one-line reason and, for a failure, the
/// failed instances the alert names and links to.
fn run_payload(outcome: RunState, cause: Option<&RootCause>) -> Value {
    let mut payload = event_payload(outcome.as_str(), cause.map(|c| c.error.as_str()));
    if let (Some(cause), Some(object)) = (cause, payload.as_object_mut()) {
        let failed: Vec<Value> = cause
            .failed
            .iter()
            .map(|f| json!({ "task_id": f.task_id, "map_index": f.map_index, "error": f.error }))
            .collect();
        object.insert("failed".into(), Value::Array(failed));
    }
    payload
}

/// The number of items of `upstream`'s output, which must be a JSON list (or a string
/// holding one). A mapped upstream's outputs are taken as one list, by map index.
fn upstream_items(
    upstream: &str,
    instances: &[TaskInstance],
    max_items: usize,
) -> Result<usize, String> {
    let mut ups: Vec<&TaskInstance> = instances
        .iter()
        .filter(|ti| ti.task_id == upstream)
        .collect();
    ups.sort_by_key(|ti| ti.map_index);
    let output = match ups.as_slice() {
        [] => {
            return Err(format!(
                "for_each: upstream task {upstream:?} has no instance in this run"
            ))
        }
        [only] if only.map_index == UNMAPPED => only.output.clone(),
        mapped => Some(Value::Array(
            mapped
                .iter()
                .map(|ti| ti.output.clone().unwrap_or(Value::Null))
                .collect(),
        )),
    };
    let list = match output {
        Some(Value::Array(items)) => items,
        Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items,
            _ => return Err(not_a_list(upstream, &json!(text))),
        },
        Some(other) => return Err(not_a_list(upstream, &other)),
        None => {
            return Err(format!(
                "for_each: upstream task {upstream:?} produced no output; expected a JSON list"
            ))
        }
    };
    if list.len() > max_items {
        return Err(format!(
            "for_each: upstream task {upstream:?} produced {} items; at most {max_items} are allowed (the max_map_length setting)",
            list.len()
        ));
    }
    Ok(list.len())
}

fn not_a_list(upstream: &str, value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let mut shown = value.to_string();
    if shown.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| shown.is_char_boundary(*i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    format!("for_each: the output of upstream task {upstream:?} must be a JSON list, but it is {kind}: {shown}")
}

/// The compare-and-set that applies `event` to one instance; `None` (with a warning)
/// when the state machine refuses it.
pub(crate) fn transition(
    id: i64,
    from: TaskState,
    try_number: u32,
    event: TaskEvent,
    now: DateTime<Utc>,
) -> Option<Transition> {
    let try_number = i32::try_from(try_number).unwrap_or(i32::MAX);
    let mut transition = match Transition::on(id, from, try_number, event, now) {
        Ok(transition) => transition,
        Err(err) => {
            tracing::warn!(ti_id = id, error = %err, "illegal transition not applied");
            return None;
        }
    };
    if transition.new_state().is_finished() {
        transition = transition.end_date(Patch::Set(now));
    }
    if event == TaskEvent::Remove {
        transition = transition.reason("its task was removed from the DAG file while it ran");
    }
    Some(transition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ti(task_id: &str, map_index: i32, output: Option<Value>) -> TaskInstance {
        TaskInstance {
            id: 1,
            run: 1,
            dag_id: "d".into(),
            task_id: task_id.into(),
            map_index,
            state: TaskState::Success,
            try_number: 1,
            max_tries: 1,
            kind: "noop".into(),
            queue: "default".into(),
            pool: "default_pool".into(),
            pool_slots: 1,
            priority: 1,
            next_retry_at: None,
            queued_at: None,
            start_date: None,
            end_date: None,
            lease_owner: None,
            lease_expires_at: None,
            external_id: None,
            output,
            rendered: None,
            hostname: None,
            updated_at: Utc::now(),
        }
    }

    fn check(instances: &[TaskInstance], expected: Result<usize, &str>) {
        let got = upstream_items("up", instances, MAX_MAP_LENGTH);
        match (&got, expected) {
            (Ok(n), Ok(m)) => assert_eq!(*n, m),
            (Err(message), Err(part)) => assert!(message.contains(part), "{message}"),
            _ => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn upstream_outputs() {
        check(&[ti("up", -1, Some(json!([1, 2, 3])))], Ok(3));
        check(&[ti("up", -1, Some(json!([])))], Ok(0));
        check(&[ti("up", -1, Some(json!("[\"a\", \"b\"]")))], Ok(2));
        check(
            &[ti("up", -1, Some(json!({"a": 1})))],
            Err("must be a JSON list, but it is an object"),
        );
        check(
            &[ti("up", -1, Some(json!(7)))],
            Err("but it is a number: 7"),
        );
        check(&[ti("up", -1, Some(json!("x")))], Err("but it is a string"));
        check(&[ti("up", -1, None)], Err("produced no output"));
        check(&[ti("other", -1, Some(json!([1])))], Err("has no instance"));
        check(
            &[ti("up", 1, Some(json!("b"))), ti("up", 0, Some(json!("a")))],
            Ok(2),
        );
        check(
            &[ti(
                "up",
                -1,
                Some(Value::Array(vec![json!(1); MAX_MAP_LENGTH + 1])),
            )],
            Err("at most 1024"),
        );
    }
}
