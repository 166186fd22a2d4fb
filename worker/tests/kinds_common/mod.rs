//! Helpers shared by the kind tests (`kinds_sql`, `kinds_http`, `kinds_sensor`): a bare
//! task context with its log, and a real worker on a SQLite store with connections.
#![allow(dead_code)] // each test crate uses a different part

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_core::connection::{Connection, Connections};
use nightshift_store::{DagRun, Store, TaskInstance};
use nightshift_testkit::{queued_run, QueuedRun};
use nightshift_worker::kind::{ExternalJob, Outcome, TaskContext};
use nightshift_worker::log::{LogChannel, LogReceiver};
use nightshift_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);

/// A context for running a kind directly, and the receiving end of its log.
pub fn context(timeout: Option<Duration>) -> (TaskContext, LogReceiver) {
    let (log, rx) = LogChannel::new(10_000);
    let ctx = TaskContext {
        dag_id: "d".into(),
        run_id: "r".into(),
        task_id: "t".into(),
        try_number: 1,
        map_index: -1,
        cancel: CancellationToken::new(),
        timeout,
        try_timeout: timeout,
        wakes: 0,
        log,
        external: ExternalJob::default(),
    };
    (ctx, rx)
}

/// The output of a successful outcome; panics on any other, showing `log`.
pub fn output<'a>(outcome: &'a Outcome, log: &[String]) -> &'a serde_json::Value {
    match outcome {
        Outcome::Success {
            output: Some(output),
        } => output,
        other => panic!("a success with output expected: {other:?} {log:#?}"),
    }
}

/// The error of a failed outcome and whether it may be retried; panics on any other
/// outcome.
pub fn failure(outcome: &Outcome) -> (&str, bool) {
    match outcome {
        Outcome::Failed {
            error, retryable, ..
        } => (error, *retryable),
        other => panic!("a failure expected: {other:?}"),
    }
}

/// Every line written so far.
pub fn lines(rx: &mut LogReceiver) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv())
        .map(|l| l.text)
        .collect()
}

pub fn connection(name: &str, uri: &str, extra: Option<serde_json::Value>) -> Connection {
    Connection::parse(name, uri, extra).unwrap_or_else(|e| panic!("{e}"))
}

/// Stores `toml` as a DAG and creates a run with every instance queued.
pub async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/d.toml", toml).await;
    let how = QueuedRun {
        run_id: "manual__kinds",
        logical_date: Utc::now(),
        conf: serde_json::json!({}),
    };
    queued_run(store, &dag, how).await
}

/// A worker config for tests with these connections and template environment.
pub fn config(
    connections: impl IntoIterator<Item = Connection>,
    env: &[(&str, &str)],
) -> WorkerConfig {
    let mut known = Connections::new();
    for connection in connections {
        known.insert(connection);
    }
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    WorkerConfig {
        lease: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(1),
        env,
        connections: known,
        ..WorkerConfig::new("kinds-worker", "test-host")
    }
}

/// Runs a worker until every instance of `run` is finished; returns them by task id.
pub async fn run_to_end(
    store: &Store,
    config: WorkerConfig,
    run: &DagRun,
) -> BTreeMap<String, TaskInstance> {
    let worker = Worker::new(store.clone(), config);
    let worker = nightshift_testkit::spawn("worker", |stop| worker.run(stop));
    let started = Instant::now();
    let instances = loop {
        let instances = store.list_task_instances(run.id).await.expect("instances");
        if instances.iter().all(|ti| ti.state.is_finished()) {
            break instances;
        }
        assert!(
            started.elapsed() < WAIT,
            "tasks never finished: {instances:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    worker.stop().await;
    instances
        .into_iter()
        .map(|ti| (ti.task_id.clone(), ti))
        .collect()
}

/// Every stored line of the instance's latest try.
pub async fn stored_log(store: &Store, ti: &TaskInstance) -> Vec<String> {
    store
        .read_logs(ti.id, ti.try_number, 0, 10_000)
        .await
        .expect("read logs")
        .into_iter()
        .map(|row| row.line)
        .collect()
}

/// Asserts that `secret` appears nowhere a user can see: the stored log, rendered
/// fields, output and attempt errors of every instance, and the raw database file.
pub async fn assert_never_stored(
    store: &Store,
    db_file: &std::path::Path,
    instances: &BTreeMap<String, TaskInstance>,
    secret: &str,
) {
    for ti in instances.values() {
        let log = stored_log(store, ti).await;
        assert!(
            !log.iter().any(|l| l.contains(secret)),
            "{}: secret in the log: {log:?}",
            ti.task_id
        );
        for (what, value) in [("rendered", &ti.rendered), ("output", &ti.output)] {
            let text = value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            assert!(
                !text.contains(secret),
                "{}: secret in {what}: {text}",
                ti.task_id
            );
        }
        for attempt in store.list_attempts(ti.id).await.expect("attempts") {
            let error = attempt.error.unwrap_or_default();
            assert!(
                !error.contains(secret),
                "{}: secret in an error: {error}",
                ti.task_id
            );
        }
    }
    store.close().await;
    for suffix in ["", "-wal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db_file.display()));
        if let Ok(bytes) = std::fs::read(&file) {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the secret is stored in {}", file.display());
        }
    }
}
