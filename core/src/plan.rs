//! Run planning: which task instances a new DAG run gets, what the scheduler must do with a
//! run's instances now (trigger rules, retries, fan-out, removed tasks, the run's outcome),
//! what clearing touches, and which scheduled instances fit the free slots. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use petgraph::graphmap::DiGraphMap;
use petgraph::visit::Dfs;

use crate::dag::{Dag, ForEach, Task};
use crate::retry::max_tries_after_clear;
use crate::state::{RunState, TaskEvent, TaskState};
use crate::trigger::{evaluate, TriggerDecision, UpstreamStates};

/// The map index of an instance that is not (or not yet) fanned out.
pub const UNMAPPED: i32 = -1;

/// One task instance a new run starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedInstance {
    pub task_id: String,
    pub map_index: i32,
    pub kind: &'static str,
    pub queue: String,
    pub pool: String,
    pub pool_slots: u32,
    pub priority: i32,
    pub max_tries: u32,
}

/// The instances of a new run: one per task, one per item for `for_each` over a literal
/// list, and one placeholder (map index -1) for `for_each` over an upstream's output, which
/// is fanned out once that upstream has finished.
pub fn plan_run(dag: &Dag) -> Vec<PlannedInstance> {
    let mut planned = Vec::new();
    for task in dag.tasks.values() {
        match &task.for_each {
            Some(ForEach::Items(items)) if !items.is_empty() => {
                for index in 0..items.len() {
                    planned.push(planned_instance(task, index as i32));
                }
            }
            _ => planned.push(planned_instance(task, UNMAPPED)),
        }
    }
    planned
}

/// The instances a running run lacks because their tasks were added to the DAG file after
/// the run was created (Airflow's `verify_integrity`): planned as for a new run, so they
/// take part in the run from now on. Tasks that still have instances are left alone.
pub fn plan_missing(dag: &Dag, instances: &[InstanceView]) -> Vec<PlannedInstance> {
    let present: HashSet<&str> = instances.iter().map(|i| i.task_id.as_str()).collect();
    if dag.tasks.keys().all(|id| present.contains(id.as_str())) {
        return Vec::new();
    }
    plan_run(dag)
        .into_iter()
        .filter(|p| !present.contains(p.task_id.as_str()))
        .collect()
}

/// The instance of `task` at `map_index`, as a new run or a fan-out creates it.
pub fn planned_instance(task: &Task, map_index: i32) -> PlannedInstance {
    PlannedInstance {
        task_id: task.id.clone(),
        map_index,
        kind: task.kind.name(),
        queue: task.queue.clone(),
        pool: task.pool.clone(),
        pool_slots: task.pool_slots,
        priority: task.priority,
        max_tries: task.retries.saturating_add(1),
    }
}

/// What the scheduler knows of one task instance of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: i64,
    pub task_id: String,
    pub map_index: i32,
    pub state: TaskState,
    pub try_number: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// One thing the scheduler must do to a run's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply `event` with a compare-and-set on (`from`, `try_number`).
    Transition {
        id: i64,
        from: TaskState,
        try_number: u32,
        event: TaskEvent,
    },
    /// The placeholder `id` of a task whose `for_each` names `upstream` may now be fanned
    /// out: one instance per item of that upstream's output.
    Expand {
        id: i64,
        task_id: String,
        upstream: String,
    },
}

/// The scheduler's decisions for one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunEvaluation {
    pub actions: Vec<Action>,
    /// `Some` when every instance is finished: the state the run ends in.
    pub outcome: Option<RunState>,
}

/// Decides what happens next to the instances of one run, given its DAG definition.
///
/// - a `pending` instance whose trigger rule is met is scheduled (or, for a fan-out
///   placeholder, expanded); one whose rule can no longer be met is skipped or
///   marked upstream_failed, as Airflow does;
/// - an `up_for_retry` instance whose retry delay has passed is scheduled again, and so
///   is an `up_for_reschedule` one whose next poke time has come (its claim resumes the
///   waiting try);
/// - an unfinished instance whose task vanished from the DAG is removed, and a removed
///   one whose task came back is restored;
/// - once every instance is finished, the run's outcome: failed if any leaf task ended
///   failed or upstream_failed, success otherwise (Airflow's rule).
pub fn evaluate_run(dag: &Dag, instances: &[InstanceView], now: DateTime<Utc>) -> RunEvaluation {
    let mut by_task: HashMap<&str, Vec<&InstanceView>> = HashMap::new();
    for instance in instances {
        by_task
            .entry(instance.task_id.as_str())
            .or_default()
            .push(instance);
    }
    let mut actions = Vec::new();
    for instance in instances {
        let transition = |event| Action::Transition {
            id: instance.id,
            from: instance.state,
            try_number: instance.try_number,
            event,
        };
        let Some(task) = dag.tasks.get(&instance.task_id) else {
            if instance.state.on(TaskEvent::Remove).is_ok() {
                actions.push(transition(TaskEvent::Remove));
            }
            continue;
        };
        match instance.state {
            TaskState::Removed => actions.push(transition(TaskEvent::Restore)),
            // A retry whose delay has passed, or a waiting try whose next poke is due
            // (both keep their time in `next_retry_at`).
            TaskState::UpForRetry | TaskState::UpForReschedule
                if instance.next_retry_at.is_none_or(|at| at <= now) =>
            {
                actions.push(transition(TaskEvent::Schedule));
            }
            TaskState::Pending => {
                let up = UpstreamStates::from_states(
                    task.depends_on
                        .iter()
                        .flat_map(|upstream| by_task.get(upstream.as_str()).into_iter().flatten())
                        .map(|upstream| upstream.state),
                );
                match evaluate(task.trigger_rule, &up) {
                    TriggerDecision::Wait => {}
                    TriggerDecision::Run => match &task.for_each {
                        Some(ForEach::From(upstream)) if instance.map_index == UNMAPPED => {
                            actions.push(Action::Expand {
                                id: instance.id,
                                task_id: task.id.clone(),
                                upstream: upstream.clone(),
                            });
                        }
                        _ => actions.push(transition(TaskEvent::Schedule)),
                    },
                    TriggerDecision::Skip => actions.push(transition(TaskEvent::Skip)),
                    TriggerDecision::UpstreamFailed => {
                        actions.push(transition(TaskEvent::UpstreamFailed))
                    }
                }
            }
            _ => {}
        }
    }
    let outcome = if actions.is_empty() && instances.iter().all(|i| i.state.is_finished()) {
        Some(run_outcome(dag, instances))
    } else {
        None
    };
    RunEvaluation { actions, outcome }
}

/// Airflow's rule: a finished run failed if any instance of a leaf task is failed or
/// upstream_failed; otherwise it succeeded.
pub fn run_outcome(dag: &Dag, instances: &[InstanceView]) -> RunState {
    let leaves: BTreeSet<&str> = dag.leaves().into_iter().collect();
    let failed = instances.iter().any(|i| {
        leaves.contains(i.task_id.as_str())
            && matches!(i.state, TaskState::Failed | TaskState::UpstreamFailed)
    });
    if failed {
        RunState::Failed
    } else {
        RunState::Success
    }
}

/// What a person asked to clear.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClearSelection {
    pub task_ids: Vec<String>,
    /// Also clear every task downstream of the selected ones.
    pub downstream: bool,
    /// Also clear every task upstream of the selected ones.
    pub upstream: bool,
    /// Clear only instances that failed (failed, upstream_failed).
    pub only_failed: bool,
    /// The cleared instances run the run's version of the DAG (the definition it was
    /// created with) instead of the DAG's current one, the default.
    pub keep_version: bool,
}

/// One instance to clear, with the retry budget it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearAction {
    pub id: i64,
    pub from: TaskState,
    pub try_number: u32,
    /// A fresh budget: the next `retries + 1` tries may all run.
    pub max_tries: u32,
}

/// The instances to reset to `pending` when a person clears `selection` in one run.
///
/// Besides the selection (and its upstream/downstream closure when asked), any downstream
/// instance that never ran and was left `upstream_failed` or `skipped` by its trigger rule
/// is reset too, so that it runs once its cleared upstream succeeds (apache/airflow#31510,
/// #15697).
pub fn plan_clear(
    dag: &Dag,
    instances: &[InstanceView],
    selection: &ClearSelection,
) -> Vec<ClearAction> {
    let mut tasks: BTreeSet<String> = selection.task_ids.iter().cloned().collect();
    if selection.downstream {
        tasks.extend(closure(dag, &selection.task_ids, Direction::Down));
    }
    if selection.upstream {
        tasks.extend(closure(dag, &selection.task_ids, Direction::Up));
    }
    let dependents = closure(dag, &selection.task_ids, Direction::Down);
    let mut actions = Vec::new();
    for instance in instances {
        let selected = tasks.contains(&instance.task_id)
            && (!selection.only_failed
                || matches!(
                    instance.state,
                    TaskState::Failed | TaskState::UpstreamFailed
                ));
        let left_behind = dependents.contains(&instance.task_id) && left_behind(instance);
        if (selected || left_behind) && instance.state.on(TaskEvent::Clear).is_ok() {
            let retries = dag
                .tasks
                .get(&instance.task_id)
                .map_or(0, |task| task.retries);
            actions.push(ClearAction {
                id: instance.id,
                from: instance.state,
                try_number: instance.try_number,
                max_tries: max_tries_after_clear(instance.try_number, retries),
            });
        }
    }
    actions
}

/// Downstream instances to reset when `task_ids` are marked success by a person: those
/// left behind by them ([`left_behind`]), so that they run now.
pub fn plan_reset_after_mark_success(
    dag: &Dag,
    instances: &[InstanceView],
    task_ids: &[String],
) -> Vec<ClearAction> {
    let dependents = closure(dag, task_ids, Direction::Down);
    instances
        .iter()
        .filter(|i| dependents.contains(&i.task_id) && left_behind(i))
        .map(|i| reset_action(dag, i))
        .collect()
}

/// Downstream instances to reset when `task_ids` are marked failed by a person: every one
/// that ran, runs or will run as if its upstreams were fine (success, skipped, scheduled,
/// queued, running, up_for_retry, up_for_reschedule, awaiting_input). Back at `pending`,
/// their trigger rules decide again against the failed upstream: an `all_success` task
/// becomes upstream_failed (so a finished run's outcome turns failed), an `all_done` or
/// `one_failed` one runs. A downstream that failed itself keeps its own failure; a
/// pending or upstream_failed one is already where the scheduler puts it.
pub fn plan_reset_after_mark_failed(
    dag: &Dag,
    instances: &[InstanceView],
    task_ids: &[String],
) -> Vec<ClearAction> {
    let dependents = closure(dag, task_ids, Direction::Down);
    instances
        .iter()
        .filter(|i| {
            dependents.contains(&i.task_id)
                && matches!(
                    i.state,
                    TaskState::Success
                        | TaskState::Skipped
                        | TaskState::Scheduled
                        | TaskState::Queued
                        | TaskState::Running
                        | TaskState::UpForRetry
                        | TaskState::UpForReschedule
                        | TaskState::AwaitingInput
                )
        })
        .map(|i| reset_action(dag, i))
        .collect()
}

/// Whether a downstream instance is where its upstreams left it without running: any
/// `upstream_failed` one, and a `skipped` one before its first try (a trigger rule's skip;
/// a task that skipped itself has a try and keeps its outcome).
fn left_behind(instance: &InstanceView) -> bool {
    match instance.state {
        TaskState::UpstreamFailed => true,
        TaskState::Skipped => instance.try_number == 0,
        _ => false,
    }
}

/// Resetting `instance` to `pending` with a fresh retry budget.
fn reset_action(dag: &Dag, instance: &InstanceView) -> ClearAction {
    ClearAction {
        id: instance.id,
        from: instance.state,
        try_number: instance.try_number,
        max_tries: max_tries_after_clear(
            instance.try_number,
            dag.tasks.get(&instance.task_id).map_or(0, |t| t.retries),
        ),
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// Every task reachable from `start` (excluded, unless another start reaches it) following
/// dependencies in `direction`: one depth-first traversal of a graph built once, so linear
/// in the DAG's size (a per-task scan for downstreams made clearing a long chain quadratic).
fn closure(dag: &Dag, start: &[String], direction: Direction) -> BTreeSet<String> {
    let mut graph: DiGraphMap<&str, (), std::hash::RandomState> =
        DiGraphMap::with_capacity(dag.tasks.len(), 0);
    for task in dag.tasks.values() {
        graph.add_node(task.id.as_str());
        for up in &task.depends_on {
            let (from, to) = match direction {
                Direction::Down => (up.as_str(), task.id.as_str()),
                Direction::Up => (task.id.as_str(), up.as_str()),
            };
            graph.add_edge(from, to, ());
        }
    }
    let mut dfs = Dfs::empty(&graph);
    for task_id in start {
        if graph.contains_node(task_id.as_str()) {
            dfs.stack.extend(graph.neighbors(task_id.as_str()));
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(task_id) = dfs.next(&graph) {
        seen.insert(task_id.to_owned());
    }
    seen
}

/// A scheduled instance waiting for a slot, in the order it should get one (priority
/// first, then the oldest run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCandidate {
    pub id: i64,
    pub dag_id: String,
    pub pool: String,
    pub pool_slots: u32,
}

/// Free capacity when choosing what to queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Free slots per pool; a pool that is not listed does not exist.
    pub pool_free: BTreeMap<String, i64>,
    /// Free `max_active_tasks` per DAG; a DAG that is not listed has no free slot.
    pub dag_free: BTreeMap<String, i64>,
    /// At most this many instances in one pass.
    pub limit: usize,
}

/// Picks, in order, the candidates that fit the free pool slots and DAG limits.
/// Candidates that do not fit stay scheduled; a smaller one further down may still fit.
pub fn select_for_queue(candidates: &[QueueCandidate], capacity: &Capacity) -> Vec<i64> {
    let mut pool_free = capacity.pool_free.clone();
    let mut dag_free = capacity.dag_free.clone();
    let mut chosen = Vec::new();
    for candidate in candidates {
        if chosen.len() >= capacity.limit {
            break;
        }
        let slots = i64::from(candidate.pool_slots);
        let (Some(pool), Some(dag)) = (
            pool_free.get_mut(&candidate.pool),
            dag_free.get_mut(&candidate.dag_id),
        ) else {
            continue;
        };
        if *pool >= slots && *dag >= 1 {
            *pool -= slots;
            *dag -= 1;
            chosen.push(candidate.id);
        }
    }
    chosen
}

#[cfg(test)]
mod tests;
