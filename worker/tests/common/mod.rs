//! Helpers shared by the tests that run the real worker loop on a store (`runtime`,
//! `ecs`): a worker with test timings, started and stopped like a process, and polling
//! an instance until it reaches a state; reading a try's log and attempts; reaping a try
//! as the scheduler does.
#![allow(dead_code)] // each test crate uses a different part

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{Attempt, DagRun, Patch, Reap, Store, TaskInstance, Transition};
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

/// Polls the condition (an expression that may `.await`) until it holds, for up to
/// [`WAIT`].
#[macro_export]
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let started = std::time::Instant::now();
        while !$cond {
            assert!(
                started.elapsed() < $crate::common::WAIT,
                "never happened: {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }};
}

/// The `system` lines of one try's log.
pub async fn system_lines(store: &Store, ti: &TaskInstance, try_number: i32) -> Vec<String> {
    store
        .read_logs(ti.id, try_number, 0, 10_000)
        .await
        .expect("read logs")
        .into_iter()
        .filter(|row| row.stream == "system")
        .map(|row| row.line)
        .collect()
}

/// Asserts that a `system` line of the try contains `part`.
pub async fn has_line(store: &Store, ti: &TaskInstance, try_number: i32, part: &str) {
    let lines = system_lines(store, ti, try_number).await;
    assert!(
        lines.iter().any(|l| l.contains(part)),
        "no line with {part:?} in try {try_number}: {lines:#?}"
    );
}

pub async fn attempts(store: &Store, ti: &TaskInstance) -> Vec<Attempt> {
    store.list_attempts(ti.id).await.expect("attempts")
}

/// Reaps the try as the scheduler does after its lease expired, into `new_state`.
pub async fn reap(store: &Store, ti: &TaskInstance, new_state: TaskState) -> DateTime<Utc> {
    let later = Utc::now() + chrono::TimeDelta::minutes(5);
    nightshift_testkit::expire_and_reap(
        store,
        &Reap {
            ti_id: ti.id,
            try_number: ti.try_number,
            new_state,
            next_retry_at: None,
            error: "the lease expired: the worker stopped heartbeating".into(),
            now: later,
        },
    )
    .await;
    later
}

/// Reaps with retries left and queues the next try.
pub async fn reap_and_requeue(store: &Store, ti: &TaskInstance) {
    let later = reap(store, ti, TaskState::UpForRetry).await;
    for (from, event) in [
        (TaskState::UpForRetry, TaskEvent::Schedule),
        (TaskState::Scheduled, TaskEvent::Queue),
    ] {
        store
            .transition(
                &Transition::on(ti.id, from, ti.try_number, event, later)
                    .expect("legal")
                    .queued_at(Patch::Set(later)),
            )
            .await
            .expect("requeue");
    }
}
