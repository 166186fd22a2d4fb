//! What a person does to task instances: clear them (back to `pending` with a fresh retry
//! budget) and mark them `success` or `failed`. Each asks core (`core::plan`, the state
//! machine) what to change and applies it with one all-or-nothing transition.

use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::plan::{
    plan_clear, plan_reset_after_mark_success, ClearAction, ClearSelection,
};
use nightshift_core::state::{TaskEvent, TaskState};

use super::instance_views;
use crate::{DagRun, Patch, Store, StoreError, TaskInstance, Transition, Wake};

impl Store {
    /// Resets the selected task instances of `run` (and, as `core::plan::plan_clear`
    /// decides, their closure and the downstreams left behind) to `pending` with a fresh
    /// retry budget, and puts a finished run back to running. Returns the cleared
    /// instances. A running instance that is cleared loses its lease: its worker stops it.
    pub async fn clear_task_instances(
        &self,
        dag: &Dag,
        run: &DagRun,
        selection: &ClearSelection,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
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
        let transitions = actions
            .iter()
            .map(|action| clear_transition(action, now))
            .collect::<Result<Vec<_>, _>>()?;
        // All or nothing, like a mark: a writer that changed one of these instances since
        // they were read makes the whole clear Stale, with nothing written.
        let cleared = self
            .transition_atomically(&transitions, Some(run.id), now)
            .await?;
        self.wake(Wake::Scheduler).await;
        Ok(cleared)
    }

    /// What marking `request` in `run` would change: the instances to mark (as stored now)
    /// and, for `success`, the downstream instances to reset. Instances already in the
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
            transitions.push(
                Transition::on(ti.id, ti.state, ti.try_number, event, request.now)?
                    .end_date(Patch::Set(request.now))
                    .next_retry_at(Patch::Null)
                    .reason(format!(
                        "marked {} by a person while running",
                        request.state
                    )),
            );
            marks.push(ti.clone());
        }
        let resets = if request.state == TaskState::Success && !marks.is_empty() {
            plan_reset_after_mark_success(
                dag,
                &instance_views(&instances),
                std::slice::from_ref(&request.task_id),
            )
        } else {
            Vec::new()
        };
        for action in &resets {
            transitions.push(clear_transition(action, request.now)?);
        }
        Ok(MarkPlan {
            run: run.id,
            now: request.now,
            marks,
            transitions,
        })
    }

    /// Applies a [`Store::plan_mark`] plan in one transaction: the marks, the downstream
    /// resets and reopening a finished run. When another writer changed any of these
    /// instances since the plan, nothing is written ([`StoreError::Stale`]). Returns the
    /// marked instances as written.
    pub async fn apply_mark(&self, plan: &MarkPlan) -> Result<Vec<TaskInstance>, StoreError> {
        if plan.marks.is_empty() {
            return Ok(Vec::new());
        }
        let mut written = self
            .transition_atomically(&plan.transitions, Some(plan.run), plan.now)
            .await?;
        written.truncate(plan.marks.len());
        self.wake(Wake::Scheduler).await;
        Ok(written)
    }

    /// Marks instances of a task in `run` `success` or `failed` ([`MarkRequest`]); with
    /// `dry_run` only lists them, as stored now. Marking success also resets downstream
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
        self.apply_mark(&plan).await
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
    marks: Vec<TaskInstance>,
    /// The marks' transitions first (in the order of `marks`), then the resets.
    transitions: Vec<Transition>,
}

impl MarkPlan {
    /// The instances the mark changes, as stored when it was planned.
    pub fn marks(&self) -> &[TaskInstance] {
        &self.marks
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
