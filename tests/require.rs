//! Cross-DAG dependencies end to end: the real loader, scheduler and worker in process,
//! on both backends. DAG `marts` waits (`require`) for `extract`'s run of the same
//! logical date without holding the one worker slot, and starts when it succeeds; two
//! `marts` runs that trigger the missing `extract` run create it once; `extract` failing
//! fails the require task naming `extract`'s run. (An unknown required DAG is a load error:
//! scheduler/tests/scheduler/required_dags.rs.)

use std::time::{Duration, Instant};

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, RunFilter, Store};
use nightshift_testkit::{both_backends, t, Service};
use nightshift_worker::WorkerConfig;

mod inprocess;
use inprocess::{
    all_finished, instance, load_folder, quick_worker, start_scheduler, trigger, wait_until,
};

/// How long a test waits for the runs it follows.
const LIMIT: Duration = Duration::from_secs(30);

both_backends!(
    marts_waits_for_extract_and_starts_when_it_succeeds,
    two_racing_marts_runs_trigger_extract_once,
    extract_failing_fails_the_require_task_with_its_run_id,
);

/// A worker with `concurrency` slots.
fn start_worker(store: &Store, id: &str, concurrency: usize) -> Service {
    let config = WorkerConfig {
        concurrency,
        ..quick_worker(id, "test-host")
    };
    inprocess::start_worker(store, config)
}

async fn runs_of(store: &Store, dag_id: &str) -> Vec<DagRun> {
    store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.to_owned()),
            ..RunFilter::default()
        })
        .await
        .expect("runs")
}

const EXTRACT: &str = r#"
[tasks.load]
type = "command"
command = "true"
"#;

const MARTS: &str = r#"
[tasks.wait_extract]
type = "require"
dag = "extract"
poke_interval = "300ms"
priority = 10

[tasks.build]
type = "command"
command = "true"
depends_on = ["wait_extract"]

[tasks.unrelated]
type = "command"
command = "true"
priority = 1
"#;

/// The done-when: `marts` waits for `extract`'s run of its own logical date (which does
/// not exist yet), holding no slot of the one-slot worker, so an unrelated task runs at
/// once; `extract`'s run comes and succeeds, and `marts` goes on in the same try.
async fn marts_waits_for_extract_and_starts_when_it_succeeds(store: Store) {
    let (_dir, errors) =
        load_folder(&store, &[("extract.toml", EXTRACT), ("marts.toml", MARTS)]).await;
    assert!(errors.is_empty(), "{errors:#?}");
    let day = t("2026-01-01T00:00:00Z");
    let marts = trigger(&store, "marts", None, Some(day)).await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store, "w1", 1);

    let instances = wait_until(
        &store,
        &marts,
        "the unrelated task beside the wait",
        LIMIT,
        |tis| instance(tis, "unrelated").state == TaskState::Success,
    )
    .await;
    let waiting = instance(&instances, "wait_extract");
    assert!(!waiting.state.is_finished(), "{waiting:?}");
    // It has looked at least twice, one try, and names the run it waits for.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempt = loop {
        let attempts = store.list_attempts(waiting.id).await.expect("attempts");
        assert!(attempts.len() <= 1, "one try: {attempts:#?}");
        if attempts.first().is_some_and(|a| a.reschedules >= 1) {
            break attempts[0].clone();
        }
        assert!(Instant::now() < deadline, "never woken: {attempts:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempt.external_id, None, "no run of extract yet");
    assert!(
        runs_of(&store, "extract").await.is_empty(),
        "wait creates no run"
    );

    let extract = trigger(&store, "extract", None, Some(day)).await;
    let instances = wait_until(&store, &marts, "marts to finish", LIMIT, all_finished).await;
    worker.stop().await;
    scheduler.stop().await;
    for ti in &instances {
        assert_eq!(ti.state, TaskState::Success, "{ti:?}");
    }
    let waited = instance(&instances, "wait_extract");
    let attempts = store.list_attempts(waited.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let key = format!("extract/{}", extract.run_id);
    assert_eq!(attempts[0].external_id.as_deref(), Some(key.as_str()));
    let output = waited.output.clone().unwrap_or_default();
    assert_eq!(output["run_id"], extract.run_id.as_str());
    assert_eq!(output["state"], "success");
    // `build` started after extract's task ended.
    let extract_load = &store.list_task_instances(extract.id).await.expect("tis")[0];
    let (built, loaded) = (
        instance(&instances, "build").start_date,
        extract_load.end_date,
    );
    assert!(
        built >= loaded,
        "build {built:?} before extract ended {loaded:?}"
    );
    assert_eq!(
        nightshift_testkit::dag_run(&store, marts.id).await.state,
        RunState::Success
    );
}

/// The done-when: two runs of `marts` require the same (missing) run of `extract` with
/// `if_missing = "trigger"`, claimed at once by two workers; `extract` runs once and
/// both go on.
async fn two_racing_marts_runs_trigger_extract_once(store: Store) {
    let marts = r#"
[tasks.wait_extract]
type = "require"
dag = "extract"
logical_date = "2026-01-01"
if_missing = "trigger"
poke_interval = "300ms"
"#;
    let extract = "[tasks.load]\ntype = \"command\"\ncommand = \"sleep 0.5\"\n";
    let (_dir, errors) =
        load_folder(&store, &[("extract.toml", extract), ("marts.toml", marts)]).await;
    assert!(errors.is_empty(), "{errors:#?}");
    let first = trigger(&store, "marts", None, Some(t("2026-01-02T00:00:00Z"))).await;
    let second = trigger(&store, "marts", None, Some(t("2026-01-03T00:00:00Z"))).await;
    let scheduler = start_scheduler(&store);
    let workers = [start_worker(&store, "w1", 2), start_worker(&store, "w2", 2)];
    let mut keys = Vec::new();
    for run in [&first, &second] {
        let instances = wait_until(&store, run, "marts to finish", LIMIT, all_finished).await;
        let ti = &instances[0];
        assert_eq!(ti.state, TaskState::Success, "{ti:?}");
        let attempts = store.list_attempts(ti.id).await.expect("attempts");
        keys.push(attempts[0].external_id.clone());
    }
    for worker in workers {
        worker.stop().await;
    }
    scheduler.stop().await;
    let extract_runs = runs_of(&store, "extract").await;
    assert_eq!(extract_runs.len(), 1, "{extract_runs:#?}");
    let run = &extract_runs[0];
    assert_eq!(run.run_id, "required__2026-01-01T00:00:00+00:00");
    assert_eq!(run.state, RunState::Success);
    let key = Some(format!("extract/{}", run.run_id));
    assert_eq!(keys, vec![key.clone(), key]);
}

/// The done-when: `extract` fails, so `marts`'s require task fails naming `extract`'s
/// run (its id and state) and `marts` fails.
async fn extract_failing_fails_the_require_task_with_its_run_id(store: Store) {
    let extract = "[tasks.load]\ntype = \"command\"\ncommand = \"exit 3\"\n";
    let marts = r#"
[tasks.wait_extract]
type = "require"
dag = "extract"
if_missing = "trigger"
poke_interval = "300ms"

[tasks.build]
type = "command"
command = "true"
depends_on = ["wait_extract"]
"#;
    let (_dir, errors) =
        load_folder(&store, &[("extract.toml", extract), ("marts.toml", marts)]).await;
    assert!(errors.is_empty(), "{errors:#?}");
    let day = t("2026-01-01T00:00:00Z");
    let marts_run = trigger(&store, "marts", None, Some(day)).await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store, "w1", 1);
    let instances = wait_until(&store, &marts_run, "marts to finish", LIMIT, all_finished).await;
    worker.stop().await;
    scheduler.stop().await;
    let extract_run = &runs_of(&store, "extract").await[0];
    assert_eq!(extract_run.state, RunState::Failed);
    let waited = instance(&instances, "wait_extract");
    assert_eq!(waited.state, TaskState::Failed);
    let attempts = store.list_attempts(waited.id).await.expect("attempts");
    assert_eq!(
        attempts[0].error.as_deref(),
        Some(
            format!(
                "the required run extract/required__2026-01-01T00:00:00+00:00 (id {}) ended failed",
                extract_run.id
            )
            .as_str()
        )
    );
    assert_eq!(
        instance(&instances, "build").state,
        TaskState::UpstreamFailed
    );
    assert_eq!(
        nightshift_testkit::dag_run(&store, marts_run.id)
            .await
            .state,
        RunState::Failed
    );
}
