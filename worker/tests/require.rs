//! The `require` kind against a real store on both backends, one look at a time: racing
//! requirers create the missing run once, `rerun_on` re-runs a finished run once per try
//! (on its first look only), a failed required run fails the try with its run id and
//! state, and a DAG that is unknown or removed ends the try at once.

mod kinds_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{IfMissing, RequireTask, RerunOn};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, RunType, Store, TriggerParams};
use nightshift_testkit::{both_backends, force_state, seed_dag, t};
use nightshift_worker::kind::require::{self, RequireSpec, RequiredRuns};
use nightshift_worker::kind::{ExternalJob, Outcome, TaskContext};

both_backends!(
    racing_requirers_create_the_missing_run_once,
    rerun_on_failed_reruns_once_per_try,
    a_failed_required_run_fails_the_try_with_its_id_and_state,
    an_unknown_or_removed_dag_ends_the_try,
);

const EXTRACT: &str =
    "schedule = \"@daily\"\n[tasks.load]\ntype = \"command\"\ncommand = \"true\"\n";

fn day() -> DateTime<Utc> {
    t("2026-01-01T00:00:00Z")
}

fn spec(store: &Store, dag: &str, if_missing: IfMissing, rerun_on: RerunOn) -> RequireSpec {
    RequireSpec {
        task: RequireTask {
            dag: dag.into(),
            logical_date: Some(day().to_rfc3339()),
            task: None,
            if_missing,
            rerun_on,
            ignore_failure: false,
            poke_interval: Duration::from_secs(30),
        },
        runs: Some(RequiredRuns::new(store.clone())),
    }
}

/// A context whose external ids are collected in the returned list.
fn context(wakes: u32) -> (TaskContext, Arc<Mutex<Vec<String>>>) {
    let (mut ctx, _log) = kinds_common::context(Some(Duration::from_secs(3600)));
    ctx.wakes = wakes;
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let sink = recorded.clone();
    ctx.external = ExternalJob::new(
        None,
        None,
        Arc::new(Default::default()),
        Arc::new(move |id: String| {
            if let Ok(mut ids) = sink.lock() {
                ids.push(id);
            }
            Box::pin(async { Ok(()) })
        }),
    );
    (ctx, recorded)
}

async fn extract_runs(store: &Store) -> Vec<DagRun> {
    store
        .list_runs(&nightshift_store::RunFilter {
            dag_id: Some("extract".into()),
            ..Default::default()
        })
        .await
        .expect("runs")
}

/// A finished run of extract at `day()` whose one task ended in `state`.
async fn finished_extract(store: &Store, state: TaskState, run_state: RunState) -> DagRun {
    let dag = seed_dag(store, "dags/extract.toml", EXTRACT).await;
    let run = store
        .trigger_run(
            &dag,
            &TriggerParams {
                run_id: None,
                logical_date: Some(day()),
                data_interval: None,
                conf: serde_json::Value::Null,
                run_type: RunType::Manual,
                now: Utc::now(),
            },
        )
        .await
        .expect("trigger");
    for ti in store.list_task_instances(run.id).await.expect("instances") {
        force_state(store, ti.id, state).await;
    }
    store
        .set_run_state(run.id, RunState::Queued, run_state, Utc::now())
        .await
        .expect("finish the run")
}

/// The done-when: several requirers that find no run all create it at once; exactly one
/// creates it, every one takes that run (and records it as its external id).
async fn racing_requirers_create_the_missing_run_once(store: Store) {
    let dag = seed_dag(&store, "dags/extract.toml", EXTRACT).await;
    let runs = RequiredRuns::new(store.clone());
    let created =
        futures_util::future::join_all((0..8).map(|_| runs.create(&dag, day(), Utc::now()))).await;
    let created: Vec<(DagRun, bool)> = created.into_iter().map(|r| r.expect("create")).collect();
    assert_eq!(
        created.iter().filter(|(_, new)| *new).count(),
        1,
        "{created:#?}"
    );
    assert!(created.iter().all(|(run, _)| run.id == created[0].0.id));
    let run = &created[0].0;
    assert_eq!(run.run_id, "required__2026-01-01T00:00:00+00:00");
    // The data interval is the one the schedule gives that date: this is that day's run.
    assert_eq!(
        (run.data_interval_start, run.data_interval_end),
        (day(), t("2026-01-02T00:00:00Z"))
    );
    assert_eq!(
        store
            .list_task_instances(run.id)
            .await
            .expect("instances")
            .len(),
        1
    );

    // Through the kind: two requirers of another date race; one run, both wait on it.
    let mut later = spec(&store, "extract", IfMissing::Trigger, RerunOn::None);
    later.task.logical_date = Some(t("2026-01-05T00:00:00Z").to_rfc3339());
    let (a, a_ids) = context(0);
    let (b, b_ids) = context(0);
    let (oa, ob) = tokio::join!(require::run(&later, &a), require::run(&later, &b));
    for outcome in [&oa, &ob] {
        assert!(matches!(outcome, Outcome::Reschedule { .. }), "{outcome:?}");
    }
    assert_eq!(extract_runs(&store).await.len(), 2);
    let key = "extract/required__2026-01-05T00:00:00+00:00".to_owned();
    assert_eq!(*a_ids.lock().expect("ids"), vec![key.clone()]);
    assert_eq!(*b_ids.lock().expect("ids"), vec![key]);
}

/// `rerun_on = "failed"`: the first look of a try at a failed run clears its failed
/// instances (the run reopens) and waits; a later look of the same try at a run that
/// failed again takes the failure instead of re-running it on every poke.
async fn rerun_on_failed_reruns_once_per_try(store: Store) {
    let run = finished_extract(&store, TaskState::Failed, RunState::Failed).await;
    let spec = spec(&store, "extract", IfMissing::Wait, RerunOn::Failed);

    let (first, _) = context(0);
    let outcome = require::run(&spec, &first).await;
    assert!(
        matches!(&outcome, Outcome::Reschedule { reason, .. } if reason.contains("runs again")),
        "{outcome:?}"
    );
    let reopened = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(reopened.state, RunState::Running);
    let instances = store.list_task_instances(run.id).await.expect("instances");
    assert_eq!(instances[0].state, TaskState::Pending);

    // It fails again; the same try, woken, takes that result.
    force_state(&store, instances[0].id, TaskState::Failed).await;
    store
        .set_run_state(run.id, RunState::Running, RunState::Failed, Utc::now())
        .await
        .expect("fail the run");
    let (woken, _) = context(1);
    let outcome = require::run(&spec, &woken).await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(retryable);
    assert!(error.contains(&format!("(id {})", run.id)), "{error}");
    assert_eq!(
        store.list_task_instances(run.id).await.expect("instances")[0].state,
        TaskState::Failed,
        "not re-run on a later look"
    );

    // rerun_on = "all" re-runs a run that succeeded; "none" takes its result.
    force_state(&store, instances[0].id, TaskState::Success).await;
    store
        .set_run_state(run.id, RunState::Failed, RunState::Running, Utc::now())
        .await
        .and(
            store
                .set_run_state(run.id, RunState::Running, RunState::Success, Utc::now())
                .await,
        )
        .expect("succeed the run");
    let (ctx, _) = context(0);
    let none = require::run(
        &self::spec(&store, "extract", IfMissing::Wait, RerunOn::None),
        &ctx,
    )
    .await;
    assert!(matches!(none, Outcome::Success { .. }), "{none:?}");
    let all = require::run(
        &self::spec(&store, "extract", IfMissing::Wait, RerunOn::All),
        &ctx,
    )
    .await;
    assert!(matches!(all, Outcome::Reschedule { .. }), "{all:?}");
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Running
    );
}

async fn a_failed_required_run_fails_the_try_with_its_id_and_state(store: Store) {
    let run = finished_extract(&store, TaskState::Failed, RunState::Failed).await;
    let (ctx, ids) = context(0);
    let outcome = require::run(
        &spec(&store, "extract", IfMissing::Trigger, RerunOn::None),
        &ctx,
    )
    .await;
    let (error, _) = kinds_common::failure(&outcome);
    assert_eq!(
        error,
        format!(
            "the required run extract/manual__2026-01-01T00:00:00+00:00 (id {}) ended failed",
            run.id
        )
    );
    assert_eq!(
        *ids.lock().expect("ids"),
        vec!["extract/manual__2026-01-01T00:00:00+00:00".to_owned()]
    );
    // ignore_failure takes it as done.
    let mut ignoring = spec(&store, "extract", IfMissing::Wait, RerunOn::None);
    ignoring.task.ignore_failure = true;
    let outcome = require::run(&ignoring, &ctx).await;
    let output = kinds_common::output(&outcome, &[]);
    assert_eq!(output["state"], "failed");
}

async fn an_unknown_or_removed_dag_ends_the_try(store: Store) {
    let (ctx, _) = context(0);
    let outcome = require::run(&spec(&store, "nope", IfMissing::Wait, RerunOn::None), &ctx).await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(!retryable);
    assert!(error.starts_with("DAG nope is not known"), "{error}");

    // Its file was removed from the DAG folder: its run will never come.
    seed_dag(&store, "dags/extract.toml", EXTRACT).await;
    store
        .mark_inactive_except(&[], Utc::now())
        .await
        .expect("deactivate");
    let outcome = require::run(
        &spec(&store, "extract", IfMissing::Trigger, RerunOn::None),
        &ctx,
    )
    .await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(!retryable);
    assert_eq!(
        error,
        "DAG extract is no longer loaded (its file was removed from the DAG folder), so its run at 2026-01-01T00:00:00+00:00 will not come"
    );
    assert!(extract_runs(&store).await.is_empty());
}
