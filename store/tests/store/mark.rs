//! Marking task instances: the preview and the action are one plan, instances already in
//! the target state are skipped, and the action is one transaction (all or nothing).

use nightshift_core::dag::{parse_dag, Dag};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, MarkRequest, NewTaskInstance, Store, StoreError, TaskInstance};

use crate::common::{both_backends, finish_run, new_ti, seed_run, t};

both_backends!(
    preview_and_action_agree_when_some_are_already_marked,
    a_mark_that_fails_half_way_changes_nothing,
    unknown_task_and_state_are_refused,
);

const DAG_TOML: &str = r#"
[tasks.extract]
type = "noop"
for_each = ["a", "b", "c"]

[tasks.load]
type = "noop"
depends_on = ["extract"]
"#;

fn dag() -> Dag {
    parse_dag("dags/marks.toml", DAG_TOML).expect("valid DAG")
}

fn mapped(map_index: i32, state: TaskState) -> NewTaskInstance {
    NewTaskInstance {
        map_index,
        ..new_ti("extract", state)
    }
}

/// A failed run: `extract[0]` succeeded, `extract[1]` failed, `extract[2]` was skipped,
/// and `load` never ran (`upstream_failed`).
async fn failed_run(store: &Store) -> DagRun {
    let tasks = [
        mapped(0, TaskState::Success),
        mapped(1, TaskState::Failed),
        mapped(2, TaskState::Skipped),
        new_ti("load", TaskState::UpstreamFailed),
    ];
    let run = seed_run(store, "marks", &tasks).await;
    let now = t("2026-01-02T03:00:00Z");
    finish_run(store, run.id, RunState::Failed, now).await
}

fn mark_success(dry_run: bool) -> MarkRequest {
    MarkRequest {
        task_id: "extract".to_owned(),
        map_index: None,
        state: TaskState::Success,
        dry_run,
        now: t("2026-01-02T05:00:00Z"),
    }
}

fn keys(instances: &[TaskInstance]) -> Vec<(String, i32)> {
    instances
        .iter()
        .map(|ti| (ti.task_id.clone(), ti.map_index))
        .collect()
}

/// Marks extract success (all its instances) in `run`, or only previews that with
/// `dry_run`; an instance already successful is skipped, not an error.
async fn mark(store: &Store, dag: &Dag, run: &DagRun, dry_run: bool) -> Vec<TaskInstance> {
    let request = mark_success(dry_run);
    let marked = store.mark_task_instances(dag, run, &request).await;
    marked.unwrap_or_else(|e| panic!("mark (dry run {dry_run}): {e}"))
}

/// The error that a mark (or its preview) `request` is refused with.
async fn refused(store: &Store, dag: &Dag, run: &DagRun, request: &MarkRequest) -> StoreError {
    let result = store.mark_task_instances(dag, run, request).await;
    result.expect_err("the mark is refused")
}

async fn get(store: &Store, run: &DagRun, task_id: &str, map_index: i32) -> TaskInstance {
    store
        .find_task_instance(run.id, task_id, map_index)
        .await
        .expect("find")
        .expect("instance exists")
}

async fn preview_and_action_agree_when_some_are_already_marked(store: Store) {
    let dag = dag();
    let run = failed_run(&store).await;
    let before = store.list_task_instances(run.id).await.expect("list");

    let preview = mark(&store, &dag, &run, true).await;
    let expected = vec![("extract".to_owned(), 1), ("extract".to_owned(), 2)];
    assert_eq!(
        keys(&preview),
        expected,
        "the successful instance is skipped"
    );
    assert_eq!(
        store.list_task_instances(run.id).await.expect("list"),
        before,
        "a preview writes nothing"
    );

    let marked = mark(&store, &dag, &run, false).await;
    assert_eq!(
        keys(&marked),
        keys(&preview),
        "the action applies the preview"
    );
    assert!(marked.iter().all(|ti| ti.state == TaskState::Success));
    assert_eq!(
        get(&store, &run, "extract", 0).await,
        before[0],
        "the instance already in the target state is left untouched"
    );
    assert_eq!(
        get(&store, &run, "load", -1).await.state,
        TaskState::Pending,
        "the downstream that never ran is reset to run now"
    );
    let run_now = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(
        run_now.state,
        RunState::Running,
        "the failed run is reopened"
    );

    // Everything is in the target state now: both list nothing, neither fails.
    let preview = mark(&store, &dag, &run, true).await;
    assert!(preview.is_empty(), "{preview:?}");
    let marked = mark(&store, &dag, &run, false).await;
    assert!(marked.is_empty(), "{marked:?}");
}

async fn a_mark_that_fails_half_way_changes_nothing(store: Store) {
    let dag = dag();
    let run = failed_run(&store).await;
    let before = store.list_task_instances(run.id).await.expect("list");
    let plan = store
        .plan_mark(&dag, &run, &mark_success(false))
        .await
        .expect("plan");
    assert_eq!(
        keys(plan.marks()),
        [("extract".to_owned(), 1), ("extract".to_owned(), 2)]
    );

    // Another person marks extract[2] failed between the plan and its application: the
    // plan's compare-and-set on it (still `skipped`) must lose, after extract[1]'s won.
    let concurrent = MarkRequest {
        map_index: Some(2),
        state: TaskState::Failed,
        ..mark_success(false)
    };
    let changed = store
        .mark_task_instances(&dag, &run, &concurrent)
        .await
        .expect("concurrent mark");
    assert_eq!(keys(&changed), [("extract".to_owned(), 2)]);
    let after_concurrent = store.list_task_instances(run.id).await.expect("list");
    let run_after_concurrent = nightshift_testkit::dag_run(&store, run.id).await;

    let err = store.apply_mark(&plan).await.expect_err("a stale plan");
    assert!(matches!(err, StoreError::Stale { .. }), "{err:?}");
    assert_eq!(
        store.list_task_instances(run.id).await.expect("list"),
        after_concurrent,
        "no instance changed: not extract[1] (marked before the conflict), not load"
    );
    assert_eq!(after_concurrent[1], before[1], "extract[1] is still failed");
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await,
        run_after_concurrent,
        "the run is not reopened either"
    );
}

async fn unknown_task_and_state_are_refused(store: Store) {
    let dag = dag();
    let run = failed_run(&store).await;
    let before = store.list_task_instances(run.id).await.expect("list");
    let nope = MarkRequest {
        task_id: "nope".to_owned(),
        ..mark_success(false)
    };
    // No such task.
    let err = refused(&store, &dag, &run, &nope).await;
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let running = MarkRequest {
        state: TaskState::Running,
        ..mark_success(false)
    };
    // Only success or failed.
    let err = refused(&store, &dag, &run, &running).await;
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(
        store.list_task_instances(run.id).await.expect("list"),
        before
    );
}
