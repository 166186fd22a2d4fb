//! Prometheus metrics: the process-wide recorder (one per process, installed by the
//! binary), the descriptions of every metric nightshift records, and the `/metrics`
//! handlers — the web server's (signed in; adds gauges read from the database at scrape
//! time) and the bare exporter the scheduler and worker serve on `--metrics-bind`.
//!
//! The scheduler and workers record where things happen (`metrics::counter!` & co. in
//! their crates); this module only names and renders them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use nightshift_store::Store;
use tokio_util::sync::CancellationToken;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::AppState;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets in seconds, from a millisecond scheduler tick to a two-hour task.
const BUCKETS: [f64; 18] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 7200.0,
];

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("installing the Prometheus metrics recorder: {0}")]
pub struct MetricsError(String);

/// The process's metrics: a handle on the installed recorder, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// (queue, pool) pairs seen at an earlier scrape, so a drained queue reads 0.
    seen_queues: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Installs the global recorder (histograms with [`BUCKETS`]) and describes every
    /// metric. Call once per process: a second call fails.
    pub fn install() -> Result<Metrics, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map_err(|e| MetricsError(e.to_string()))?
            .install_recorder()
            .map_err(|e| MetricsError(e.to_string()))?;
        describe();
        Ok(Metrics {
            handle,
            seen_queues: Arc::default(),
        })
    }

    /// Drains histogram samples into their buckets every few seconds until `cancel`
    /// fires (without it, a process nobody scrapes would grow its sample buffers).
    pub async fn upkeep(self, cancel: CancellationToken) {
        const EVERY: Duration = Duration::from_secs(5);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(EVERY) => self.handle.run_upkeep(),
            }
        }
    }

    /// The text exposition of every metric, after refreshing this process's database
    /// pool gauges.
    pub fn render(&self, store: &Store) -> String {
        let pool = store.db_pool_stats();
        gauge!("nightshift_db_pool_connections", "state" => "idle").set(pool.idle);
        gauge!("nightshift_db_pool_connections", "state" => "in_use")
            .set(pool.open.saturating_sub(pool.idle));
        gauge!("nightshift_db_pool_max_connections").set(pool.max);
        self.handle.render()
    }

    /// Sets the gauges read from the database: task instances by state, queue depth per
    /// queue and pool, pool slots in use.
    async fn record_store_gauges(&self, store: &Store) -> Result<(), ApiError> {
        for c in store.count_active_task_instances().await? {
            gauge!("nightshift_task_instances", "state" => c.state.as_str()).set(c.count as f64);
        }
        let depths = store.queue_depths().await?;
        let current: BTreeSet<(String, String)> = depths
            .iter()
            .map(|d| (d.queue.clone(), d.pool.clone()))
            .collect();
        let gone: Vec<(String, String)> = {
            let mut seen = self.seen_queues.lock().unwrap_or_else(|p| p.into_inner());
            let gone = seen.difference(&current).cloned().collect();
            seen.extend(current);
            gone
        };
        for (queue, pool) in gone {
            gauge!("nightshift_queue_depth", "queue" => queue, "pool" => pool).set(0.0);
        }
        for d in depths {
            gauge!("nightshift_queue_depth", "queue" => d.queue, "pool" => d.pool)
                .set(d.queued as f64);
        }
        let usage = store.pool_usage().await?;
        for pool in store.list_pools().await? {
            let used = usage.iter().find(|u| u.pool == pool.name);
            let (running, queued) = used.map_or((0, 0), |u| (u.running_slots, u.queued_slots));
            gauge!("nightshift_pool_slots", "pool" => pool.name.clone()).set(pool.slots);
            gauge!("nightshift_pool_slots_used", "pool" => pool.name.clone(), "state" => "running")
                .set(running as f64);
            gauge!("nightshift_pool_slots_used", "pool" => pool.name, "state" => "queued")
                .set(queued as f64);
        }
        Ok(())
    }
}

/// Describes every metric nightshift records, so `# HELP` lines explain them.
fn describe() {
    describe_histogram!(
        "nightshift_scheduler_tick_duration_seconds",
        Unit::Seconds,
        "How long one scheduler loop pass (tick) took."
    );
    describe_counter!(
        "nightshift_scheduler_ticks_failed_total",
        "Scheduler ticks that failed (usually: the database was unreachable)."
    );
    describe_counter!(
        "nightshift_scheduler_runs_created_total",
        "DAG runs created by schedules (manual triggers are not counted here)."
    );
    describe_counter!(
        "nightshift_scheduler_runs_finished_total",
        "DAG runs the scheduler finished."
    );
    describe_counter!(
        "nightshift_scheduler_task_instances_queued_total",
        "Task instances the scheduler handed to a queue."
    );
    describe_counter!(
        "nightshift_scheduler_leases_reaped_total",
        "Running tries whose worker lease expired and were reaped."
    );
    describe_histogram!(
        "nightshift_task_queue_wait_seconds",
        Unit::Seconds,
        "From a task instance being queued to a worker claiming it."
    );
    describe_histogram!(
        "nightshift_task_claim_to_start_seconds",
        Unit::Seconds,
        "From a worker claiming a try to its task kind starting (DAG load, rendering)."
    );
    describe_histogram!(
        "nightshift_task_duration_seconds",
        Unit::Seconds,
        "How long a try ran, by DAG, task kind and resulting state."
    );
    describe_counter!(
        "nightshift_task_finished_total",
        "Tries finished, by DAG, task kind and resulting state."
    );
    describe_gauge!(
        "nightshift_worker_slots",
        "Tries this worker may run at once (its concurrency)."
    );
    describe_gauge!(
        "nightshift_worker_slots_busy",
        "Tries this worker is running now."
    );
    describe_gauge!(
        "nightshift_db_pool_connections",
        "Database connections of this process, by state (idle, in_use)."
    );
    describe_gauge!(
        "nightshift_db_pool_max_connections",
        "The most database connections this process opens."
    );
    describe_gauge!(
        "nightshift_task_instances",
        "Task instances in each in-flight state (read from the database at scrape time)."
    );
    describe_gauge!(
        "nightshift_queue_depth",
        "Queued task instances not yet claimed, by queue and pool (read at scrape time)."
    );
    describe_gauge!("nightshift_pool_slots", "Slots of each pool.");
    describe_gauge!(
        "nightshift_pool_slots_used",
        "Slots of each pool taken by running or queued tries."
    );
}

/// `GET /metrics` on the web server: any signed-in user or API token.
pub async fn web_metrics(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Response, ApiError> {
    let Some(metrics) = &state.metrics else {
        return Err(ApiError::NotFound(
            "metrics are not enabled in this process".to_owned(),
        ));
    };
    metrics.record_store_gauges(&state.store).await?;
    Ok(text(metrics.render(&state.store)))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}

/// A router with only `GET /metrics`, unauthenticated, for a scheduler's or worker's
/// `--metrics-bind` address (bind it where only Prometheus can reach it).
pub fn exporter(metrics: Metrics, store: Store) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let (metrics, store) = (metrics.clone(), store.clone());
            async move { text(metrics.render(&store)) }
        }),
    )
}
