//! Turning schedules into DAG runs and starting queued runs within `max_active_runs`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nightshift_core::plan::plan_run;
use nightshift_core::schedule::{DagTimetable, DataInterval};
use nightshift_core::state::RunState;
use nightshift_store::{new_task_instances, NewRun, RunFilter, RunType, StartRuns, StoreError};
use tracing::instrument;

use crate::dags::CachedDag;
use crate::scheduler::{store_err, Scheduler, SchedulerError};

/// The run id of the scheduled run at `logical_date`.
pub(crate) fn scheduled_run_id(logical_date: DateTime<Utc>) -> String {
    format!("scheduled__{}", logical_date.to_rfc3339())
}

impl Scheduler {
    /// Creates the due scheduled runs of every active, unpaused DAG with a schedule.
    /// Idempotent: a run that exists at the same logical date is not created again.
    pub(crate) async fn create_scheduled_runs(
        &self,
        dags: &BTreeMap<String, CachedDag>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let mut created = 0;
        for cached in dags.values().filter(|d| d.is_active && !d.is_paused) {
            created += self.create_runs_for(cached, now).await?;
        }
        Ok(created)
    }

    #[instrument(skip_all, fields(dag_id = %cached.dag.id))]
    async fn create_runs_for(
        &self,
        cached: &CachedDag,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let dag = &cached.dag;
        let Some(schedule) = dag.schedule.clone() else {
            return Ok(0);
        };
        let timetable = DagTimetable {
            schedule,
            timezone: dag.timezone,
            start_date: dag.start_date,
            end_date: dag.end_date,
            catchup: dag.catchup,
        };
        let latest = self
            .store
            .list_runs(&RunFilter {
                dag_id: Some(dag.id.clone()),
                run_type: Some(RunType::Scheduled),
                limit: Some(1),
                ..RunFilter::default()
            })
            .await
            .map_err(store_err("reading the latest scheduled run"))?;
        let mut last = latest.first().map(|run| DataInterval {
            start: run.data_interval_start,
            end: run.data_interval_end,
        });
        let mut created = 0;
        for _ in 0..self.config.max_new_runs_per_dag {
            let Some(interval) = timetable.next_data_interval(last, now) else {
                break;
            };
            if last == Some(interval) {
                break;
            }
            let run = NewRun {
                dag_id: dag.id.clone(),
                run_id: scheduled_run_id(interval.logical_date()),
                run_type: RunType::Scheduled,
                logical_date: interval.logical_date(),
                data_interval_start: interval.start,
                data_interval_end: interval.end,
                state: RunState::Queued,
                conf: serde_json::json!({}),
                queued_at: now,
                definition_hash: cached.source_hash.clone(),
            };
            let tasks = new_task_instances(&plan_run(dag));
            match self.store.create_run_with_tasks(&run, &tasks).await {
                Ok(Some((stored, _))) => {
                    tracing::info!(run_id = %stored.run_id, "scheduled run created");
                    created += 1;
                }
                Ok(None) => {
                    tracing::debug!(run_id = %run.run_id, "run exists already");
                }
                Err(err @ StoreError::Conflict { .. }) => {
                    tracing::warn!(run_id = %run.run_id, error = %err, "cannot create scheduled run");
                    break;
                }
                Err(err) => return Err(store_err("creating a scheduled run")(err)),
            }
            last = Some(interval);
        }
        Ok(created)
    }

    /// Starts queued runs, oldest first, of every unpaused DAG while it has fewer than
    /// `max_active_runs` running (manual and backfill runs arrive queued too).
    pub(crate) async fn start_queued_runs(
        &self,
        dags: &BTreeMap<String, CachedDag>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let waiting = self
            .store
            .dags_with_queued_runs()
            .await
            .map_err(store_err("listing queued runs"))?;
        let mut started = 0;
        for dag_id in waiting {
            let Some(cached) = dags.get(&dag_id).filter(|d| !d.is_paused) else {
                continue;
            };
            let runs = self
                .store
                .start_queued_runs(&StartRuns {
                    dag_id,
                    max_active_runs: i64::from(cached.dag.max_active_runs),
                    now,
                })
                .await
                .map_err(store_err("starting queued runs"))?;
            for run in &runs {
                tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, "run started");
            }
            started += runs.len();
        }
        Ok(started)
    }
}
