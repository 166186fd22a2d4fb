//! A model test of the claim/lease API: random sequences of what schedulers, workers and
//! people do to the task instances of one run (schedule, queue, claim, heartbeat, finish,
//! hand back, time passing, reap, clear, mark), with the store's answers checked against
//! a model of the live tries and the stored rows checked after every step:
//!
//! - a try is live (running, leased) only while its instance is `running`, and an
//!   instance has at most one: one open attempt row, for its current try, owned by the
//!   lease holder;
//! - heartbeats, finishes and hand-backs succeed exactly for the worker holding the live
//!   try; for anyone else (a try that was reaped, cleared, marked or finished) they are
//!   `Stale` and change nothing: no success is ever recorded for a reaped or cleared try;
//! - the reaper finds exactly the live tries whose lease expired (leases are in the
//!   database's clock: a worker whose heartbeats stop writes its last lease with no time
//!   left, and the reaper looks a moment later);
//! - try numbers never go backwards; attempts are numbered 1..=try_number, each closed
//!   attempt keeps the outcome of the call that closed it, and never changes again;
//! - every change of an instance's state is a transition `TaskState::on` allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{
    Attempt, ClaimRequest, DagRun, FinishError, MarkRequest, NewTaskInstance, Patch, Reap,
    RunningTry, Store, StoreError, TaskInstance, Transition, TryOutcome,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{both_backends, seed_run, t};

both_backends!(random_operations_keep_the_lease_invariants);

const TASKS: [&str; 3] = ["a", "b", "c"];
const WORKERS: [&str; 2] = ["w0", "w1"];
const LEASE: Duration = Duration::from_secs(60);
/// Each case is a few dozen steps on a fresh run; 64 cases run in seconds.
const CASES: u32 = 64;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success,
    Failed,
    UpForRetry,
    Skipped,
}

impl Outcome {
    fn state(self) -> TaskState {
        match self {
            Outcome::Success => TaskState::Success,
            Outcome::Failed => TaskState::Failed,
            Outcome::UpForRetry => TaskState::UpForRetry,
            Outcome::Skipped => TaskState::Skipped,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A scheduler pass: every instance one step on towards a worker (`pending` and
    /// `up_for_retry` → `scheduled`, `scheduled` → `queued`).
    Tick,
    /// The scheduler: `pending`/`up_for_retry` → `scheduled`.
    Schedule(usize),
    /// The scheduler: `scheduled` → `queued`.
    Queue(usize),
    /// A worker claims one queued instance.
    Claim(usize),
    /// A worker heartbeats one of the tries it believes it holds (maybe lost already);
    /// with `true` it is its last heartbeat, leaving no lease (the worker goes silent).
    Heartbeat(usize, Index, bool),
    /// A worker reports the end of one of its tries.
    Finish(usize, Index, Outcome),
    /// A draining worker gives one of its tries back.
    HandBack(usize, Index),
    /// The scheduler's clock moves on (seconds); leases are in the database's clock.
    Advance(u32),
    /// The scheduler reaps every expired lease.
    Reap,
    /// A person clears an instance.
    Clear(usize),
    /// A person marks an instance success (`true`) or failed.
    Mark(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let task = 0..TASKS.len();
    let worker = 0..WORKERS.len();
    let outcome = prop_oneof![
        3 => Just(Outcome::Success),
        1 => Just(Outcome::Failed),
        2 => Just(Outcome::UpForRetry),
        1 => Just(Outcome::Skipped),
    ];
    prop_oneof![
        4 => Just(Op::Tick),
        1 => task.clone().prop_map(Op::Schedule),
        1 => task.clone().prop_map(Op::Queue),
        4 => worker.clone().prop_map(Op::Claim),
        2 => (worker.clone(), any::<Index>(), any::<bool>())
            .prop_map(|(w, i, last)| Op::Heartbeat(w, i, last)),
        3 => (worker.clone(), any::<Index>(), outcome).prop_map(|(w, i, o)| Op::Finish(w, i, o)),
        1 => (worker, any::<Index>()).prop_map(|(w, i)| Op::HandBack(w, i)),
        2 => (1u32..=90).prop_map(Op::Advance),
        2 => Just(Op::Reap),
        1 => task.clone().prop_map(Op::Clear),
        1 => (task, any::<bool>()).prop_map(|(i, s)| Op::Mark(i, s)),
    ]
}

/// How a try stopped being live, by whom.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ended {
    /// Its worker reported this outcome.
    Finished(TaskState),
    HandedBack,
    /// The reaper took it, into this state.
    Reaped(TaskState),
    /// A person cleared or marked the instance while the try ran.
    Cleared,
    Marked(TaskState),
}

#[derive(Debug, Clone)]
struct Live {
    try_number: i32,
    worker: String,
    /// The lease end the store wrote last.
    expires: DateTime<Utc>,
    /// Its last heartbeat left no lease: the reaper takes it.
    expired: bool,
}

/// What the test knows: the live try of each instance as the store's answers imply, how
/// every other try ended, the keys each worker still holds, and the last rows seen.
struct Model {
    dag: Dag,
    run: DagRun,
    queue: String,
    ids: Vec<i64>,
    now: DateTime<Utc>,
    live: BTreeMap<i64, Live>,
    ended: BTreeMap<(i64, i32), Ended>,
    claims: BTreeMap<i64, i32>,
    held: Vec<Vec<RunningTry>>,
    seen: BTreeMap<i64, TaskInstance>,
    seen_attempts: BTreeMap<(i64, i32), Attempt>,
}

fn dag() -> Dag {
    let toml: String = TASKS
        .iter()
        .map(|task| format!("[tasks.{task}]\ntype = \"noop\"\nretries = 2\n"))
        .collect();
    parse_dag("dags/model.toml", &toml).expect("valid DAG")
}

impl Model {
    async fn new(store: &Store, case: usize) -> Model {
        let queue = format!("model-{case}");
        let instances: Vec<NewTaskInstance> = TASKS
            .iter()
            .map(|task| NewTaskInstance {
                task_id: (*task).to_owned(),
                map_index: -1,
                state: TaskState::Pending,
                max_tries: 3,
                kind: "noop".to_owned(),
                queue: queue.clone(),
                pool: "default_pool".to_owned(),
                pool_slots: 1,
                priority: 0,
            })
            .collect();
        let run = seed_run(store, &format!("model_{case}"), &instances).await;
        let rows = store.list_task_instances(run.id).await.expect("list");
        let ids = TASKS
            .iter()
            .map(|task| {
                rows.iter()
                    .find(|ti| ti.task_id == *task)
                    .expect("seeded")
                    .id
            })
            .collect();
        let seen = rows.into_iter().map(|ti| (ti.id, ti)).collect();
        Model {
            dag: dag(),
            run,
            queue,
            ids,
            now: t("2026-01-02T04:00:00Z"),
            live: BTreeMap::new(),
            ended: BTreeMap::new(),
            claims: BTreeMap::new(),
            held: WORKERS.iter().map(|_| Vec::new()).collect(),
            seen,
            seen_attempts: BTreeMap::new(),
        }
    }

    fn holds_live(&self, running: &RunningTry) -> bool {
        let key = running.lease();
        self.live
            .get(&key.ti_id())
            .is_some_and(|l| l.try_number == key.try_number() && l.worker == key.worker_id())
    }

    /// Takes the try a worker acts on; `None` when it holds none.
    fn take_key(&mut self, worker: usize, index: &Index) -> Option<RunningTry> {
        let keys = &mut self.held[worker];
        if keys.is_empty() {
            return None;
        }
        Some(keys.remove(index.index(keys.len())))
    }

    fn end_live(&mut self, ti_id: i64, how: Ended) {
        if let Some(live) = self.live.remove(&ti_id) {
            self.ended.insert((ti_id, live.try_number), how);
        }
    }
}

fn expect_stale<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Stale { .. }) => {}
        other => panic!("{what}: expected Stale, got {other:?}"),
    }
}

async fn get(store: &Store, id: i64) -> TaskInstance {
    store
        .get_task_instance(id)
        .await
        .expect("get")
        .expect("instance exists")
}

/// A scheduler transition by event, if the state machine allows it from where the
/// instance is; it must then apply.
async fn scheduler_step(store: &Store, m: &mut Model, task: usize, event: TaskEvent) {
    let ti = get(store, m.ids[task]).await;
    let Ok(next) = ti.state.on(event) else {
        return;
    };
    let queued_at = if next == TaskState::Queued {
        Patch::Set(m.now)
    } else {
        Patch::Keep
    };
    store
        .transition(
            &Transition::on(ti.id, ti.state, ti.try_number, event, m.now)
                .expect("legal")
                .queued_at(queued_at)
                .next_retry_at(Patch::Null),
        )
        .await
        .unwrap_or_else(|e| panic!("{event:?} from {}: {e}", ti.state));
}

async fn apply(store: &Store, m: &mut Model, op: &Op) {
    match op {
        Op::Tick => {
            for task in 0..TASKS.len() {
                let state = get(store, m.ids[task]).await.state;
                let event = if state == TaskState::Scheduled {
                    TaskEvent::Queue
                } else {
                    TaskEvent::Schedule
                };
                scheduler_step(store, m, task, event).await;
            }
        }
        Op::Schedule(task) => scheduler_step(store, m, *task, TaskEvent::Schedule).await,
        Op::Queue(task) => scheduler_step(store, m, *task, TaskEvent::Queue).await,
        Op::Claim(worker) => {
            let mut queued = Vec::new();
            for id in &m.ids {
                if get(store, *id).await.state == TaskState::Queued {
                    queued.push(*id);
                }
            }
            let claimed = store
                .claim(&ClaimRequest {
                    worker_id: WORKERS[*worker].to_owned(),
                    hostname: "model.example".to_owned(),
                    queues: vec![m.queue.clone()],
                    limit: 1,
                    lease: LEASE,
                    now: m.now,
                })
                .await
                .expect("claim");
            assert_eq!(
                claimed.len(),
                queued.len().min(1),
                "claims one if any is queued"
            );
            for c in claimed {
                let ti = c.instance();
                assert!(
                    queued.contains(&ti.id),
                    "claimed {} which was not queued",
                    ti.id
                );
                assert_eq!(ti.state, TaskState::Running);
                assert_eq!(ti.lease_owner.as_deref(), Some(WORKERS[*worker]));
                let expires = ti.lease_expires_at.expect("a claimed try is leased");
                let claims = m.claims.entry(ti.id).or_default();
                *claims += 1;
                assert_eq!(ti.try_number, *claims, "one try number per claim");
                assert!(
                    !m.live.contains_key(&ti.id),
                    "a second live try of {}",
                    ti.id
                );
                m.live.insert(
                    ti.id,
                    Live {
                        try_number: ti.try_number,
                        worker: WORKERS[*worker].to_owned(),
                        expires,
                        expired: false,
                    },
                );
                m.held[*worker].push(c);
            }
        }
        Op::Heartbeat(worker, index, last) => {
            let Some(key) = m.take_key(*worker, index) else {
                return;
            };
            let lease = if *last { Duration::ZERO } else { LEASE };
            let result = key.heartbeat(lease).await;
            let ti_id = key.lease().ti_id();
            if m.holds_live(&key) {
                result.unwrap_or_else(|e| panic!("heartbeat of the live try {key:?}: {e}"));
                let expires = get(store, ti_id).await.lease_expires_at;
                if let Some(live) = m.live.get_mut(&ti_id) {
                    live.expires = expires.expect("a live try is leased");
                    live.expired = *last;
                }
                m.held[*worker].push(key);
            } else {
                expect_stale("heartbeat of a lost try", result);
            }
        }
        Op::Finish(worker, index, outcome) => {
            let Some(key) = m.take_key(*worker, index) else {
                return;
            };
            let state = outcome.state();
            let (ti_id, live) = (key.lease().ti_id(), m.holds_live(&key));
            let result = key
                .finish(TryOutcome {
                    new_state: state,
                    error: (state != TaskState::Success).then(|| "boom".to_owned()),
                    exit_code: Some(i32::from(state != TaskState::Success)),
                    output: None,
                    next_retry_at: (state == TaskState::UpForRetry)
                        .then(|| m.now + TimeDelta::seconds(10)),
                    now: m.now,
                    callback: None,
                    progress: Default::default(),
                })
                .await
                .map_err(FinishError::into_error);
            if live {
                let ti = result.unwrap_or_else(|e| panic!("finish of the live try {ti_id}: {e}"));
                assert_eq!(ti.state, state);
                m.end_live(ti_id, Ended::Finished(state));
            } else {
                expect_stale("finish of a lost try", result);
            }
        }
        Op::HandBack(worker, index) => {
            let Some(key) = m.take_key(*worker, index) else {
                return;
            };
            let (ti_id, live) = (key.lease().ti_id(), m.holds_live(&key));
            let result = key.hand_back(m.now).await;
            if live {
                let ti =
                    result.unwrap_or_else(|e| panic!("hand back of the live try {ti_id}: {e}"));
                assert_eq!(ti.state, TaskState::Scheduled);
                m.end_live(ti_id, Ended::HandedBack);
            } else {
                expect_stale("hand back of a lost try", result);
            }
        }
        Op::Advance(secs) => m.now += TimeDelta::seconds(i64::from(*secs)),
        Op::Reap => {
            // A lease with no time left is past a moment later (SQLite counts ms).
            tokio::time::sleep(Duration::from_millis(3)).await;
            let expired: BTreeSet<(i64, i32)> = store
                .expired_leases(1000)
                .await
                .expect("expired leases")
                .into_iter()
                .filter(|ti| m.ids.contains(&ti.id))
                .map(|ti| (ti.id, ti.try_number))
                .collect();
            let expected: BTreeSet<(i64, i32)> = m
                .live
                .iter()
                .filter(|(_, live)| live.expired)
                .map(|(id, live)| (*id, live.try_number))
                .collect();
            assert_eq!(
                expired, expected,
                "the reaper finds exactly the expired leases"
            );
            for (id, try_number) in expired {
                let ti = get(store, id).await;
                let new_state = if ti.try_number < ti.max_tries {
                    TaskState::UpForRetry
                } else {
                    TaskState::Failed
                };
                let reaped = store
                    .reap(&Reap {
                        ti_id: id,
                        try_number,
                        new_state,
                        next_retry_at: None,
                        error: "lease expired".to_owned(),
                        now: m.now,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("reap of {id} try {try_number}: {e}"));
                assert_eq!(reaped.state, new_state);
                m.end_live(id, Ended::Reaped(new_state));
            }
        }
        Op::Clear(task) => {
            let before = get(store, m.ids[*task]).await;
            let selection = ClearSelection {
                task_ids: vec![TASKS[*task].to_owned()],
                downstream: false,
                upstream: false,
                only_failed: false,
                keep_version: false,
            };
            let cleared = store
                .clear_task_instances(&m.dag, &m.run, &selection, m.now)
                .await
                .expect("clear");
            if before.state == TaskState::Pending {
                assert!(cleared.is_empty(), "a pending instance is left alone");
            } else {
                assert_eq!(cleared.len(), 1);
                assert_eq!(cleared[0].state, TaskState::Pending);
                m.end_live(before.id, Ended::Cleared);
            }
        }
        Op::Mark(task, success) => {
            let before = get(store, m.ids[*task]).await;
            let (state, event) = if *success {
                (TaskState::Success, TaskEvent::MarkSuccess)
            } else {
                (TaskState::Failed, TaskEvent::MarkFailed)
            };
            let request = MarkRequest {
                task_id: TASKS[*task].to_owned(),
                map_index: None,
                state,
                dry_run: false,
                now: m.now,
            };
            let result = store.mark_task_instances(&m.dag, &m.run, &request).await;
            match (before.state.on(event), result) {
                (Ok(_), Ok(marked)) => {
                    assert_eq!(marked.len(), 1);
                    assert_eq!(marked[0].state, state);
                    m.end_live(before.id, Ended::Marked(state));
                }
                // Already in the target state: skipped, not an error (as Airflow does).
                (Err(_), Ok(marked)) if before.state == state => assert!(marked.is_empty()),
                (Err(_), Err(StoreError::IllegalTransition(_))) if before.state != state => {}
                (legal, result) => panic!(
                    "mark {state} from {}: {legal:?} but {result:?}",
                    before.state
                ),
            }
        }
    }
}

/// The invariants over the stored rows, after every step.
async fn check(store: &Store, m: &mut Model, step: usize, op: &Op) {
    let at = format!("after step {step} ({op:?})");
    for id in m.ids.clone() {
        let ti = get(store, id).await;
        let attempts = store.list_attempts(id).await.expect("attempts");
        let previous = m.seen.get(&id).cloned().expect("seen before");

        // Try numbers never go backwards; one attempt per try, numbered 1..=try_number.
        assert!(
            ti.try_number >= previous.try_number,
            "{at}: try number went back: {previous:?} -> {ti:?}"
        );
        assert_eq!(
            ti.try_number,
            m.claims.get(&id).copied().unwrap_or(0),
            "{at}: {ti:?}"
        );
        let numbers: Vec<i32> = attempts.iter().map(|a| a.try_number).collect();
        assert_eq!(
            numbers,
            (1..=ti.try_number).collect::<Vec<_>>(),
            "{at}: attempts of {id}"
        );

        // Every state change is one the state machine allows.
        if ti.state != previous.state {
            let legal = [
                TaskEvent::Schedule,
                TaskEvent::Queue,
                TaskEvent::Claim,
                TaskEvent::Succeed,
                TaskEvent::Fail { retry: true },
                TaskEvent::Fail { retry: false },
                TaskEvent::Skip,
                TaskEvent::Reap { retry: true },
                TaskEvent::Reap { retry: false },
                TaskEvent::HandBack,
                TaskEvent::Clear,
                TaskEvent::MarkSuccess,
                TaskEvent::MarkFailed,
            ]
            .into_iter()
            .any(|e| previous.state.on(e) == Ok(ti.state));
            assert!(
                legal,
                "{at}: {} -> {} is no transition",
                previous.state, ti.state
            );
        }

        // At most one live try: a lease exactly while running, for the model's live try,
        // whose attempt is the open one.
        let live = m.live.get(&id);
        assert_eq!(
            ti.state == TaskState::Running,
            live.is_some(),
            "{at}: {ti:?} vs {live:?}"
        );
        assert_eq!(
            ti.lease_owner.is_some(),
            ti.state == TaskState::Running,
            "{at}: {ti:?}"
        );
        assert_eq!(
            ti.lease_expires_at.is_some(),
            ti.state == TaskState::Running,
            "{at}: {ti:?}"
        );
        if let Some(live) = live {
            assert_eq!(ti.try_number, live.try_number, "{at}");
            assert_eq!(
                ti.lease_owner.as_deref(),
                Some(live.worker.as_str()),
                "{at}"
            );
            assert_eq!(ti.lease_expires_at, Some(live.expires), "{at}");
            let current = attempts.last().expect("an attempt for the running try");
            assert_eq!(current.state, TaskState::Running, "{at}: {current:?}");
            assert_eq!(current.end_date, None, "{at}");
            assert_eq!(current.worker, live.worker, "{at}");
        }
        for a in &attempts {
            let key = (id, a.try_number);
            let is_live = live.is_some_and(|l| l.try_number == a.try_number);
            match m.ended.get(&key) {
                _ if is_live => {}
                Some(Ended::Finished(state) | Ended::Reaped(state)) => {
                    assert_eq!(a.state, *state, "{at}: {a:?}");
                    assert!(a.end_date.is_some(), "{at}: {a:?}");
                }
                Some(Ended::HandedBack) => {
                    assert_eq!(a.state, TaskState::Scheduled, "{at}: {a:?}");
                    assert!(a.end_date.is_some(), "{at}: {a:?}");
                }
                // A try taken away by a person: its worker never reports (its writes are
                // Stale), so the store closes the row: cleared as failed, marked as marked.
                Some(Ended::Cleared) => {
                    assert_eq!(a.state, TaskState::Failed, "{at}: {a:?}");
                    assert!(a.end_date.is_some(), "{at}: {a:?}");
                    assert!(
                        a.error.as_deref().is_some_and(|e| e.contains("cleared")),
                        "{at}: {a:?}"
                    );
                }
                Some(Ended::Marked(state)) => {
                    assert_eq!(a.state, *state, "{at}: {a:?}");
                    assert!(a.end_date.is_some(), "{at}: {a:?}");
                }
                None => panic!(
                    "{at}: try {} of {id} is neither live nor ended: {a:?}",
                    a.try_number
                ),
            }
            // A closed attempt never changes again.
            if let Some(before) = m.seen_attempts.get(&key) {
                if before.state != TaskState::Running {
                    assert_eq!(a, before, "{at}: a closed attempt changed");
                }
            }
            m.seen_attempts.insert(key, a.clone());
        }
        // No success recorded for a try that was reaped, cleared or handed back.
        for a in attempts.iter().filter(|a| a.state == TaskState::Success) {
            let how = m.ended.get(&(id, a.try_number));
            assert!(
                matches!(
                    how,
                    Some(Ended::Finished(TaskState::Success) | Ended::Marked(TaskState::Success))
                ),
                "{at}: try {} of {id} recorded as success, but it ended as {how:?}",
                a.try_number
            );
        }
        m.seen.insert(id, ti);
    }
}

async fn run_case(store: &Store, case: usize, ops: &[Op]) {
    let mut m = Model::new(store, case).await;
    for (step, op) in ops.iter().enumerate() {
        apply(store, &mut m, op).await;
        check(store, &mut m, step, op).await;
    }
}

/// Runs the proptest cases on a blocking thread that drives each case on this test's
/// runtime (proptest's runner is synchronous; shrinking re-runs cases on fresh runs).
async fn random_operations_keep_the_lease_invariants(store: Store) {
    let handle = tokio::runtime::Handle::current();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let case = AtomicUsize::new(0);
        runner
            .run(&prop::collection::vec(op(), 1..80), |ops| {
                let n = case.fetch_add(1, Ordering::Relaxed);
                handle.block_on(run_case(&store, n, &ops));
                Ok(())
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("runner thread");
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
