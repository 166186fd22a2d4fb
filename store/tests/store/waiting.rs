//! Waiting without a slot (`up_for_reschedule`): a try that reschedules keeps its try
//! number and its one open attempt row, the claim that wakes it resumes it, and a
//! person's cancel, clear or mark ends the waiting try (its attempt row closed) so the
//! next claim starts a new one.

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{Patch, RunningTry, Store, TaskInstance, Transition, TryOutcome};
use nightshift_testkit::claim_request;

use crate::common::{both_backends, new_ti, seed_run, t};

both_backends!(
    a_rescheduled_try_is_resumed_not_repeated,
    cancelling_a_run_fails_a_waiting_try,
    clearing_a_woken_try_starts_a_new_one,
);

/// Schedules and queues instance `ti` (the scheduler's two steps), at `now`.
async fn queue(store: &Store, ti: &TaskInstance, now: DateTime<Utc>) -> TaskInstance {
    let mut current = ti.clone();
    for event in [TaskEvent::Schedule, TaskEvent::Queue] {
        let t = Transition::on(current.id, current.state, current.try_number, event, now)
            .expect("legal")
            .queued_at(Patch::Set(now));
        current = store.transition(&t).await.expect("transition");
    }
    current
}

async fn claim_one(store: &Store, now: DateTime<Utc>) -> RunningTry {
    let mut claimed = store.claim(&claim_request("w1", now)).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one try claimed");
    claimed.remove(0)
}

/// The try asks to be woken in a minute.
async fn reschedule(running: RunningTry, now: DateTime<Utc>) -> TaskInstance {
    running
        .finish(TryOutcome {
            new_state: TaskState::UpForReschedule,
            exit_code: None,
            next_retry_at: Some(now + TimeDelta::minutes(1)),
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("rescheduled")
}

/// A run of one queued instance; its first claim at 03:00:05.
async fn claimed(store: &Store) -> (RunningTry, DateTime<Utc>) {
    let run = seed_run(store, "d", &[new_ti("wait", TaskState::Queued)]).await;
    let now = t("2026-01-02T03:00:05Z");
    let running = claim_one(store, now).await;
    assert_eq!(running.instance().run, run.id);
    (running, now)
}

async fn a_rescheduled_try_is_resumed_not_repeated(store: Store) {
    let (mut running, first) = claimed(&store).await;
    assert!(!running.resumed());
    let ti_id = running.instance().id;
    let mut now = first;
    for wake in 0..3 {
        let waiting = reschedule(running, now).await;
        assert_eq!(waiting.state, TaskState::UpForReschedule);
        assert_eq!(waiting.try_number, 1, "waiting spends no try");
        assert_eq!(waiting.max_tries, 2, "nor a retry");
        assert_eq!(waiting.next_retry_at, Some(now + TimeDelta::minutes(1)));
        assert_eq!(waiting.end_date, None, "the try has not ended");
        assert_eq!(waiting.lease_owner, None, "the slot is given back");
        let attempts = store.list_attempts(ti_id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].state, TaskState::UpForReschedule);
        assert_eq!(attempts[0].end_date, None, "the attempt stays open");
        assert_eq!(attempts[0].reschedules, wake);
        now += TimeDelta::minutes(1);
        queue(&store, &waiting, now).await;
        running = claim_one(&store, now).await;
        assert!(running.resumed(), "wake {wake} resumes the try");
    }
    // The fourth claim resumed the same try; it succeeds.
    assert_eq!(running.reschedules(), 3);
    assert_eq!(running.instance().try_number, 1);
    assert_eq!(
        running.instance().start_date,
        Some(first),
        "the try started at its first poke"
    );
    let done = running
        .finish(nightshift_testkit::success(now))
        .await
        .expect("success");
    assert_eq!(done.state, TaskState::Success);
    let attempts = store.list_attempts(ti_id).await.expect("attempts");
    assert_eq!(
        attempts.len(),
        1,
        "one try however many pokes: {attempts:?}"
    );
    assert_eq!(attempts[0].state, TaskState::Success);
    assert_eq!(attempts[0].start_date, first);
    assert_eq!(attempts[0].end_date, Some(now));
    assert_eq!(attempts[0].reschedules, 3);
}

async fn cancelling_a_run_fails_a_waiting_try(store: Store) {
    let (running, now) = claimed(&store).await;
    let ti_id = running.instance().id;
    let waiting = reschedule(running, now).await;
    let run = nightshift_testkit::dag_run(&store, waiting.run).await;
    store
        .cancel_run(&run, now + TimeDelta::seconds(10))
        .await
        .expect("cancel");
    let ti = nightshift_testkit::instance(&store, ti_id).await;
    assert_eq!(ti.state, TaskState::Failed);
    let attempts = store.list_attempts(ti_id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, TaskState::Failed);
    assert!(attempts[0].end_date.is_some(), "the waiting try is closed");
    let error = attempts[0].error.as_deref().unwrap_or_default();
    assert!(!error.is_empty(), "it says why: {attempts:?}");
}

async fn clearing_a_woken_try_starts_a_new_one(store: Store) {
    let (running, now) = claimed(&store).await;
    let ti_id = running.instance().id;
    let waiting = reschedule(running, now).await;
    // Clearing while it waits: pending again, its try closed.
    let later = now + TimeDelta::seconds(5);
    let cleared = store
        .transition(
            &Transition::on(
                ti_id,
                waiting.state,
                waiting.try_number,
                TaskEvent::Clear,
                later,
            )
            .expect("clear is legal")
            .next_retry_at(Patch::Null),
        )
        .await
        .expect("clear");
    assert_eq!(cleared.state, TaskState::Pending);
    let attempts = store.list_attempts(ti_id).await.expect("attempts");
    assert!(attempts[0].end_date.is_some(), "{attempts:?}");
    let running = claim_after_queue(&store, &cleared, later).await;
    assert!(!running.resumed());
    assert_eq!(running.instance().try_number, 2, "a new try");
    // The second try waits, is woken (queued), and is cleared before its claim: the
    // claim after that starts try 3, it does not resume try 2.
    let waiting = reschedule(running, later).await;
    let woken = queue(&store, &waiting, later + TimeDelta::minutes(1)).await;
    assert_eq!(woken.state, TaskState::Queued);
    let cleared = store
        .transition(
            &Transition::on(
                ti_id,
                woken.state,
                woken.try_number,
                TaskEvent::Clear,
                later,
            )
            .expect("clear is legal"),
        )
        .await
        .expect("clear");
    let running = claim_after_queue(&store, &cleared, later + TimeDelta::minutes(2)).await;
    assert!(!running.resumed());
    assert_eq!(running.instance().try_number, 3);
    let attempts = store.list_attempts(ti_id).await.expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.try_number, a.state, a.end_date.is_some()))
            .collect::<Vec<_>>(),
        [
            (1, TaskState::Failed, true),
            (2, TaskState::Failed, true),
            (3, TaskState::Running, false)
        ]
    );
}

async fn claim_after_queue(store: &Store, ti: &TaskInstance, now: DateTime<Utc>) -> RunningTry {
    queue(store, ti, now).await;
    claim_one(store, now).await
}
