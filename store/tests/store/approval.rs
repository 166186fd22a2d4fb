//! Awaiting input (an `approval`): the try that asks keeps its attempt row open and gives
//! its slot back; only the timeout's read lists it once its time is up; a decision ends
//! the try exactly once (a second one is stale); a person's clear or a cancel ends the
//! waiting try too (its attempt row closed), and the next claim starts a new one.

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::approval::{request_output, Decision, OnTimeout};
use nightshift_core::dag::parse_dag;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{ApprovalDecision, Patch, Store, TaskInstance, Transition, TryOutcome};
use nightshift_testkit::claim_request;

use crate::common::{both_backends, new_ti, seed_run, t};

both_backends!(
    an_asking_try_waits_without_its_slot_until_decided_once,
    clearing_or_cancelling_ends_a_waiting_approval,
);

/// A run of one queued approval; its try asked at 03:00:05 with a one-hour timeout.
async fn asked(store: &Store) -> (TaskInstance, DateTime<Utc>) {
    seed_run(store, "d", &[new_ti("ask", TaskState::Queued)]).await;
    let now = t("2026-01-02T03:00:05Z");
    let running = store
        .claim(&claim_request("w1", now))
        .await
        .expect("claim")
        .remove(0);
    let timeout_at = now + TimeDelta::hours(1);
    let ti = running
        .finish(TryOutcome {
            new_state: TaskState::AwaitingInput,
            exit_code: None,
            next_retry_at: Some(timeout_at),
            output: Some(request_output("ship it?", now, Some(timeout_at))),
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("asks");
    (ti, now)
}

fn task() -> nightshift_core::dag::Task {
    let dag = parse_dag(
        "dags/d.toml",
        "[tasks.ask]\ntype = \"approval\"\nretries = 1\n",
    )
    .expect("dag");
    dag.tasks["ask"].clone()
}

async fn an_asking_try_waits_without_its_slot_until_decided_once(store: Store) {
    let (ti, now) = asked(&store).await;
    assert_eq!(ti.state, TaskState::AwaitingInput);
    assert_eq!((ti.lease_owner.as_deref(), ti.end_date), (None, None));
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts[0].state, TaskState::AwaitingInput);
    assert_eq!(attempts[0].end_date, None, "the try goes on");
    // Nothing to claim meanwhile.
    let claimed = store
        .claim(&claim_request("w1", now + TimeDelta::minutes(5)))
        .await
        .expect("claim");
    assert!(claimed.is_empty());
    // Listed for its timeout only once its time is up.
    let before = store.approvals_due(now + TimeDelta::minutes(59), 10).await;
    assert!(before.expect("due").is_empty());
    let due = store
        .approvals_due(now + TimeDelta::hours(1), 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    let run = nightshift_testkit::dag_run(&store, ti.run).await;
    assert_eq!((due[0].0.id, &due[0].1), (ti.id, &run.run_id));

    let at = now + TimeDelta::hours(2);
    let decision = Decision::on_timeout(
        OnTimeout::Fail,
        std::time::Duration::from_secs(3600),
        true,
        at,
    );
    let request = ApprovalDecision::new(ti.clone(), run.run_id.clone(), &task(), decision);
    let retried = store.decide_approval(&request).await.expect("decided");
    assert_eq!(retried.state, TaskState::UpForRetry);
    assert_eq!(
        retried.next_retry_at,
        Some(at + TimeDelta::minutes(5)),
        "the retry delay"
    );
    assert_eq!(
        retried.output.as_ref().expect("output")["message"],
        "ship it?"
    );
    assert_eq!(
        retried.output.as_ref().expect("output")["decision"],
        "timed_out"
    );
    // The same decision again (another scheduler) loses.
    let again = store.decide_approval(&request).await;
    assert!(again.is_err_and(|e| e.is_stale()));
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, TaskState::UpForRetry);
    assert_eq!(attempts[0].end_date, Some(at));
    assert!(store.approvals_due(at, 10).await.expect("due").is_empty());
    let audit = store.list_audit(&Default::default()).await.expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("timeout", "task.approval_timeout")
    );
}

async fn clearing_or_cancelling_ends_a_waiting_approval(store: Store) {
    let (ti, now) = asked(&store).await;
    let cleared = store
        .transition(
            &Transition::on(ti.id, ti.state, ti.try_number, TaskEvent::Clear, now)
                .expect("clear is legal")
                .next_retry_at(Patch::Null),
        )
        .await
        .expect("clear");
    assert_eq!(cleared.state, TaskState::Pending);
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts[0].state, TaskState::Failed);
    assert!(attempts[0].end_date.is_some());
    let error = attempts[0].error.clone().unwrap_or_default();
    assert!(error.contains("stopped while awaiting input"), "{error}");
    // Asked again (a new try), then the run is cancelled: the waiting try fails.
    let mut current = cleared;
    for event in [TaskEvent::Schedule, TaskEvent::Queue] {
        let t = Transition::on(current.id, current.state, current.try_number, event, now)
            .expect("legal");
        current = store.transition(&t).await.expect("transition");
    }
    let running = store
        .claim(&claim_request("w1", now))
        .await
        .expect("claim")
        .remove(0);
    assert!(!running.resumed());
    assert_eq!(running.instance().try_number, 2);
    running
        .finish(TryOutcome {
            new_state: TaskState::AwaitingInput,
            exit_code: None,
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("asks again");
    let run = nightshift_testkit::dag_run(&store, current.run).await;
    store.cancel_run(&run, now).await.expect("cancel");
    let ti = nightshift_testkit::instance(&store, ti.id).await;
    assert_eq!(ti.state, TaskState::Failed);
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.try_number, a.state, a.end_date.is_some()))
            .collect::<Vec<_>>(),
        [(1, TaskState::Failed, true), (2, TaskState::Failed, true)]
    );
}
