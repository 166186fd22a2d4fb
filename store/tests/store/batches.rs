//! The statements that do many rows' work at once: batched transitions, batched claims,
//! reading only a run's changed instances, and a try's log and rendered fields stored
//! with its outcome.

use std::time::Duration;

use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{
    ChangeMark, ClaimRequest, InstanceChanges, LogLine, NewTaskInstance, Store, Transition,
    TryOutcome, TryProgress,
};
use serde_json::json;

use crate::common::{both_backends, first_try, new_ti, seed_run, t};

both_backends!(
    transition_all_is_a_compare_and_set_per_instance,
    a_claim_returns_attempts_runs_and_the_dag_hash,
    instance_changes_return_only_what_changed,
    progress_and_the_outcome_store_logs_and_rendered_fields,
);

fn instances(n: usize) -> Vec<NewTaskInstance> {
    (0..n)
        .map(|i| new_ti(&format!("t{i:02}"), TaskState::Pending))
        .collect()
}

async fn transition_all_is_a_compare_and_set_per_instance(store: Store) {
    let run = seed_run(&store, "d", &instances(6)).await;
    let tis = store.list_task_instances(run.id).await.expect("list");
    let now = t("2026-01-02T03:00:05Z");
    // t01 moves on before the batch: its compare-and-set in the batch loses.
    store
        .transition(
            &Transition::on(tis[1].id, TaskState::Pending, 0, TaskEvent::Skip, now).expect("legal"),
        )
        .await
        .expect("skip t01");
    let schedule = |i: usize| {
        Transition::on(tis[i].id, TaskState::Pending, 0, TaskEvent::Schedule, now).expect("legal")
    };
    let batch = vec![
        schedule(0),
        schedule(1),
        // A wrong try number loses.
        Transition::on(tis[2].id, TaskState::Pending, 3, TaskEvent::Schedule, now).expect("legal"),
        schedule(3),
        // Another kind of change in the same batch.
        Transition::on(
            tis[4].id,
            TaskState::Pending,
            0,
            TaskEvent::UpstreamFailed,
            now,
        )
        .expect("legal"),
        schedule(5).queued_at(nightshift_store::Patch::Set(now)),
    ];
    let applied = store.transition_all(&batch).await.expect("batch");
    assert_eq!(applied, [true, false, false, true, true, true]);
    let listed = store.list_task_instances(run.id).await.expect("list");
    let states: Vec<(String, TaskState)> = listed
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect();
    assert_eq!(
        states,
        [
            ("t00".to_owned(), TaskState::Scheduled),
            ("t01".to_owned(), TaskState::Skipped),
            ("t02".to_owned(), TaskState::Pending),
            ("t03".to_owned(), TaskState::Scheduled),
            ("t04".to_owned(), TaskState::UpstreamFailed),
            ("t05".to_owned(), TaskState::Scheduled),
        ]
    );
    let t05 = nightshift_testkit::instance(&store, tis[5].id).await;
    assert_eq!(t05.queued_at, Some(now));
    assert_eq!(
        store.transition_all(&[]).await.expect("empty"),
        Vec::<bool>::new()
    );
}

async fn queue_all(store: &Store, run: i64, now: chrono::DateTime<chrono::Utc>) {
    let tis = store.list_task_instances(run).await.expect("list");
    // Pending, then scheduled, then queued: one batch per event.
    for (from, event) in [
        (TaskState::Pending, TaskEvent::Schedule),
        (TaskState::Scheduled, TaskEvent::Queue),
    ] {
        let ts: Vec<Transition> = tis
            .iter()
            .map(|ti| Transition::on(ti.id, from, 0, event, now).expect("legal"))
            .collect();
        assert!(store
            .transition_all(&ts)
            .await
            .expect("queue")
            .iter()
            .all(|a| *a));
    }
}

/// Worker `w1` claims up to `limit` tries from the default queue.
async fn claim(
    store: &Store,
    limit: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<nightshift_store::RunningTry> {
    store
        .claim(&ClaimRequest {
            worker_id: "w1".to_owned(),
            hostname: "w1.example".to_owned(),
            queues: vec!["default".to_owned()],
            limit,
            lease: Duration::from_secs(60),
            now,
        })
        .await
        .expect("claim")
}

async fn a_claim_returns_attempts_runs_and_the_dag_hash(store: Store) {
    let run = seed_run(&store, "d", &instances(5)).await;
    let now = t("2026-01-02T03:00:05Z");
    queue_all(&store, run.id, now).await;
    let claimed = claim(&store, 4, now).await;
    assert_eq!(claimed.len(), 4);
    for c in &claimed {
        assert_eq!(c.run().id, run.id);
        assert_eq!(c.dag_hash(), Some("hash-1"));
        let attempt = first_try(&store, c).await;
        assert_eq!(attempt.worker, "w1");
        assert_eq!(attempt.state, TaskState::Running);
    }
    let ids: std::collections::HashSet<i64> = claimed.iter().map(|c| c.attempt_id()).collect();
    assert_eq!(ids.len(), 4, "one attempt row per try");
}

/// The run's instances changed since `mark` (all of them without one).
async fn changes(store: &Store, run: i64, mark: Option<ChangeMark>) -> InstanceChanges {
    let changes = store.instance_changes(run, mark).await;
    changes.unwrap_or_else(|e| panic!("changes since {mark:?}: {e}"))
}

async fn instance_changes_return_only_what_changed(store: Store) {
    let run = seed_run(&store, "d", &instances(4)).await;
    let tis = store.list_task_instances(run.id).await.expect("list");
    let now = t("2026-01-02T03:00:05Z");
    let first = changes(&store, run.id, None).await;
    assert!(first.complete);
    let ids: Vec<i64> = first.views.iter().map(|v| v.id).collect();
    assert_eq!(ids, tis.iter().map(|ti| ti.id).collect::<Vec<_>>());

    store
        .transition(
            &Transition::on(tis[2].id, TaskState::Pending, 0, TaskEvent::Schedule, now)
                .expect("legal"),
        )
        .await
        .expect("schedule t02");
    let second = changes(&store, run.id, first.mark).await;
    let changed = |views: &[nightshift_core::plan::InstanceView]| {
        views
            .iter()
            .filter(|v| v.state != TaskState::Pending)
            .map(|v| (v.task_id.clone(), v.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        changed(&second.views),
        [("t02".to_owned(), TaskState::Scheduled)]
    );
    let Some(pool) = store.pg_pool() else {
        // SQLite reads the whole run every time.
        assert!(second.complete && second.mark.is_none());
        assert_eq!(second.views.len(), 4);
        return;
    };
    // Only rows changed since the mark; how many more depends on the transactions other
    // sessions of the server had open at the last read, so only the flag is certain.
    assert!(!second.complete);

    // A transaction that started before a read and commits after it is in the next one.
    let mut late = pool.begin().await.expect("begin");
    sqlx::query("UPDATE task_instances SET state = 'skipped' WHERE id = $1")
        .bind(tis[0].id)
        .execute(&mut *late)
        .await
        .expect("update");
    let third = changes(&store, run.id, second.mark).await;
    assert!(changed(&third.views).iter().all(|(task, _)| task != "t00"));
    late.commit().await.expect("commit");
    let fourth = changes(&store, run.id, third.mark).await;
    assert!(
        changed(&fourth.views).contains(&("t00".to_owned(), TaskState::Skipped)),
        "{:?}",
        fourth.views
    );
    // New instances are changes too.
    store
        .add_task_instances(&run, &[new_ti("t99", TaskState::Pending)], now)
        .await
        .expect("add");
    let fifth = changes(&store, run.id, fourth.mark).await;
    assert!(!fifth.complete);
    assert!(fifth.views.iter().any(|v| v.task_id == "t99"));
}

async fn progress_and_the_outcome_store_logs_and_rendered_fields(store: Store) {
    let run = seed_run(&store, "d", &instances(1)).await;
    let now = t("2026-01-02T03:00:05Z");
    queue_all(&store, run.id, now).await;
    let claimed = claim(&store, 1, now).await.pop().expect("one");
    let lease = claimed.lease().clone();
    let line = |text: &str| LogLine {
        ts: now,
        stream: "stdout".to_owned(),
        line: text.to_owned(),
    };
    let progress = TryProgress {
        logs: vec![line("one"), line("two")],
        rendered: Some(json!({"command": ["echo", "one"]})),
    };
    assert!(claimed
        .store_progress(&progress, now)
        .await
        .expect("progress"));
    let ti = store
        .get_task_instance(lease.ti_id())
        .await
        .expect("get")
        .expect("ti");
    assert_eq!(ti.rendered, Some(json!({"command": ["echo", "one"]})));

    claimed
        .finish(TryOutcome {
            progress: TryProgress {
                logs: vec![line("three")],
                rendered: None,
            },
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("finish");
    // After the outcome the lease is gone: rendered fields are refused, lines kept (a
    // try's last words belong in its log).
    let refused = TryProgress {
        logs: vec![line("four")],
        rendered: Some(json!({"command": ["rm", "-rf"]})),
    };
    assert!(!lease.store_progress(&refused, now).await.expect("refused"));
    let ti = store
        .get_task_instance(lease.ti_id())
        .await
        .expect("get")
        .expect("ti");
    assert_eq!(ti.state, TaskState::Success);
    assert_eq!(
        ti.rendered,
        Some(json!({"command": ["echo", "one"]})),
        "kept when the outcome brings none"
    );
    let lines: Vec<String> = store
        .read_logs(lease.ti_id(), lease.try_number(), 0, 100)
        .await
        .expect("logs")
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["one", "two", "three", "four"]);
}
