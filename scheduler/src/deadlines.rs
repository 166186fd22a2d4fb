//! Deadlines, checked every tick at the tick's `now`: a queued or running run past its
//! `[deadline]`, or a running run with an unfinished task past that task's `deadline`, is
//! recorded once (`Store::record_deadline_miss`, whose unique key lets any number of
//! schedulers check at once) with its `deadline_missed` callback; with `fail = true` the
//! scheduler whose record won fails what is late through the state machine.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use nightshift_core::dag::{Dag, Task};
use nightshift_core::deadline::{missed_callback, Deadline};
use nightshift_core::plan::UNMAPPED;
use nightshift_core::state::{RunState, TaskEvent};
use nightshift_store::{
    instance_views, CallbackEvent, CallbackKind, DagRun, NewCallback, NewDeadlineMiss, Patch,
    StoreError,
};
use serde_json::json;
use tracing::instrument;

use crate::dags::CachedDag;
use crate::evaluate::transition;
use crate::scheduler::{store_err, Scheduler, SchedulerError};

/// Unfinished runs checked per tick (oldest first).
const MAX_RUNS_CHECKED: i64 = 1000;

/// One deadline found missed: whose, when it fell, and what to do.
struct Missed<'a> {
    dag: &'a Dag,
    run: &'a DagRun,
    /// `None` for the run's own deadline.
    task: Option<&'a Task>,
    deadline: &'a Deadline,
    due_at: DateTime<Utc>,
    /// The state shown in the alert (the run's, or `running` for a task).
    state: &'static str,
}

impl Scheduler {
    /// Records every deadline missed at `now` among the unfinished runs of DAGs that have
    /// deadlines; returns how many this scheduler recorded.
    #[instrument(skip_all)]
    pub(crate) async fn check_deadlines(
        &self,
        dags: &BTreeMap<String, CachedDag>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let with_deadlines: Vec<String> = dags
            .values()
            .filter(|d| {
                d.dag.deadline.is_some() || d.dag.tasks.values().any(|t| t.deadline.is_some())
            })
            .map(|d| d.dag.id.clone())
            .collect();
        if with_deadlines.is_empty() {
            return Ok(0);
        }
        let runs = self
            .store
            .unfinished_runs_of(&with_deadlines, MAX_RUNS_CHECKED)
            .await
            .map_err(store_err("reading unfinished runs for deadlines"))?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let recorded: BTreeSet<(i64, Option<String>)> = self
            .store
            .deadline_misses_of_runs(&ids)
            .await
            .map_err(store_err("reading missed deadlines"))?
            .into_iter()
            .map(|m| (m.run, m.task_id))
            .collect();
        let mut count = 0;
        for run in &runs {
            let Some(cached) = dags.get(&run.dag_id) else {
                continue;
            };
            let dag = &cached.dag;
            if let Some(deadline) = &dag.deadline {
                let due = deadline.due(dag.timezone, run.data_interval_end, run.start_date);
                if !recorded.contains(&(run.id, None)) && due.is_some_and(|due| now >= due) {
                    let missed = Missed {
                        dag,
                        run,
                        task: None,
                        deadline,
                        due_at: due.unwrap_or(now),
                        state: run.state.as_str(),
                    };
                    count += usize::from(self.record(&missed, now).await?);
                }
            }
            if run.state == RunState::Running {
                count += self.check_task_deadlines(dag, run, &recorded, now).await?;
            }
        }
        Ok(count)
    }

    /// The task deadlines of one running run: a task with an unfinished instance past its
    /// deadline (`within` counts from its first try's start).
    async fn check_task_deadlines(
        &self,
        dag: &Dag,
        run: &DagRun,
        recorded: &BTreeSet<(i64, Option<String>)>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let open: Vec<String> = dag
            .tasks
            .values()
            .filter(|t| t.deadline.is_some() && !recorded.contains(&(run.id, Some(t.id.clone()))))
            .map(|t| t.id.clone())
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        let progress = self
            .store
            .task_progress(run.id, &open)
            .await
            .map_err(store_err("reading task progress for deadlines"))?;
        let mut count = 0;
        for p in progress.iter().filter(|p| p.unfinished > 0) {
            let Some((task, deadline)) = dag
                .tasks
                .get(&p.task_id)
                .and_then(|t| Some((t, t.deadline.as_ref()?)))
            else {
                continue;
            };
            let Some(due) = deadline.due(dag.timezone, run.data_interval_end, p.first_start) else {
                continue;
            };
            if now < due {
                continue;
            }
            let missed = Missed {
                dag,
                run,
                task: Some(task),
                deadline,
                due_at: due,
                state: "unfinished",
            };
            count += usize::from(self.record(&missed, now).await?);
        }
        Ok(count)
    }

    /// Records one miss with its callback; when this scheduler's record won and the
    /// deadline has `fail = true`, fails what is late. True when recorded here.
    #[instrument(skip_all, fields(dag_id = %missed.dag.id, run_id = %missed.run.run_id,
        task_id = missed.task.map_or("", |t| t.id.as_str())))]
    async fn record(
        &self,
        missed: &Missed<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let Missed {
            dag,
            run,
            task,
            deadline,
            due_at,
            state,
        } = *missed;
        let described = deadline.describe(dag.timezone);
        let whose = match task {
            Some(task) => format!("task {}", task.id),
            None => "the run".to_owned(),
        };
        let mut detail = format!(
            "its deadline ({described}) fell at {} and {whose} had not finished",
            due_at.to_rfc3339()
        );
        if deadline.fail {
            detail.push_str("; failing it (fail = true)");
        }
        let callback = missed_callback(dag, task).map(|callback| NewCallback {
            kind: if task.is_some() {
                CallbackKind::Task
            } else {
                CallbackKind::DagRun
            },
            event: CallbackEvent::DeadlineMissed,
            dag_id: dag.id.clone(),
            run_id: run.run_id.clone(),
            task_id: task.map(|t| t.id.clone()),
            map_index: UNMAPPED,
            try_number: 0,
            callback: callback.clone(),
            payload: json!({
                "state": state,
                "error": null,
                "detail": detail,
                "deadline": described,
                "due_at": due_at,
                "fail": deadline.fail,
            }),
            now,
        });
        let recorded = self
            .store
            .record_deadline_miss(&NewDeadlineMiss {
                run: run.id,
                dag_id: dag.id.clone(),
                task_id: task.map(|t| t.id.clone()),
                deadline: described.clone(),
                due_at,
                failed: deadline.fail,
                now,
                callback,
            })
            .await
            .map_err(store_err("recording a missed deadline"))?;
        if recorded.is_none() {
            return Ok(false);
        }
        tracing::info!(deadline = %described, %due_at, fail = deadline.fail, "deadline missed");
        if deadline.fail {
            let error = format!(
                "missed its deadline ({described}, due {})",
                due_at.to_rfc3339()
            );
            match task {
                Some(task) => self.fail_late_task(run, task, &error, now).await?,
                None => self.fail_late_run(dag, run, error, now).await?,
            }
        }
        Ok(true)
    }

    /// Fails a late run: a queued run is stopped as a person's cancel would; a running
    /// one as `dagrun_timeout` does (its running tries lose their lease and stop).
    async fn fail_late_run(
        &self,
        dag: &Dag,
        run: &DagRun,
        error: String,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let current = self
            .store
            .get_run(run.id)
            .await
            .map_err(store_err("reading a late run"))?;
        let Some(current) = current.filter(|r| !r.state.is_finished()) else {
            return Ok(());
        };
        if current.state == RunState::Queued {
            return match self.store.cancel_run(&current, now).await {
                Ok(_) | Err(StoreError::Stale { .. } | StoreError::Conflict { .. }) => Ok(()),
                Err(err) => Err(store_err("failing a late queued run")(err)),
            };
        }
        let instances = self
            .store
            .list_task_instances(run.id)
            .await
            .map_err(store_err("reading a late run's instances"))?;
        self.stop_run(
            dag,
            &current,
            &instance_views(&instances),
            format!("the run {error}"),
            now,
        )
        .await
    }

    /// Fails a late task's unfinished instances (`mark failed`, as a person would): a
    /// worker running one loses its lease and stops it; its downstream tasks then follow
    /// their trigger rules.
    async fn fail_late_task(
        &self,
        run: &DagRun,
        task: &Task,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let instances = self
            .store
            .list_task_instances_of(run.id, std::slice::from_ref(&task.id))
            .await
            .map_err(store_err("reading a late task's instances"))?;
        let transitions: Vec<_> = instance_views(&instances)
            .iter()
            .filter(|ti| !ti.state.is_finished())
            .filter_map(|ti| transition(ti.id, ti.state, ti.try_number, TaskEvent::MarkFailed, now))
            .map(|t| {
                t.next_retry_at(Patch::Null)
                    .reason(format!("the task {error}"))
            })
            .collect();
        self.store
            .transition_all(&transitions)
            .await
            .map_err(store_err("failing a late task"))?;
        self.store.wake(nightshift_store::Wake::Scheduler).await;
        Ok(())
    }
}
