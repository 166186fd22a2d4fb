//! Definition versions end to end, with the real loader, scheduler and worker on one
//! store and the real CLI: a task fails, its DAG file is edited, and `tasks clear` runs
//! the new command (the current version, the default); `tasks clear --keep-version` runs
//! the old one. Each try's attempt row records the version it ran.

mod inprocess;

use inprocess::{
    queued_manual_run, quick_worker, run_finished, start_scheduler, start_worker, stored_dag,
    sync_now,
};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, Store, TaskInstance};

nightshift_testkit::both_backends_with_url!(
    a_cleared_task_runs_the_current_version_unless_it_keeps_the_runs
);

const OLD: &str = "[tasks.t]\ntype = \"command\"\ncommand = \"echo old-version; exit 3\"\n";
const NEW: &str =
    "# the fixed command\n[tasks.t]\ncommand = \"echo new-version\"\ntype = \"command\"\n";

async fn sync(store: &Store, dir: &std::path::Path) {
    let errors = sync_now(store, dir).await;
    assert!(errors.is_empty(), "{errors:?}");
}

/// The one instance's latest try: its state, what it printed and the version it ran.
async fn last_try(store: &Store, run: &DagRun) -> (TaskInstance, Vec<String>, Option<String>) {
    let ti = store.list_task_instances(run.id).await.expect("instances");
    let ti = ti.into_iter().next().expect("one instance");
    let lines = store
        .read_logs(ti.id, ti.try_number, 0, 1_000)
        .await
        .expect("logs")
        .into_iter()
        .filter(|row| row.stream == "stdout")
        .map(|row| row.line)
        .collect();
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    let attempt = attempts.last().expect("a try");
    assert_eq!(attempt.try_number, ti.try_number);
    (ti, lines, attempt.definition_hash.clone())
}

/// `nightshift tasks clear v manual__versions t [--keep-version]`, the real binary.
fn clear(url: &str, dags: &std::path::Path, keep_version: bool) {
    let mut args = vec![
        "tasks",
        "clear",
        "v",
        "manual__versions",
        "t",
        "--no-migrate",
    ];
    if keep_version {
        args.push("--keep-version");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(&args)
        .env("NIGHTSHIFT_DATABASE_URL", url)
        .env("NIGHTSHIFT_DAGS_FOLDER", dags)
        .env("NIGHTSHIFT_LOG_LEVEL", "warn")
        .output()
        .expect("run nightshift");
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn a_cleared_task_runs_the_current_version_unless_it_keeps_the_runs(
    store: Store,
    url: String,
) {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["tasks", "clear", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--keep-version"), "{help}");
    assert!(help.contains("current version"), "{help}");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("v.toml"), OLD).expect("write");
    sync(&store, dir.path()).await;
    let dag = stored_dag(&store, "v").await;
    let v1 = dag.source_hash.clone();
    let run = queued_manual_run(&store, &dag, "manual__versions").await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store, quick_worker("w1", "versions-host"));

    // Version 1 fails.
    assert_eq!(run_finished(&store, &run).await.state, RunState::Failed);
    let (ti, out, ran) = last_try(&store, &run).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Failed, 1));
    assert_eq!(out, ["old-version"]);
    assert_eq!(ran.as_deref(), Some(v1.as_str()));

    // The file is fixed: version 2. The run keeps the version it was created with.
    std::fs::write(dir.path().join("v.toml"), NEW).expect("edit");
    sync(&store, dir.path()).await;
    let v2 = stored_dag(&store, "v").await.source_hash;
    assert_ne!(v2, v1);
    let versions = store.list_dag_versions("v").await.expect("versions");
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id)
            .await
            .definition_hash,
        v1
    );

    // A clear runs the current version.
    clear(&url, dir.path(), false);
    assert_eq!(run_finished(&store, &run).await.state, RunState::Success);
    let (ti, out, ran) = last_try(&store, &run).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Success, 2));
    assert_eq!(out, ["new-version"]);
    assert_eq!(ran.as_deref(), Some(v2.as_str()));

    // Keeping the run's version runs the old command again.
    clear(&url, dir.path(), true);
    assert_eq!(run_finished(&store, &run).await.state, RunState::Failed);
    let (ti, out, ran) = last_try(&store, &run).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Failed, 3));
    assert_eq!(out, ["old-version"]);
    assert_eq!(ran.as_deref(), Some(v1.as_str()));

    // And the next plain clear is back on the current version.
    clear(&url, dir.path(), false);
    assert_eq!(run_finished(&store, &run).await.state, RunState::Success);
    let (ti, out, ran) = last_try(&store, &run).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Success, 4));
    assert_eq!(out, ["new-version"]);
    assert_eq!(ran.as_deref(), Some(v2.as_str()));

    worker.stop().await;
    scheduler.stop().await;
}
