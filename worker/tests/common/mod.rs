//! Helpers shared by the tests that run the real worker loop on a store (`runtime`,
//! `ecs`): a worker with test timings, started and stopped like a process, and polling
//! an instance until it reaches a state.
#![allow(dead_code)] // each test crate uses a different part

use std::time::{Duration, Instant};

use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, Store, TaskInstance};
use nightshift_testkit::Service;
use nightshift_worker::{Worker, WorkerConfig};

/// How long a test waits for an instance to change.
pub const WAIT: Duration = Duration::from_secs(60);

/// A worker on host `test-host` with test timings: a 3 s lease renewed every 300 ms,
/// a poll every 100 ms and 1 s of shutdown grace.
pub fn worker_config(id: &str) -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(1),
        ..WorkerConfig::new(id, "test-host")
    }
}

/// Starts a worker on `store`; [`Service::stop`] shuts it down as SIGTERM would.
pub fn start(store: &Store, config: WorkerConfig) -> Service {
    let worker = Worker::new(store.clone(), config);
    nightshift_testkit::spawn("worker", |stop| worker.run(stop))
}

/// The instance of `task_id` (`map_index` -1 unless mapped) in `run`.
pub async fn instance(store: &Store, run: &DagRun, task_id: &str, map_index: i32) -> TaskInstance {
    store
        .find_task_instance(run.id, task_id, map_index)
        .await
        .expect("read instance")
        .unwrap_or_else(|| panic!("no instance {task_id}[{map_index}]"))
}

/// Polls until `pred` holds for the instance; returns it.
pub async fn wait_for(
    store: &Store,
    run: &DagRun,
    task_id: &str,
    map_index: i32,
    what: &str,
    pred: impl Fn(&TaskInstance) -> bool,
) -> TaskInstance {
    let started = Instant::now();
    loop {
        let ti = instance(store, run, task_id, map_index).await;
        if pred(&ti) {
            return ti;
        }
        assert!(
            started.elapsed() < WAIT,
            "{task_id}[{map_index}] never became {what}: {ti:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the unmapped instance of `task_id` is in `state`; returns it.
pub async fn wait_state(
    store: &Store,
    run: &DagRun,
    task_id: &str,
    state: TaskState,
) -> TaskInstance {
    wait_for(store, run, task_id, -1, state.as_str(), |ti| {
        ti.state == state
    })
    .await
}
