//! The scheduler's configuration, its loop, and [`Scheduler::tick`], one full pass over
//! schedules, runs, leases, queues and callbacks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_store::{
    ComponentHeartbeat, ComponentKind, QueueRequest, RunClaim, Store, StoreError, Wake,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::callbacks;
use crate::dags::ParsedDags;
use crate::instance_cache::InstanceCache;
use crate::retention::{retention_pass, RetentionConfig};

/// How the scheduler behaves. Build it with [`SchedulerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Unique per process (`hostname-pid-random` by default); owns run leases.
    pub id: String,
    pub hostname: String,
    /// The longest wait between two ticks; wake-ups usually come much sooner.
    pub poll_interval: Duration,
    /// How long a claimed run stays with this scheduler without being claimed again.
    pub run_lease: Duration,
    /// Runs evaluated per tick.
    pub max_runs_per_tick: i64,
    /// Scheduled runs created per DAG per tick (a long catch-up spreads over ticks).
    pub max_new_runs_per_dag: usize,
    /// Task instances queued per tick.
    pub max_queued_per_tick: usize,
    /// Expired leases reaped per tick.
    pub max_reaped_per_tick: i64,
    /// Callback requests sent per tick.
    pub max_callbacks_per_tick: i64,
    /// The most instances a `for_each` over an upstream's output fans out to (Airflow's
    /// `max_map_length`); a longer list fails the task.
    pub max_map_length: usize,
    /// The web UI's address, for links in callback messages.
    pub base_url: String,
    /// Environment variables callback templates see as `env` (e.g. `SLACK_WEBHOOK_URL`);
    /// the binary fills it, nothing here reads the process environment.
    pub template_env: BTreeMap<String, String>,
    /// What is deleted in the background, and how often (default: everything kept).
    pub retention: RetentionConfig,
}

impl SchedulerConfig {
    /// Defaults: poll every second, 30 s run leases, 100 runs and 512 instances a tick.
    pub fn new(base_url: impl Into<String>) -> SchedulerConfig {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let id = format!(
            "{hostname}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        SchedulerConfig {
            id,
            hostname,
            poll_interval: Duration::from_secs(1),
            run_lease: Duration::from_secs(30),
            max_runs_per_tick: 100,
            max_new_runs_per_dag: 32,
            max_queued_per_tick: 512,
            max_reaped_per_tick: 100,
            max_callbacks_per_tick: 50,
            max_map_length: crate::evaluate::MAX_MAP_LENGTH,
            base_url: base_url.into(),
            template_env: BTreeMap::new(),
            retention: RetentionConfig::default(),
        }
    }
}

/// A tick that could not finish; the loop logs it and tries again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler {step}: {source}")]
    Store {
        step: &'static str,
        #[source]
        source: StoreError,
    },
}

pub(crate) fn store_err(step: &'static str) -> impl FnOnce(StoreError) -> SchedulerError {
    move |source| SchedulerError::Store { step, source }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub runs_created: usize,
    pub runs_started: usize,
    pub runs_examined: usize,
    /// Task-instance transitions applied (scheduled, skipped, upstream_failed, ...).
    pub transitions: usize,
    /// `for_each` placeholders fanned out (or skipped/failed).
    pub expanded: usize,
    pub runs_finished: usize,
    pub queued: u64,
    pub reaped: usize,
    /// Missed deadlines this scheduler recorded (each is recorded by one scheduler only).
    pub deadlines_missed: usize,
    /// Approvals whose timeout fell, decided by their `on_timeout` (by this scheduler).
    pub approvals_timed_out: usize,
    /// True when a limit was reached, so another tick should follow at once.
    pub saturated: bool,
}

/// Records a finished tick's duration and counts (Prometheus, through `metrics`).
fn record_tick(report: &TickReport, took: Duration) {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    metrics::histogram!("nightshift_scheduler_tick_duration_seconds").record(took);
    metrics::counter!("nightshift_scheduler_runs_created_total")
        .increment(count(report.runs_created));
    metrics::counter!("nightshift_scheduler_runs_finished_total")
        .increment(count(report.runs_finished));
    metrics::counter!("nightshift_scheduler_task_instances_queued_total").increment(report.queued);
    metrics::counter!("nightshift_scheduler_leases_reaped_total").increment(count(report.reaped));
}

/// This scheduler's background retention: the pass running, and when to ask again.
#[derive(Default)]
struct RetentionTask {
    running: Option<JoinHandle<()>>,
    next_ask: Option<DateTime<Utc>>,
}

/// One scheduler process's state. Several may run against one PostgreSQL.
pub struct Scheduler {
    pub(crate) store: Store,
    pub(crate) config: Arc<SchedulerConfig>,
    pub(crate) dags: ParsedDags,
    /// The instances of the runs claimed at the last pass.
    pub(crate) instances: InstanceCache,
    http: reqwest::Client,
    sender: Mutex<Option<JoinHandle<()>>>,
    /// The background retention pass, while one runs, and when to ask for one next.
    retention: Mutex<RetentionTask>,
    /// When the component heartbeat was last written.
    last_beat: Mutex<Option<DateTime<Utc>>>,
}

impl Scheduler {
    pub fn new(store: Store, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            store,
            config: Arc::new(config),
            dags: ParsedDags::default(),
            instances: InstanceCache::default(),
            http: reqwest::Client::new(),
            sender: Mutex::new(None),
            retention: Mutex::new(RetentionTask::default()),
            last_beat: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Ticks until `cancel` fires: after each tick it waits for a scheduler wake-up or
    /// `poll_interval`, whichever comes first. A failing tick (the database is down) is
    /// logged and retried with backoff; this never returns because of the database.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SchedulerError> {
        const MAX_BACKOFF: Duration = Duration::from_secs(30);
        let mut backoff = self.config.poll_interval.max(Duration::from_millis(100));
        tracing::info!(scheduler_id = %self.config.id, "scheduler started");
        while !cancel.is_cancelled() {
            match self.tick(Utc::now()).await {
                Ok(report) => {
                    backoff = self.config.poll_interval.max(Duration::from_millis(100));
                    if report.saturated {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = self.store.wakeups().woken(Wake::Scheduler) => {}
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(err) => {
                    metrics::counter!("nightshift_scheduler_ticks_failed_total").increment(1);
                    tracing::warn!(error = %err, retry_in = ?backoff, "scheduler tick failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Err(err) = self.store.release_runs(&self.config.id).await {
            tracing::warn!(error = %err, "could not release runs on shutdown");
        }
        let sender = self.sender.lock().ok().and_then(|mut slot| slot.take());
        if let Some(sender) = sender {
            let _ = tokio::time::timeout(callbacks::CALLBACK_TIMEOUT, sender).await;
        }
        // A pass stops between two batches; its lease expires (nothing half done stays
        // behind that the next pass does not finish).
        let retention = self
            .retention
            .lock()
            .ok()
            .and_then(|mut slot| slot.running.take());
        if let Some(retention) = retention {
            retention.abort();
        }
        tracing::info!(scheduler_id = %self.config.id, "scheduler stopped");
        Ok(())
    }

    /// One full pass at `now`: heartbeat, create due scheduled runs, start queued runs,
    /// reap expired leases, record missed deadlines (failing what is late when asked),
    /// decide approvals whose timeout fell, evaluate the runs this scheduler claims (trigger
    /// rules, retries, fan-out, timeouts, outcomes), queue scheduled instances within pools
    /// and limits, and start sending pending callbacks in the background.
    #[instrument(skip_all, fields(scheduler_id = %self.config.id))]
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let started = std::time::Instant::now();
        let mut report = TickReport::default();
        // The component heartbeat (for /health and the UI) needs no more than one write
        // a second, however often the scheduler ticks.
        if self.beat_due(now) {
            self.store
                .heartbeat_component(&ComponentHeartbeat {
                    id: self.config.id.clone(),
                    kind: ComponentKind::Scheduler,
                    hostname: self.config.hostname.clone(),
                    pid: i64::from(std::process::id()),
                    now,
                })
                .await
                .map_err(store_err("heartbeat"))?;
        }
        let dags = self.dags.refresh(&self.store).await?;
        report.runs_created = self.create_scheduled_runs(&dags, now).await?;
        report.runs_started = self.start_queued_runs(&dags, now).await?;
        report.reaped = self.reap_expired(&dags, now).await?;
        if report.reaped as i64 >= self.config.max_reaped_per_tick {
            report.saturated = true;
        }
        report.deadlines_missed = self.check_deadlines(&dags, now).await?;
        report.approvals_timed_out = self.check_approvals(&dags, now).await?;

        let runs = self
            .store
            .claim_runs(&RunClaim {
                scheduler_id: self.config.id.clone(),
                limit: self.config.max_runs_per_tick,
                lease: self.config.run_lease,
            })
            .await
            .map_err(store_err("claiming runs"))?;
        if runs.len() as i64 >= self.config.max_runs_per_tick {
            report.saturated = true;
        }
        self.instances
            .retain(&runs.iter().map(|run| run.id).collect());
        for run in runs
            .iter()
            .filter(|r| r.state == nightshift_core::state::RunState::Running)
        {
            let Some(dag) = dags.get(&run.dag_id) else {
                tracing::warn!(dag_id = %run.dag_id, run_id = %run.run_id,
                    "run of a DAG without a usable definition; left as it is");
                continue;
            };
            report.runs_examined += 1;
            let done = self
                .handle_run(&dag.dag, &dag.source_hash, run, now)
                .await?;
            report.transitions += done.transitions;
            report.expanded += done.expanded;
            report.runs_finished += usize::from(done.finished);
        }

        let max_active_tasks = dags
            .values()
            .map(|d| (d.dag.id.clone(), i64::from(d.dag.max_active_tasks)))
            .collect();
        report.queued = self
            .store
            .queue_scheduled(&QueueRequest {
                now,
                limit: self.config.max_queued_per_tick,
                max_active_tasks,
            })
            .await
            .map_err(store_err("queueing task instances"))?;
        if report.queued > 0 {
            self.store.wake(Wake::Workers).await;
        }
        if report.queued as usize >= self.config.max_queued_per_tick {
            report.saturated = true;
        }
        self.spawn_callback_sender(now);
        self.spawn_retention(now);
        record_tick(&report, started.elapsed());
        Ok(report)
    }

    /// Whether the component heartbeat should be written at `now` (at most once a
    /// second); records `now` as written when it is.
    fn beat_due(&self, now: DateTime<Utc>) -> bool {
        let Ok(mut last) = self.last_beat.lock() else {
            return true;
        };
        let due = last.is_none_or(|at| now - at >= chrono::TimeDelta::seconds(1) || now < at);
        if due {
            *last = Some(now);
        }
        due
    }

    /// Sends due callbacks now and waits for them (the loop does this in the background).
    pub async fn send_callbacks(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        callbacks::send_due(&self.store, &self.http, &self.config, now)
            .await
            .map_err(store_err("sending callbacks"))
    }

    /// Runs one retention pass now if it is due and no other scheduler holds it, and
    /// waits for it (the loop does this in the background); `None` when it was not run.
    pub async fn retention(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<nightshift_store::CleanReport>, SchedulerError> {
        retention_pass(&self.store, &self.config.retention, &self.config.id, now)
            .await
            .map_err(store_err("cleaning history"))
    }

    /// Starts a background retention pass when retention is on, none is running here,
    /// and a minute (or the interval, if shorter) has passed since this scheduler last
    /// asked; whether it runs is the store's lease's decision.
    fn spawn_retention(&self, now: DateTime<Utc>) {
        let config = &self.config.retention;
        if !config.is_on() {
            return;
        }
        let Ok(mut slot) = self.retention.lock() else {
            return;
        };
        let RetentionTask { running, next_ask } = &mut *slot;
        if running.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return;
        }
        if next_ask.is_some_and(|at| now < at) {
            return;
        }
        let ask_every = config.every.min(Duration::from_secs(60));
        *next_ask = chrono::TimeDelta::from_std(ask_every)
            .ok()
            .and_then(|delta| now.checked_add_signed(delta));
        let (store, config) = (self.store.clone(), self.config.clone());
        *running = Some(tokio::spawn(async move {
            match retention_pass(&store, &config.retention, &config.id, now).await {
                Ok(Some(report)) => {
                    let deleted: u64 = report.deleted.values().sum();
                    tracing::info!(deleted, rows = ?report.deleted, pages_freed = report.pages_freed,
                        "retention pass finished");
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "retention pass failed"),
            }
        }));
    }

    /// Starts a background sender unless the previous one is still busy.
    fn spawn_callback_sender(&self, now: DateTime<Utc>) {
        let Ok(mut slot) = self.sender.lock() else {
            return;
        };
        if slot.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return;
        }
        let (store, http, config) = (self.store.clone(), self.http.clone(), self.config.clone());
        *slot = Some(tokio::spawn(async move {
            if let Err(err) = callbacks::send_due(&store, &http, &config, now).await {
                tracing::warn!(error = %err, "sending callbacks failed");
            }
        }));
    }
}
