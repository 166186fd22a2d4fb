//! Missed deadlines: recorded once per run and per task however often they are reported
//! (the run's own with a NULL task too), the callback only with the first record, and the
//! reads the scheduler's check and the UI use.

use nightshift_core::dag::Callback;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{CallbackEvent, CallbackKind, NewCallback, NewDeadlineMiss, Store};
use serde_json::json;

use crate::common::{both_backends, finish_run, new_ti, seed_run, t};

both_backends!(
    a_miss_is_recorded_once_with_its_callback,
    unfinished_runs_task_progress_and_late_dags,
);

fn miss(run: i64, task_id: Option<&str>, with_callback: bool) -> NewDeadlineMiss {
    let now = t("2026-01-02T09:00:01Z");
    NewDeadlineMiss {
        run,
        dag_id: "d".to_owned(),
        task_id: task_id.map(str::to_owned),
        deadline: "at 09:00 (UTC)".to_owned(),
        due_at: t("2026-01-02T09:00:00Z"),
        failed: false,
        now,
        callback: with_callback.then(|| NewCallback {
            kind: CallbackKind::DagRun,
            event: CallbackEvent::DeadlineMissed,
            dag_id: "d".to_owned(),
            run_id: "r".to_owned(),
            task_id: task_id.map(str::to_owned),
            map_index: -1,
            try_number: 0,
            callback: Callback::Slack {
                webhook: "http://hooks.test/late".to_owned(),
            },
            payload: json!({"state": "running", "error": null}),
            now,
        }),
    }
}

async fn a_miss_is_recorded_once_with_its_callback(store: Store) {
    let run = seed_run(&store, "d", &[new_ti("a", TaskState::Pending)]).await;
    for task in [None, Some("a")] {
        let first = store
            .record_deadline_miss(&miss(run.id, task, true))
            .await
            .expect("record");
        let first = first.expect("recorded");
        assert_eq!(first.task_id.as_deref(), task);
        assert_eq!(first.due_at, t("2026-01-02T09:00:00Z"));
        for _ in 0..3 {
            let again = store
                .record_deadline_miss(&miss(run.id, task, true))
                .await
                .expect("record");
            assert_eq!(again, None);
        }
    }
    let misses = store.deadline_misses(run.id).await.expect("misses");
    let tasks: Vec<Option<&str>> = misses.iter().map(|m| m.task_id.as_deref()).collect();
    assert_eq!(tasks, [None, Some("a")]);
    // One callback per recorded miss, none for the repeats.
    let callbacks = store
        .list_callbacks(Some("d"), 50)
        .await
        .expect("callbacks");
    assert_eq!(callbacks.len(), 2, "{callbacks:?}");
    assert!(callbacks
        .iter()
        .all(|c| c.event == CallbackEvent::DeadlineMissed));
    let of_runs = store
        .deadline_misses_of_runs(&[run.id, run.id + 1000])
        .await
        .expect("misses of runs");
    assert_eq!(of_runs, misses);
}

async fn unfinished_runs_task_progress_and_late_dags(store: Store) {
    let run = seed_run(
        &store,
        "d",
        &[
            new_ti("a", TaskState::Pending),
            new_ti("b", TaskState::Success),
        ],
    )
    .await;
    let ids = ["d".to_owned(), "other".to_owned()];
    let unfinished = store.unfinished_runs_of(&ids, 10).await.expect("runs");
    assert_eq!(
        unfinished.iter().map(|r| r.id).collect::<Vec<_>>(),
        [run.id]
    );
    let progress = store
        .task_progress(run.id, &["a".to_owned(), "b".to_owned(), "zz".to_owned()])
        .await
        .expect("progress");
    let seen: Vec<(&str, Option<_>, i64)> = progress
        .iter()
        .map(|p| (p.task_id.as_str(), p.first_start, p.unfinished))
        .collect();
    assert_eq!(seen, [("a", None, 1), ("b", None, 0)]);
    assert!(store.late_dags().await.expect("late").is_empty());
    store
        .record_deadline_miss(&miss(run.id, None, false))
        .await
        .expect("record");
    assert_eq!(store.late_dags().await.expect("late"), ["d"]);
    // A finished run is no longer a candidate, and its DAG no longer late.
    finish_run(&store, run.id, RunState::Failed, t("2026-01-02T10:00:00Z")).await;
    assert!(store
        .unfinished_runs_of(&ids, 10)
        .await
        .expect("runs")
        .is_empty());
    assert!(store.late_dags().await.expect("late").is_empty());
}
