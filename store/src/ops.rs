//! Operations a person starts, shared by the CLI and the web: trigger a run, backfill,
//! clear task instances, mark them, cancel a run. Each takes the DAG's parsed definition,
//! asks core (`core::plan`, the state machine) what to change, and applies it with the
//! store's compare-and-set writes; then wakes the scheduler.

use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::plan::{
    plan_clear, plan_reset_after_mark_success, plan_run, ClearAction, ClearSelection, InstanceView,
    PlannedInstance,
};
use nightshift_core::schedule::DataInterval;
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use serde_json::Value;

use crate::{
    DagRun, NewRun, NewTaskInstance, Patch, RunType, Store, StoreError, TaskInstance, Transition,
    Wake,
};

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

impl Store {
    /// Creates a queued run of `dag` with all its task instances; the scheduler starts it
    /// when `max_active_runs` allows. A run at the same logical date (or with the same run
    /// id) already existing is [`StoreError::Conflict`].
    pub async fn trigger_run(
        &self,
        dag: &Dag,
        params: &TriggerParams,
    ) -> Result<DagRun, StoreError> {
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
        let run = NewRun {
            dag_id: dag.id.clone(),
            run_id: run_id.clone(),
            run_type: params.run_type,
            logical_date,
            data_interval_start: interval.start,
            data_interval_end: interval.end,
            state: RunState::Queued,
            conf,
            queued_at: params.now,
            definition_hash: dag.source_hash.clone(),
        };
        let tasks = new_task_instances(&plan_run(dag));
        let created = self.create_run_with_tasks(&run, &tasks).await?;
        let Some((run, _)) = created else {
            return Err(StoreError::Conflict {
                what: "DAG run",
                key: format!("{}/{run_id}", dag.id),
                reason: format!(
                    "a run at logical date {} already exists",
                    logical_date.to_rfc3339()
                ),
            });
        };
        self.wake(Wake::Scheduler).await;
        Ok(run)
    }

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
        let actions = plan_clear(dag, &views(&instances), selection);
        let cleared = self.apply_clear(&actions, now).await?;
        self.reopen_run(run, now).await?;
        self.wake(Wake::Scheduler).await;
        Ok(cleared)
    }

    /// Marks instances of `task_id` in `run` (one map index, or all with `None`) as
    /// `success` or `failed`. Marking success also resets downstream instances that never
    /// ran because of this one, so they run now; the run is re-evaluated.
    pub async fn mark_task_instances(
        &self,
        dag: &Dag,
        run: &DagRun,
        task_id: &str,
        map_index: Option<i32>,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let event = match state {
            TaskState::Success => TaskEvent::MarkSuccess,
            TaskState::Failed => TaskEvent::MarkFailed,
            other => {
                return Err(StoreError::Invalid {
                    what: "state",
                    reason: format!("can only mark success or failed, not {other}"),
                })
            }
        };
        let instances = self.list_task_instances(run.id).await?;
        let targets: Vec<&TaskInstance> = instances
            .iter()
            .filter(|ti| ti.task_id == task_id && map_index.is_none_or(|m| ti.map_index == m))
            .collect();
        if targets.is_empty() {
            return Err(StoreError::not_found(
                "task instance",
                format!("{}/{}/{task_id}", run.dag_id, run.run_id),
            ));
        }
        let mut marked = Vec::new();
        for ti in targets {
            let new_state = ti.state.on(event)?;
            let transition = Transition {
                end_date: Patch::Set(now),
                next_retry_at: Patch::Null,
                reason: Some(format!("marked {state} by a person while running")),
                ..Transition::new(ti.id, ti.state, ti.try_number, new_state, now)
            };
            marked.push(self.transition(&transition).await?);
        }
        if state == TaskState::Success {
            let instances = self.list_task_instances(run.id).await?;
            let resets =
                plan_reset_after_mark_success(dag, &views(&instances), &[task_id.to_owned()]);
            self.apply_clear(&resets, now).await?;
        }
        self.reopen_run(run, now).await?;
        self.wake(Wake::Scheduler).await;
        Ok(marked)
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
        for ti in self.list_task_instances(run.id).await? {
            let event = match ti.state {
                TaskState::Pending | TaskState::Scheduled => TaskEvent::Skip,
                TaskState::Queued | TaskState::Running | TaskState::UpForRetry => {
                    TaskEvent::MarkFailed
                }
                _ => continue,
            };
            let new_state = ti.state.on(event)?;
            let transition = Transition {
                end_date: Patch::Set(now),
                next_retry_at: Patch::Null,
                reason: Some("the run was cancelled while this try ran".to_owned()),
                ..Transition::new(ti.id, ti.state, ti.try_number, new_state, now)
            };
            match self.transition(&transition).await {
                Ok(_) | Err(StoreError::Stale { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let cancelled = self
            .set_run_state(run.id, run.state, RunState::Failed, now)
            .await?;
        self.wake(Wake::Scheduler).await;
        Ok(cancelled)
    }

    async fn apply_clear(
        &self,
        actions: &[ClearAction],
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let mut cleared = Vec::with_capacity(actions.len());
        for action in actions {
            let new_state = action.from.on(TaskEvent::Clear)?;
            let transition = Transition {
                max_tries: Some(action.max_tries as i32),
                next_retry_at: Patch::Null,
                queued_at: Patch::Null,
                end_date: Patch::Null,
                reason: Some("cleared by a person while running; the try was stopped".to_owned()),
                ..Transition::new(
                    action.id,
                    action.from,
                    action.try_number as i32,
                    new_state,
                    now,
                )
            };
            cleared.push(self.transition(&transition).await?);
        }
        Ok(cleared)
    }

    /// A finished run whose instances were reset runs again.
    async fn reopen_run(&self, run: &DagRun, now: DateTime<Utc>) -> Result<(), StoreError> {
        let current = self
            .get_run(run.id)
            .await?
            .ok_or_else(|| StoreError::not_found("DAG run", &run.run_id))?;
        if current.state.is_finished() {
            self.set_run_state(current.id, current.state, RunState::Running, now)
                .await?;
        }
        Ok(())
    }
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
pub fn views(instances: &[TaskInstance]) -> Vec<InstanceView> {
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
