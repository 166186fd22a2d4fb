//! What a person does to task instances: clear them (back to `pending` with a fresh retry
//! budget) and mark them `success` or `failed`. Each is a plan first ([`ClearPlan`],
//! [`MarkPlan`]: what core's `plan` functions and the state machine say to change, listed
//! as [`PlannedChange`]s for a confirmation) and then that same plan applied with one
//! all-or-nothing transition.

use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::plan::{
    plan_clear, plan_reset_after_mark_failed, plan_reset_after_mark_success, ClearAction,
    ClearSelection,
};
use nightshift_core::state::{TaskEvent, TaskState};

use super::instance_views;
use crate::{DagRun, Patch, Store, StoreError, TaskInstance, Transition, Wake};

impl Store {
    /// Resets the selected task instances of `run` (and, as `core::plan::plan_clear`
    /// decides, their closure and the downstreams left behind) to `pending` with a fresh
    /// retry budget, and puts a finished run back to running. Returns the cleared
    /// instances. A running instance that is cleared loses its lease: its worker stops it.
    /// The same as [`Store::apply_clear`] of [`Store::plan_clear`].
    pub async fn clear_task_instances(
        &self,
        dag: &Dag,
        run: &DagRun,
        selection: &ClearSelection,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let plan = self.plan_clear(dag, run, selection, now).await?;
        self.apply_clear(&plan).await
    }

    /// What clearing `selection` in `run` would change, as stored now: the preview a
    /// confirmation lists, and what [`Store::apply_clear`] then applies. Writes nothing.
    /// A task the DAG does not have is [`StoreError::NotFound`].
    pub async fn plan_clear(
        &self,
        dag: &Dag,
        run: &DagRun,
        selection: &ClearSelection,
        now: DateTime<Utc>,
    ) -> Result<ClearPlan, StoreError> {
        for task_id in &selection.task_ids {
            if !dag.tasks.contains_key(task_id) {
                return Err(StoreError::not_found(
                    "task",
                    format!("{}.{task_id}", dag.id),
                ));
            }
        }
        let instances = self.list_task_instances(run.id).await?;
        let actions = plan_clear(dag, &instance_views(&instances), selection);
        let mut changes = Vec::with_capacity(actions.len());
        let mut transitions = Vec::with_capacity(actions.len());
        // Which version the cleared instances run next: the DAG's current one (NULL), or
        // with `keep_version` the one the run was created with.
        let version = if selection.keep_version {
            Patch::Set(run.definition_hash.clone())
        } else {
            Patch::Null
        };
        for action in &actions {
            transitions.push(clear_transition(action, now)?.definition_hash(version.clone()));
            if let Some(ti) = instances.iter().find(|ti| ti.id == action.id) {
                changes.push(PlannedChange::new(ti, TaskState::Pending));
            }
        }
        Ok(ClearPlan {
            run: run.id,
            now,
            changes,
            transitions,
        })
    }

    /// Applies a [`Store::plan_clear`] plan in one transaction (all or nothing, like a
    /// mark: a writer that changed one of these instances since the plan makes the whole
    /// clear [`StoreError::Stale`], with nothing written). Returns the cleared instances.
    pub async fn apply_clear(&self, plan: &ClearPlan) -> Result<Vec<TaskInstance>, StoreError> {
        let cleared = self
            .transition_atomically(&plan.transitions, Some(plan.run), plan.now)
            .await?;
        self.wake(Wake::Scheduler).await;
        Ok(cleared)
    }

    /// What marking `request` in `run` would change: the instances to mark (as stored now)
    /// and the downstream instances to reset to `pending` (for `success`, those its
    /// failure left behind, so they run now; for `failed`, those that ran or will run as
    /// if it were fine, so their trigger rules decide again — see `core::plan`). A try's
    /// recorded start and end stay: only a running try ends, now. The run, if finished,
    /// reopens so the scheduler decides its outcome again. Instances already in the
    /// target state are left out, as Airflow does; one the state machine does not let be
    /// marked (a `removed` one) is [`StoreError::IllegalTransition`]. No instance of the
    /// task (or of that map index) is [`StoreError::NotFound`]. Writes nothing: this is the
    /// preview, and [`Store::apply_mark`] applies exactly this plan.
    pub async fn plan_mark(
        &self,
        dag: &Dag,
        run: &DagRun,
        request: &MarkRequest,
    ) -> Result<MarkPlan, StoreError> {
        let event = request.event()?;
        let instances = self.list_task_instances(run.id).await?;
        let targets: Vec<&TaskInstance> =
            instances.iter().filter(|ti| request.selects(ti)).collect();
        if targets.is_empty() {
            return Err(StoreError::not_found(
                "task instance",
                format!("{}/{}/{}", run.dag_id, run.run_id, request.task_id),
            ));
        }
        let mut marks = Vec::new();
        let mut transitions = Vec::new();
        for ti in targets.into_iter().filter(|ti| ti.state != request.state) {
            // The try's recorded times are what happened: a finished try keeps its end,
            // one that never started gets none; only a running try ends now.
            let end_date = if ti.state == TaskState::Running {
                Patch::Set(request.now)
            } else {
                Patch::Keep
            };
            transitions.push(
                Transition::on(ti.id, ti.state, ti.try_number, event, request.now)?
                    .end_date(end_date)
                    .next_retry_at(Patch::Null)
                    .reason(format!(
                        "marked {} by a person while running",
                        request.state
                    )),
            );
            marks.push(ti.clone());
        }
        let views = instance_views(&instances);
        let marked_task = std::slice::from_ref(&request.task_id);
        let resets = match request.state {
            _ if marks.is_empty() => Vec::new(),
            TaskState::Success => plan_reset_after_mark_success(dag, &views, marked_task),
            _ => plan_reset_after_mark_failed(dag, &views, marked_task),
        };
        let mut reset = Vec::with_capacity(resets.len());
        for action in &resets {
            transitions.push(clear_transition(action, request.now)?);
            if let Some(ti) = instances.iter().find(|ti| ti.id == action.id) {
                reset.push(ti.clone());
            }
        }
        Ok(MarkPlan {
            run: run.id,
            now: request.now,
            state: request.state,
            marks,
            resets: reset,
            transitions,
        })
    }

    /// Applies a [`Store::plan_mark`] plan in one transaction: the marks, the downstream
    /// resets and reopening a finished run. When another writer changed any of these
    /// instances since the plan, nothing is written ([`StoreError::Stale`]). Returns every
    /// instance as written: the marks (in the order of [`MarkPlan::marks`]), then the resets.
    pub async fn apply_mark(&self, plan: &MarkPlan) -> Result<Vec<TaskInstance>, StoreError> {
        if plan.marks.is_empty() {
            return Ok(Vec::new());
        }
        let written = self
            .transition_atomically(&plan.transitions, Some(plan.run), plan.now)
            .await?;
        self.wake(Wake::Scheduler).await;
        Ok(written)
    }

    /// Marks instances of a task in `run` `success` or `failed` ([`MarkRequest`]) and
    /// returns the marked ones; with `dry_run` only lists them, as stored now. Marking success also resets downstream
    /// instances that never ran because of this one, so they run now; the run is
    /// re-evaluated. The preview and the action are the same plan ([`Store::plan_mark`]),
    /// applied in one transaction ([`Store::apply_mark`]).
    pub async fn mark_task_instances(
        &self,
        dag: &Dag,
        run: &DagRun,
        request: &MarkRequest,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let plan = self.plan_mark(dag, run, request).await?;
        if request.dry_run {
            return Ok(plan.marks);
        }
        let mut written = self.apply_mark(&plan).await?;
        written.truncate(plan.marks.len());
        Ok(written)
    }
}

/// What a person asks when marking task instances: the CLI's `tasks mark`, the API's
/// `updateTaskInstancesState`, the UI's buttons.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRequest {
    pub task_id: String,
    /// One map index, or every instance of the task with `None`.
    pub map_index: Option<i32>,
    /// `success` or `failed`; any other state is [`StoreError::Invalid`].
    pub state: TaskState,
    /// Only list the instances the mark would change.
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

impl MarkRequest {
    /// The state machine's event for the target state: the one place that maps a state a
    /// person asks for to a mark.
    pub fn event(&self) -> Result<TaskEvent, StoreError> {
        match self.state {
            TaskState::Success => Ok(TaskEvent::MarkSuccess),
            TaskState::Failed => Ok(TaskEvent::MarkFailed),
            other => Err(StoreError::Invalid {
                what: "state",
                reason: format!("can only mark success or failed, not {other}"),
            }),
        }
    }

    fn selects(&self, ti: &TaskInstance) -> bool {
        ti.task_id == self.task_id && self.map_index.is_none_or(|m| ti.map_index == m)
    }
}

/// What a mark changes ([`Store::plan_mark`]); [`Store::apply_mark`] applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkPlan {
    run: i64,
    now: DateTime<Utc>,
    state: TaskState,
    marks: Vec<TaskInstance>,
    /// The downstream instances reset to `pending`, as stored when planned.
    resets: Vec<TaskInstance>,
    /// The marks' transitions first (in the order of `marks`), then the resets.
    transitions: Vec<Transition>,
}

impl MarkPlan {
    /// The instances the mark changes, as stored when it was planned.
    pub fn marks(&self) -> &[TaskInstance] {
        &self.marks
    }

    /// The downstream instances the mark resets to `pending`, as stored when planned.
    pub fn resets(&self) -> &[TaskInstance] {
        &self.resets
    }

    /// Every change, marks first: what a confirmation lists.
    pub fn changes(&self) -> Vec<PlannedChange> {
        let marks = self
            .marks
            .iter()
            .map(|ti| PlannedChange::new(ti, self.state));
        let resets = self
            .resets
            .iter()
            .map(|ti| PlannedChange::new(ti, TaskState::Pending));
        marks.chain(resets).collect()
    }
}

/// What a clear changes ([`Store::plan_clear`]); [`Store::apply_clear`] applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClearPlan {
    run: i64,
    now: DateTime<Utc>,
    changes: Vec<PlannedChange>,
    transitions: Vec<Transition>,
}

impl ClearPlan {
    /// Every instance the clear resets to `pending`, as stored when planned.
    pub fn changes(&self) -> &[PlannedChange] {
        &self.changes
    }
}

/// One task instance a person's action changes: as stored when the action was planned,
/// and the state the action puts it in.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    pub instance: TaskInstance,
    pub to: TaskState,
}

impl PlannedChange {
    pub fn new(instance: &TaskInstance, to: TaskState) -> PlannedChange {
        PlannedChange {
            instance: instance.clone(),
            to,
        }
    }
}

/// The compare-and-set that resets one instance to `pending` with a fresh retry budget.
fn clear_transition(action: &ClearAction, now: DateTime<Utc>) -> Result<Transition, StoreError> {
    let try_number = i32::try_from(action.try_number).unwrap_or(i32::MAX);
    let transition = Transition::on(action.id, action.from, try_number, TaskEvent::Clear, now)?
        .max_tries(i32::try_from(action.max_tries).unwrap_or(i32::MAX))
        .next_retry_at(Patch::Null)
        .queued_at(Patch::Null)
        .end_date(Patch::Null)
        .reason("cleared by a person while running; the try was stopped");
    Ok(transition)
}
