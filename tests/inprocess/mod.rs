//! In-process roles for end-to-end tests that drive the real scheduler and worker on one
//! store without the binary: a fast-polling scheduler, a worker, a DAG folder loaded as
//! the scheduler loads it, runs for the scheduler to start, and waiting for what they
//! come to.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::plan::plan_run;
use nightshift_core::state::RunState;
use nightshift_scheduler::loader::{sync_folder, SyncOptions};
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::{
    new_task_instances, DagRun, NewRun, RunType, Store, TaskInstance, TriggerParams,
};
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

/// Writes `files` (name, text) into a fresh DAG folder and loads it as the scheduler does
/// (new DAGs unpaused); returns the folder and the load's errors by file.
pub async fn load_folder(
    store: &Store,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write DAG file");
    }
    let errors = sync_now(store, dir.path()).await;
    (dir, errors)
}

/// Loads the DAG folder `dir` once, as the scheduler does; returns the errors by file.
pub async fn sync_now(store: &Store, dir: &Path) -> BTreeMap<String, String> {
    let options = SyncOptions {
        unpause_new: true,
        ..SyncOptions::default()
    };
    sync_folder(store, dir, &options, Utc::now())
        .await
        .expect("sync the DAG folder")
        .errors
}

/// The stored definition of `dag_id` (its current version).
pub async fn stored_dag(store: &Store, dag_id: &str) -> Dag {
    let record = store.get_dag(dag_id).await.expect("read DAG").expect("DAG");
    serde_json::from_value(record.definition).expect("definition")
}

/// A queued manual run of `dag_id`'s current version, as `nightshift dags trigger`
/// creates it (`run_id` and `logical_date` default as there).
pub async fn trigger(
    store: &Store,
    dag_id: &str,
    run_id: Option<&str>,
    logical_date: Option<DateTime<Utc>>,
) -> DagRun {
    let dag = stored_dag(store, dag_id).await;
    store
        .trigger_run(
            &dag,
            &TriggerParams {
                run_id: run_id.map(str::to_owned),
                logical_date,
                data_interval: None,
                conf: serde_json::json!({}),
                run_type: RunType::Manual,
                now: Utc::now(),
            },
        )
        .await
        .expect("trigger")
}

/// The run's instances once `done` holds for them, polling for up to `limit`.
pub async fn wait_until(
    store: &Store,
    run: &DagRun,
    what: &str,
    limit: Duration,
    done: impl Fn(&[TaskInstance]) -> bool,
) -> Vec<TaskInstance> {
    let deadline = Instant::now() + limit;
    loop {
        let instances = store.list_task_instances(run.id).await.expect("instances");
        if done(&instances) {
            return instances;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {instances:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every instance has finished (and there is one).
pub fn all_finished(instances: &[TaskInstance]) -> bool {
    !instances.is_empty() && instances.iter().all(|ti| ti.state.is_finished())
}

/// The instance of `task_id` (the first, for a mapped task).
pub fn instance<'a>(instances: &'a [TaskInstance], task_id: &str) -> &'a TaskInstance {
    instances
        .iter()
        .find(|ti| ti.task_id == task_id)
        .unwrap_or_else(|| panic!("no instance of {task_id}: {instances:#?}"))
}

/// The run once it has finished, polling for up to a minute.
pub async fn run_finished(store: &Store, run: &DagRun) -> DagRun {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = nightshift_testkit::dag_run(store, run.id).await;
        if now.state.is_finished() {
            return now;
        }
        assert!(Instant::now() < deadline, "the run never finished: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
