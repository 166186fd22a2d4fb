//! In-process roles for end-to-end tests that drive the real scheduler and worker on one
//! store without the binary: a fast-polling scheduler, a worker, and a queued manual run
//! for the scheduler to start.

#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use nightshift_core::dag::Dag;
use nightshift_core::plan::plan_run;
use nightshift_core::state::RunState;
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::{new_task_instances, DagRun, NewRun, RunType, Store};
use nightshift_testkit::Service;
use nightshift_worker::{Worker, WorkerConfig};

/// Scheduler `s1`, polling every 100 ms.
pub fn start_scheduler(store: &Store) -> Service {
    let config = SchedulerConfig {
        id: "s1".to_owned(),
        poll_interval: Duration::from_millis(100),
        ..SchedulerConfig::new("http://ns.test")
    };
    let scheduler = Scheduler::new(store.clone(), config);
    nightshift_testkit::spawn("scheduler", |stop| scheduler.run(stop))
}

/// A worker configuration that polls every 100 ms, heartbeats every 250 ms and gives
/// its tries 1 s to stop on shutdown.
pub fn quick_worker(id: &str, host: &str) -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(100),
        heartbeat_interval: Duration::from_millis(250),
        shutdown_grace: Duration::from_secs(1),
        ..WorkerConfig::new(id, host)
    }
}

pub fn start_worker(store: &Store, config: WorkerConfig) -> Service {
    let worker = Worker::new(store.clone(), config);
    nightshift_testkit::spawn("worker", |stop| worker.run(stop))
}

/// A queued manual run `run_id` of `dag` at its current version, logical date now (the
/// scheduler starts it).
pub async fn queued_manual_run(store: &Store, dag: &Dag, run_id: &str) -> DagRun {
    let now = Utc::now();
    let run = NewRun {
        dag_id: dag.id.clone(),
        run_id: run_id.to_owned(),
        run_type: RunType::Manual,
        logical_date: now,
        data_interval_start: now,
        data_interval_end: now,
        state: RunState::Queued,
        conf: serde_json::json!({}),
        queued_at: now,
        definition_hash: dag.source_hash.clone(),
    };
    let (run, _) = store
        .create_run_with_tasks(&run, &new_task_instances(&plan_run(dag)))
        .await
        .expect("create run")
        .expect("new run");
    run
}
