//! Task instances: compare-and-set transitions, claims, leases, reaping, attempts.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::Callback;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{
    CallbackEvent, CallbackKind, ClaimRequest, FinishError, NewCallback, NewTaskInstance, Patch,
    Reap, RunningTry, Store, StoreError, TaskInstance, Transition, TryOutcome,
};
use serde_json::json;

use crate::common::{both_backends, first_try, new_ti, seed_run, t};

both_backends!(
    transition_wins_once_and_the_stale_writer_loses,
    transition_patches_columns,
    concurrent_claimers_never_share_an_instance,
    claim_honours_queues_and_priority,
    heartbeat_extends_the_lease_until_it_is_lost,
    finish_after_reap_is_stale,
    finish_attempt_records_the_outcome,
    leases_are_in_database_time,
    a_failed_finish_gives_the_try_back,
    only_the_state_machine_decides_a_new_state,
    a_given_up_try_queues_its_external_job_to_stop,
);

fn claim_request(worker: &str, queues: &[&str], limit: i64, now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_owned(),
        hostname: format!("{worker}.example"),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        limit,
        lease: Duration::from_secs(60),
        now,
    }
}

async fn only_instance(store: &Store, state: TaskState) -> TaskInstance {
    let run = seed_run(store, "d", &[new_ti("a", state)]).await;
    let mut tis = store.list_task_instances(run.id).await.expect("list");
    tis.pop().expect("one instance")
}

/// The only instance of a new run, queued and claimed by `worker` (queue `default`) at
/// 2026-01-02T03:00:05Z: the instance as it was before, the running try and that time.
async fn claimed_instance(
    store: &Store,
    worker: &str,
) -> (TaskInstance, RunningTry, DateTime<Utc>) {
    let ti = only_instance(store, TaskState::Scheduled).await;
    let now = t("2026-01-02T03:00:05Z");
    queue_all(store, ti.run, now).await;
    let mut claimed = store
        .claim(&claim_request(worker, &["default"], 1, now))
        .await
        .expect("claim");
    (ti, claimed.remove(0), now)
}

async fn transition_wins_once_and_the_stale_writer_loses(store: Store) {
    let ti = only_instance(&store, TaskState::Pending).await;
    let now = t("2026-01-02T03:00:05Z");
    let schedule =
        Transition::on(ti.id, TaskState::Pending, 0, TaskEvent::Schedule, now).expect("legal");
    let skip = Transition::on(ti.id, TaskState::Pending, 0, TaskEvent::Skip, now).expect("legal");
    // Two writers race from the same view; exactly one wins.
    let (a, b) = tokio::join!(store.transition(&schedule), store.transition(&skip));
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    match loser {
        Err(StoreError::Stale { what, id, expected }) => {
            assert_eq!(what, "task instance");
            assert_eq!(id, ti.id.to_string());
            assert_eq!(expected, "pending at try 0");
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    // A writer with the wrong try number loses too.
    let current = nightshift_testkit::instance(&store, ti.id).await;
    let wrong_try = Transition::on(ti.id, current.state, 7, TaskEvent::Remove, now).expect("legal");
    assert!(store
        .transition(&wrong_try)
        .await
        .expect_err("stale")
        .is_stale());
    assert!(store
        .transition(
            &Transition::on(ti.id + 999, TaskState::Pending, 0, TaskEvent::Schedule, now)
                .expect("legal")
        )
        .await
        .expect_err("no such instance")
        .is_stale());
}

async fn transition_patches_columns(store: Store) {
    let ti = only_instance(&store, TaskState::Scheduled).await;
    let now = t("2026-01-02T03:00:05.250Z");
    let queued = store
        .transition(
            &Transition::on(ti.id, TaskState::Scheduled, 0, TaskEvent::Queue, now)
                .expect("legal")
                .max_tries(5)
                .queued_at(Patch::Set(now))
                .rendered(Patch::Set(json!({"env": {"TARGET_DATE": "2026-01-01"}})))
                .external_id(Patch::Set("arn:aws:ecs:task/1".to_owned())),
        )
        .await
        .expect("queue");
    assert_eq!(queued.external_id.as_deref(), Some("arn:aws:ecs:task/1"));
    assert_eq!(queued.state, TaskState::Queued);
    assert_eq!(queued.queued_at, Some(now));
    assert_eq!(queued.updated_at, now);
    assert_eq!(queued.max_tries, 5);
    assert_eq!(
        queued.rendered,
        Some(json!({"env": {"TARGET_DATE": "2026-01-01"}}))
    );
    assert_eq!(queued.output, None);

    // A person marks it success with an output, then it is cleared: Null empties columns,
    // Keep leaves them.
    let later = t("2026-01-02T03:10:00Z");
    let marked = store
        .transition(
            &Transition::on(ti.id, TaskState::Queued, 0, TaskEvent::MarkSuccess, later)
                .expect("legal")
                .end_date(Patch::Set(later))
                .output(Patch::Set(json!([1, "two", {"three": 3.0}]))),
        )
        .await
        .expect("mark");
    assert_eq!(marked.output, Some(json!([1, "two", {"three": 3.0}])));
    // A person's mark gives the try's external job up: it is queued to be stopped and
    // the instance no longer holds its id (migration 0020).
    // (Read back: SQLite's trigger clears it after the statement's RETURNING.)
    let stored = store
        .get_task_instance(ti.id)
        .await
        .expect("get")
        .expect("the instance");
    assert_eq!(stored.external_id, None);
    let cleared = store
        .transition(
            &Transition::on(ti.id, TaskState::Success, 0, TaskEvent::Clear, later)
                .expect("legal")
                .end_date(Patch::Null)
                .queued_at(Patch::Null)
                .output(Patch::Null),
        )
        .await
        .expect("clear");
    assert_eq!(cleared.end_date, None);
    assert_eq!(cleared.queued_at, None);
    assert_eq!(cleared.output, None);
    assert_eq!(cleared.rendered, queued.rendered);
    assert_eq!(cleared.max_tries, 5);
}

async fn queue_all(store: &Store, run: i64, now: DateTime<Utc>) {
    for ti in store.list_task_instances(run).await.expect("list") {
        let mut state = ti.state;
        for event in [TaskEvent::Schedule, TaskEvent::Queue] {
            let Ok(transition) = Transition::on(ti.id, state, ti.try_number, event, now) else {
                continue;
            };
            state = store
                .transition(&transition.queued_at(Patch::Set(now)))
                .await
                .expect("queue")
                .state;
        }
    }
}

async fn concurrent_claimers_never_share_an_instance(store: Store) {
    let tasks: Vec<NewTaskInstance> = (0..40)
        .map(|i| new_ti(&format!("t{i:02}"), TaskState::Scheduled))
        .collect();
    let run = seed_run(&store, "d", &tasks).await;
    let now = t("2026-01-02T03:00:05Z");
    queue_all(&store, run.id, now).await;

    let mut set = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let store = store.clone();
        set.spawn(async move {
            let request = claim_request(&format!("w{worker}"), &["default"], 3, now);
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim(&request).await.expect("claim");
                if claimed.is_empty() {
                    break mine;
                }
                mine.extend(claimed);
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(claimed) = set.join_next().await {
        for c in claimed.expect("join") {
            assert!(
                seen.insert(c.instance().id),
                "claimed twice: {}",
                c.instance().id
            );
            assert_eq!(c.run().id, run.id);
            let attempt = first_try(&store, &c).await;
            assert_eq!(Some(attempt.worker), c.instance().lease_owner);
        }
    }
    assert_eq!(seen.len(), 40);
}

async fn claim_honours_queues_and_priority(store: Store) {
    let ti = |id: &str, queue: &str, priority| NewTaskInstance {
        queue: queue.to_owned(),
        priority,
        ..new_ti(id, TaskState::Scheduled)
    };
    let run = seed_run(
        &store,
        "d",
        &[
            ti("low", "etl", 1),
            ti("high", "etl", 9),
            ti("mid", "etl", 5),
            ti("other", "gpu", 100),
            ti("pending", "etl", 50),
        ],
    )
    .await;
    let now = t("2026-01-02T03:00:05Z");
    queue_all(&store, run.id, now).await;
    // One instance stays unqueued: claims never take it.
    let pending = store
        .find_task_instance(run.id, "pending", -1)
        .await
        .expect("find")
        .expect("exists");
    nightshift_testkit::force_state(&store, pending.id, TaskState::Scheduled).await;

    let claimed = store
        .claim(&claim_request("w", &["etl"], 2, now))
        .await
        .expect("claim");
    let ids: Vec<_> = claimed
        .iter()
        .map(|c| c.instance().task_id.as_str())
        .collect();
    assert_eq!(ids, ["high", "mid"]);
    let c = &claimed[0];
    assert_eq!(c.instance().lease_owner.as_deref(), Some("w"));
    assert_eq!(c.instance().hostname.as_deref(), Some("w.example"));
    assert_eq!(c.instance().start_date, Some(now));
    // The lease is the database's now + 60 s, whatever the worker's `now` says.
    let db_now = store.database_time().await.expect("db time");
    let expires = c.instance().lease_expires_at.expect("leased");
    assert!(
        expires > db_now + chrono::Duration::seconds(50)
            && expires <= db_now + chrono::Duration::seconds(60),
        "{expires} vs {db_now}"
    );
    assert_eq!(c.lease().worker_id(), "w");

    let rest = store
        .claim(&claim_request("w", &["etl", "gpu"], 10, now))
        .await
        .expect("claim");
    let ids: Vec<_> = rest.iter().map(|c| c.instance().task_id.as_str()).collect();
    assert_eq!(ids, ["other", "low"]);
    assert!(store
        .claim(&claim_request("w", &[], 10, now))
        .await
        .expect("no queues")
        .is_empty());
    assert_eq!(store.count_active_tasks("d").await.expect("count"), 4);
}

async fn heartbeat_extends_the_lease_until_it_is_lost(store: Store) {
    let (ti, claimed, now) = claimed_instance(&store, "owner").await;
    let extended = Duration::from_secs(120);
    let lease = chrono::Duration::seconds(120);
    let before = store.database_time().await.expect("db time");
    claimed.heartbeat(extended).await.expect("heartbeat");
    let after = store.database_time().await.expect("db time");
    let expires = nightshift_testkit::instance(&store, ti.id)
        .await
        .lease_expires_at
        .expect("leased");
    // In the database's clock, whatever `now` the worker gave the claim. (SQLite's clock
    // counts milliseconds.)
    let slack = chrono::Duration::milliseconds(1);
    assert!(
        before + lease - slack <= expires && expires <= after + lease + slack,
        "{before} + 120s <= {expires} <= {after} + 120s"
    );

    // No other code can write to the try: only its handle holds the lease key. Once the
    // lease is lost (it ran out and the try was reaped), the handle writes nothing.
    claimed
        .heartbeat(Duration::ZERO)
        .await
        .expect("last heartbeat");
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .reap(&Reap {
            ti_id: ti.id,
            try_number: 1,
            new_state: TaskState::UpForRetry,
            next_retry_at: None,
            error: "lease expired".to_owned(),
            now,
        })
        .await
        .expect("reap");
    assert!(claimed
        .heartbeat(extended)
        .await
        .expect_err("lost")
        .is_stale());
    assert!(claimed
        .set_external_id("arn:x", "ecs", now)
        .await
        .expect_err("lost")
        .is_stale());
    let current = nightshift_testkit::instance(&store, ti.id).await;
    assert_eq!(
        (current.lease_expires_at, current.external_id),
        (None, None)
    );
}

async fn finish_after_reap_is_stale(store: Store) {
    let (ti, claimed, now) = claimed_instance(&store, "w1").await;

    // Before expiry: nothing to reap, and a reap attempt loses.
    assert!(store.expired_leases(10).await.expect("expired").is_empty());
    let reap = Reap {
        ti_id: ti.id,
        try_number: 1,
        new_state: TaskState::UpForRetry,
        next_retry_at: Some(now + chrono::Duration::seconds(300)),
        error: "lease expired (worker w1 lost)".to_owned(),
        now,
    };
    assert!(store.reap(&reap).await.expect_err("not expired").is_stale());

    // The worker's heartbeats stop: its lease runs out (in the database's clock).
    claimed
        .heartbeat(Duration::ZERO)
        .await
        .expect("last heartbeat");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = now + chrono::Duration::seconds(61);
    let expired = store.expired_leases(10).await.expect("expired");
    assert_eq!(expired.iter().map(|t| t.id).collect::<Vec<_>>(), [ti.id]);
    let reaped = store
        .reap(&Reap {
            now: late,
            ..reap.clone()
        })
        .await
        .expect("reap");
    assert_eq!(reaped.state, TaskState::UpForRetry);
    assert_eq!(reaped.lease_owner, None);
    assert_eq!(reaped.lease_expires_at, None);
    assert!(store
        .reap(&Reap { now: late, ..reap })
        .await
        .expect_err("twice")
        .is_stale());

    // The next try starts on another worker.
    store
        .transition(
            &Transition::on(ti.id, TaskState::UpForRetry, 1, TaskEvent::Schedule, late)
                .expect("legal"),
        )
        .await
        .expect("schedule");
    store
        .transition(
            &Transition::on(ti.id, TaskState::Scheduled, 1, TaskEvent::Queue, late).expect("legal"),
        )
        .await
        .expect("queue");
    let second = store
        .claim(&claim_request("w2", &["default"], 1, late))
        .await
        .expect("claim");
    assert_eq!(second[0].instance().try_number, 2);

    // The first worker comes back: its heartbeats lose, and so does its success.
    assert!(claimed
        .heartbeat(Duration::from_secs(60))
        .await
        .expect_err("late")
        .is_stale());
    let late_finish = TryOutcome {
        output: Some(json!("stale")),
        ..nightshift_testkit::success(late)
    };
    assert!(claimed
        .finish(late_finish)
        .await
        .expect_err("late")
        .is_stale());
    let current = nightshift_testkit::instance(&store, ti.id).await;
    assert_eq!(current.state, TaskState::Running);
    assert_eq!(current.try_number, 2);
    assert_eq!(current.output, None);

    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].state, TaskState::UpForRetry);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("lease expired (worker w1 lost)")
    );
    assert_eq!(attempts[0].end_date, Some(late));
    assert_eq!(attempts[1].state, TaskState::Running);
    assert_eq!(attempts[1].worker, "w2");
}

fn task_callback(ti: &TaskInstance, event: CallbackEvent, now: DateTime<Utc>) -> NewCallback {
    NewCallback {
        kind: CallbackKind::Task,
        event,
        dag_id: "d".to_owned(),
        run_id: "r".to_owned(),
        task_id: Some(ti.task_id.clone()),
        map_index: ti.map_index,
        try_number: 1,
        callback: Callback::Slack {
            webhook: "https://hooks.example.invalid/x".to_owned(),
        },
        payload: json!({"state": event.as_str(), "error": null}),
        now,
    }
}

async fn finish_attempt_records_the_outcome(store: Store) {
    let (ti, claimed, now) = claimed_instance(&store, "w").await;
    claimed
        .set_external_id("arn:aws:ecs:ap-northeast-1:1:task/dmp/abc", "ecs", now)
        .await
        .expect("external id");
    let end = t("2026-01-02T03:05:00Z");
    let failed = claimed
        .finish(TryOutcome {
            new_state: TaskState::UpForRetry,
            error: Some("exit code 3".to_owned()),
            exit_code: Some(3),
            output: None,
            next_retry_at: Some(end + chrono::Duration::seconds(300)),
            now: end,
            callback: Some(task_callback(&ti, CallbackEvent::Retry, end)),
            progress: Default::default(),
        })
        .await
        .expect("finish");
    assert_eq!(failed.state, TaskState::UpForRetry);
    assert_eq!(failed.end_date, Some(end));
    assert_eq!(
        failed.next_retry_at,
        Some(end + chrono::Duration::seconds(300))
    );
    assert_eq!(failed.lease_owner, None);
    // The recorded outcome accounts for the external job: nothing re-attaches to it (the
    // attempt below keeps the ARN).
    assert_eq!(failed.external_id, None);
    // Finishing consumed the handle: nothing can finish the try twice.
    // The callback went to the outbox with the outcome.
    let events: Vec<_> = store
        .list_callbacks(Some("d"), 10)
        .await
        .expect("callbacks")
        .into_iter()
        .map(|c| (c.task_id, c.try_number, c.event))
        .collect();
    assert_eq!(events, [(Some("a".to_owned()), 1, CallbackEvent::Retry)]);

    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(a.try_number, 1);
    assert_eq!(a.state, TaskState::UpForRetry);
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(a.error.as_deref(), Some("exit code 3"));
    assert_eq!(a.start_date, now);
    assert_eq!(a.end_date, Some(end));
    assert_eq!(a.hostname, "w.example");
    assert_eq!(
        a.external_id.as_deref(),
        Some("arn:aws:ecs:ap-northeast-1:1:task/dmp/abc")
    );

    assert_eq!(a.queued_at, Some(now), "the try keeps its queued time");

    // Second try, queued after the retry delay, succeeds with an output.
    let requeued = end + chrono::Duration::seconds(300);
    let second_start = requeued + chrono::Duration::seconds(2);
    store
        .transition(
            &Transition::on(
                ti.id,
                TaskState::UpForRetry,
                1,
                TaskEvent::Schedule,
                requeued,
            )
            .expect("legal"),
        )
        .await
        .expect("schedule");
    store
        .transition(
            &Transition::on(ti.id, TaskState::Scheduled, 1, TaskEvent::Queue, requeued)
                .expect("legal")
                .queued_at(Patch::Set(requeued)),
        )
        .await
        .expect("requeue");
    let mut claimed = store
        .claim(&claim_request("w", &["default"], 1, second_start))
        .await
        .expect("claim");
    assert_eq!(claimed[0].instance().end_date, None);
    assert_eq!(claimed[0].instance().next_retry_at, None);
    let done = claimed
        .remove(0)
        .finish(TryOutcome {
            output: Some(json!({"rows": 1234, "tables": ["Student"]})),
            ..nightshift_testkit::success(second_start)
        })
        .await
        .expect("finish");
    assert_eq!(done.state, TaskState::Success);
    assert_eq!(done.try_number, 2);
    assert_eq!(
        done.output,
        Some(json!({"rows": 1234, "tables": ["Student"]}))
    );
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    let states: Vec<_> = attempts.iter().map(|a| (a.try_number, a.state)).collect();
    assert_eq!(
        states,
        [(1, TaskState::UpForRetry), (2, TaskState::Success)]
    );

    // The run's tries in one read: both tries of this run (each with its own queued
    // time), none of another run's.
    let other = seed_run(&store, "other", &[new_ti("b", TaskState::Scheduled)]).await;
    queue_all(&store, other.id, end).await;
    let other_try = store
        .claim(&claim_request("w", &["default"], 1, end))
        .await
        .expect("claim the other run's instance");
    assert_eq!(other_try.len(), 1);
    let run_attempts = store.list_run_attempts(ti.run).await.expect("run attempts");
    let times: Vec<_> = run_attempts
        .iter()
        .map(|a| (a.task_instance, a.try_number, a.queued_at, a.start_date))
        .collect();
    assert_eq!(
        times,
        [
            (ti.id, 1, Some(now), now),
            (ti.id, 2, Some(requeued), second_start),
        ]
    );
    assert_eq!(
        run_attempts, attempts,
        "the same rows as the instance's own read"
    );
    let other_attempts = store.list_run_attempts(other.id).await.expect("other run");
    assert_eq!(other_attempts.len(), 1);
    assert_eq!(other_attempts[0].queued_at, Some(end));
}

/// Leases are written and compared in the database's clock: a worker whose clock is
/// years behind still gets a whole lease, and leases of different lengths run out in
/// order (on SQLite as text, in the shape sqlx writes timestamps).
async fn leases_are_in_database_time(store: Store) {
    let tasks: Vec<_> = ["zero", "short", "long"]
        .iter()
        .map(|id| new_ti(id, TaskState::Scheduled))
        .collect();
    let run = seed_run(&store, "d", &tasks).await;
    let behind = t("2000-01-02T03:00:00Z");
    queue_all(&store, run.id, behind).await;
    let before = store.database_time().await.expect("db time");
    let claimed = store
        .claim(&claim_request("w", &["default"], 3, behind))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        let expires = c.instance().lease_expires_at.expect("leased");
        assert!(
            expires >= before + chrono::Duration::seconds(59),
            "{expires} is a whole lease after {before}"
        );
        assert_eq!(c.instance().start_date, Some(behind), "the worker's clock");
    }
    assert!(store.expired_leases(10).await.expect("expired").is_empty());

    let by_task = |task: &str| {
        claimed
            .iter()
            .find(|c| c.instance().task_id == task)
            .expect("claimed")
    };
    let leases = [
        ("zero", Duration::ZERO),
        ("short", Duration::from_millis(700)),
        ("long", Duration::from_secs(3600)),
    ];
    for (task, lease) in leases {
        by_task(task).heartbeat(lease).await.expect("heartbeat");
    }
    let expired = || {
        let store = store.clone();
        async move {
            let mut tasks: Vec<_> = store
                .expired_leases(10)
                .await
                .expect("expired")
                .into_iter()
                .map(|t| t.task_id)
                .collect();
            tasks.sort();
            tasks
        }
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(expired().await, ["zero"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(expired().await, ["short", "zero"]);
}

/// A finish the store could not write (here: its pool is closed) is not a lost lease: the
/// handle and the outcome come back, so the worker can try again.
async fn a_failed_finish_gives_the_try_back(store: Store) {
    let (ti, claimed, now) = claimed_instance(&store, "w").await;
    let outcome = TryOutcome {
        output: Some(json!({"rows": 1})),
        ..nightshift_testkit::success(now)
    };
    store.close().await;
    match claimed.finish(outcome.clone()).await {
        Err(FinishError::Failed {
            error,
            running,
            outcome: given_back,
        }) => {
            assert!(!error.is_stale(), "{error}");
            assert_eq!(
                (running.lease().ti_id(), running.lease().try_number()),
                (ti.id, 1)
            );
            assert_eq!(*given_back, outcome);
        }
        other => panic!("expected the try back, got {other:?}"),
    }
}

async fn only_the_state_machine_decides_a_new_state(store: Store) {
    let now = t("2026-01-02T03:00:05Z");
    // An event the state machine refuses makes no transition at all.
    let refused = Transition::on(1, TaskState::Pending, 0, TaskEvent::Claim, now)
        .expect_err("pending cannot be claimed");
    assert_eq!(refused.from, TaskState::Pending);
    // A worker's outcome that no try-ending event gives is refused, writing nothing.
    let ti = only_instance(&store, TaskState::Scheduled).await;
    queue_all(&store, ti.run, now).await;
    let running = store
        .claim(&claim_request("w", &["default"], 1, now))
        .await
        .expect("claim")
        .pop()
        .expect("one try");
    let refused = running
        .finish(TryOutcome {
            new_state: TaskState::Queued,
            ..nightshift_testkit::success(now)
        })
        .await
        .expect_err("a try cannot end queued");
    assert!(
        matches!(refused.error(), StoreError::Invalid { .. }),
        "{refused:?}"
    );
    assert_eq!(
        nightshift_testkit::instance(&store, ti.id).await.state,
        TaskState::Running
    );
    // A reaper cannot make a try succeed either.
    let reap = Reap {
        ti_id: ti.id,
        try_number: 1,
        new_state: TaskState::Success,
        next_retry_at: None,
        error: "lease expired".to_owned(),
        now,
    };
    assert!(matches!(
        store.reap(&reap).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        nightshift_testkit::instance(&store, ti.id).await.state,
        TaskState::Running
    );
}

/// The trigger of migration 0020: a state change that gives the try up while the instance
/// still holds an external id queues the job to stop and clears the id; the retry path
/// keeps it for the next try to re-attach.
async fn a_given_up_try_queues_its_external_job_to_stop(store: Store) {
    let (ti, claimed, now) = claimed_instance(&store, "w").await;
    claimed
        .set_external_id("q-123", "athena", now)
        .await
        .expect("external id");
    // Retried: the id stays for the next try.
    let retry = Transition::on(
        ti.id,
        TaskState::Running,
        1,
        TaskEvent::Fail { retry: true },
        now,
    )
    .expect("legal");
    store.transition(&retry).await.expect("up for retry");
    let kept = store
        .get_task_instance(ti.id)
        .await
        .expect("read")
        .expect("ti");
    assert_eq!(kept.external_id.as_deref(), Some("q-123"));
    assert!(store.external_stops(ti.id).await.expect("stops").is_empty());

    // Marked failed by a person: nobody will re-attach, so the job is queued to stop.
    let mark =
        Transition::on(ti.id, TaskState::UpForRetry, 1, TaskEvent::MarkFailed, now).expect("legal");
    store.transition(&mark).await.expect("mark failed");
    let given_up = store
        .get_task_instance(ti.id)
        .await
        .expect("read")
        .expect("ti");
    assert_eq!(
        (given_up.state, given_up.external_id),
        (TaskState::Failed, None)
    );
    let stops = store.external_stops(ti.id).await.expect("stops");
    assert_eq!(stops.len(), 1);
    let s = &stops[0];
    assert_eq!(
        (
            s.kind.as_str(),
            s.external_id.as_str(),
            s.try_number,
            s.reason.as_str()
        ),
        (
            "athena",
            "q-123",
            1,
            "the try was given up (up_for_retry -> failed)"
        )
    );

    // One worker takes it; a second finds nothing until the first one's lease runs out.
    let taken = store
        .claim_external_stops(10, Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!((taken.len(), taken[0].claims), (1, 1));
    assert!(store
        .claim_external_stops(10, Duration::from_secs(60))
        .await
        .expect("claim")
        .is_empty());
    store
        .finish_external_stop(s.id, "stopped", true)
        .await
        .expect("finish");
    let done = store.external_stops(ti.id).await.expect("stops");
    assert!(done[0].done_at.is_some());
    assert_eq!(done[0].result.as_deref(), Some("stopped"));
    // The installation id exists from the migration on, and stays.
    let id = store.installation_id().await.expect("installation id");
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(store.installation_id().await.expect("again"), id);
}
