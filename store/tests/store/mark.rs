//! Marking task instances: the preview and the action are one plan, instances already in
//! the target state are skipped, and the action is one transaction (all or nothing).

use nightshift_core::dag::{parse_dag, Dag};
use nightshift_core::plan::{evaluate_run, Action, ClearSelection};
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_store::{
    instance_views, DagRun, MarkRequest, NewTaskInstance, PlannedChange, Store, StoreError,
    TaskInstance,
};

use crate::common::{both_backends, finish_run, new_ti, seed_run, t};

both_backends!(
    marking_failed_keeps_the_try_times_and_resets_the_downstream_that_ran,
    marking_success_lists_and_resets_the_upstream_failed_downstream,
    clear_and_cancel_plans_are_what_they_apply,
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

/// a → b → {c, d}; d runs whatever b's outcome (`all_done`, a cleanup).
const CHAIN_TOML: &str = r#"
[tasks.a]
type = "noop"

[tasks.b]
type = "noop"
depends_on = ["a"]

[tasks.c]
type = "noop"
depends_on = ["b"]

[tasks.d]
type = "noop"
depends_on = ["b"]
trigger_rule = "all_done"
"#;

/// A finished run of the chain: `b` really ran (claimed at 03:00:05, finished `b_state`
/// at 03:00:05 — a 0 s try), the others are seeded in `others` (a, c, d).
async fn chain_run(
    store: &Store,
    b_state: TaskState,
    others: [TaskState; 3],
    run: RunState,
) -> DagRun {
    let [a, c, d] = others;
    let tasks = [
        new_ti("a", a),
        new_ti("b", TaskState::Queued),
        new_ti("c", c),
        new_ti("d", d),
    ];
    let seeded = seed_run(store, "chain", &tasks).await;
    let now = t("2026-01-02T03:00:05Z");
    let mut claimed = store
        .claim(&nightshift_testkit::claim_request("w1", now))
        .await
        .expect("claim");
    let b = claimed.pop().expect("b is claimed");
    b.finish(nightshift_store::TryOutcome {
        new_state: b_state,
        ..nightshift_testkit::success(now)
    })
    .await
    .expect("finish b");
    finish_run(store, seeded.id, run, now).await
}

fn changes(plan: &[PlannedChange]) -> Vec<(String, TaskState, TaskState)> {
    plan.iter()
        .map(|c| (c.instance.task_id.clone(), c.instance.state, c.to))
        .collect()
}

fn request(task_id: &str, state: TaskState) -> MarkRequest {
    MarkRequest {
        task_id: task_id.to_owned(),
        map_index: None,
        state,
        dry_run: false,
        now: t("2026-01-02T03:03:15Z"),
    }
}

async fn marking_failed_keeps_the_try_times_and_resets_the_downstream_that_ran(store: Store) {
    let dag = parse_dag("dags/chain.toml", CHAIN_TOML).expect("valid DAG");
    let success = TaskState::Success;
    let run = chain_run(&store, success, [success; 3], RunState::Success).await;
    let before = get(&store, &run, "b", -1).await;
    assert_eq!(before.start_date, before.end_date, "a 0 s try");

    let plan = store
        .plan_mark(&dag, &run, &request("b", TaskState::Failed))
        .await
        .expect("plan");
    let pending = TaskState::Pending;
    assert_eq!(
        changes(&plan.changes()),
        [
            ("b".to_owned(), success, TaskState::Failed),
            ("c".to_owned(), success, pending),
            ("d".to_owned(), success, pending),
        ],
        "the downstream that ran as if b were fine goes back to its trigger rule; a is upstream"
    );
    let written = store.apply_mark(&plan).await.expect("apply");
    let states: Vec<(String, TaskState)> = written
        .iter()
        .map(|ti| (ti.task_id.clone(), ti.state))
        .collect();
    assert_eq!(
        states,
        [
            ("b".to_owned(), TaskState::Failed),
            ("c".to_owned(), pending),
            ("d".to_owned(), pending),
        ],
        "apply returns every instance it wrote, marks first"
    );

    let after = get(&store, &run, "b", -1).await;
    assert_eq!(after.state, TaskState::Failed);
    assert_eq!(
        (after.start_date, after.end_date),
        (before.start_date, before.end_date),
        "the try's recorded times stay (a 0 s task does not become 3m 10s)"
    );
    let attempts = store.list_attempts(after.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].end_date, before.end_date,
        "the attempt keeps its end"
    );
    for task in ["c", "d"] {
        assert_eq!(get(&store, &run, task, -1).await.state, pending, "{task}");
    }
    let reopened = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(
        reopened.state,
        RunState::Running,
        "the run is decided again"
    );

    // What the scheduler then decides: c (all_success) is upstream_failed, the cleanup d
    // runs; once d is done the run's outcome is failed (its leaf c is upstream_failed).
    let instances = store.list_task_instances(run.id).await.expect("list");
    let views = instance_views(&instances);
    let decided = evaluate_run(&dag, &views, t("2026-01-02T03:03:16Z"));
    let events: Vec<(String, TaskEvent)> = decided
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::Transition { id, event, .. } => instances
                .iter()
                .find(|ti| ti.id == *id)
                .map(|ti| (ti.task_id.clone(), *event)),
            Action::Expand { .. } => None,
        })
        .collect();
    assert_eq!(
        events,
        [
            ("c".to_owned(), TaskEvent::UpstreamFailed),
            ("d".to_owned(), TaskEvent::Schedule),
        ]
    );
    let mut settled = views.clone();
    for view in &mut settled {
        view.state = match view.task_id.as_str() {
            "c" => TaskState::UpstreamFailed,
            "d" => TaskState::Success,
            _ => view.state,
        };
    }
    let outcome = evaluate_run(&dag, &settled, t("2026-01-02T03:03:20Z")).outcome;
    assert_eq!(outcome, Some(RunState::Failed));
}

async fn marking_success_lists_and_resets_the_upstream_failed_downstream(store: Store) {
    let dag = parse_dag("dags/chain.toml", CHAIN_TOML).expect("valid DAG");
    let others = [
        TaskState::Success,
        TaskState::UpstreamFailed,
        TaskState::Success,
    ];
    let run = chain_run(&store, TaskState::Failed, others, RunState::Failed).await;
    let before = get(&store, &run, "b", -1).await;

    let preview = store
        .plan_mark(&dag, &run, &request("b", TaskState::Success))
        .await
        .expect("plan");
    assert_eq!(
        changes(&preview.changes()),
        [
            ("b".to_owned(), TaskState::Failed, TaskState::Success),
            (
                "c".to_owned(),
                TaskState::UpstreamFailed,
                TaskState::Pending
            ),
        ],
        "the preview lists the upstream_failed downstream it resets; d ran and keeps its outcome"
    );
    // The action is the same plan: exactly the listed instances change.
    let all_before = store.list_task_instances(run.id).await.expect("list");
    store
        .mark_task_instances(&dag, &run, &request("b", TaskState::Success))
        .await
        .expect("mark");
    let all_after = store.list_task_instances(run.id).await.expect("list");
    let changed: Vec<String> = all_before
        .iter()
        .zip(&all_after)
        .filter(|(b, a)| b.state != a.state)
        .map(|(b, _)| b.task_id.clone())
        .collect();
    assert_eq!(changed, ["b", "c"]);
    let after = get(&store, &run, "b", -1).await;
    assert_eq!(after.state, TaskState::Success);
    assert_eq!(
        after.end_date, before.end_date,
        "the failed try's end stays"
    );
}

async fn clear_and_cancel_plans_are_what_they_apply(store: Store) {
    let dag = parse_dag("dags/chain.toml", CHAIN_TOML).expect("valid DAG");
    let others = [
        TaskState::Success,
        TaskState::UpstreamFailed,
        TaskState::Running,
    ];
    let run = chain_run(&store, TaskState::Failed, others, RunState::Failed).await;
    let selection = ClearSelection {
        task_ids: vec!["b".to_owned()],
        only_failed: true,
        ..ClearSelection::default()
    };
    let now = t("2026-01-02T03:10:00Z");
    let plan = store
        .plan_clear(&dag, &run, &selection, now)
        .await
        .expect("plan");
    let pending = TaskState::Pending;
    assert_eq!(
        changes(plan.changes()),
        [
            ("b".to_owned(), TaskState::Failed, pending),
            ("c".to_owned(), TaskState::UpstreamFailed, pending),
        ]
    );
    let cleared = store.apply_clear(&plan).await.expect("apply");
    assert_eq!(keys(&cleared), [("b".to_owned(), -1), ("c".to_owned(), -1)]);
    // Applying the same plan again is stale: nothing is cleared twice.
    let err = store.apply_clear(&plan).await.expect_err("stale");
    assert!(matches!(err, StoreError::Stale { .. }), "{err:?}");

    // Cancelling: the plan lists the unfinished instances and what they become.
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    let cancel = store.plan_cancel(&run).await.expect("plan cancel");
    let listed = changes(&cancel);
    assert_eq!(
        listed,
        [
            ("b".to_owned(), pending, TaskState::Skipped),
            ("c".to_owned(), pending, TaskState::Skipped),
            ("d".to_owned(), TaskState::Running, TaskState::Failed),
        ]
    );
    store.cancel_run(&run, now).await.expect("cancel");
    for (task, _, to) in listed {
        assert_eq!(get(&store, &run, &task, -1).await.state, to, "{task}");
    }
}
