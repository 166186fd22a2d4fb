//! Deadlines through the real loop, driven by the tick's `now`: a late run is recorded
//! once and announced once with a link (also with two schedulers), a run that finished in
//! time or already failed is not, `fail = true` fails the late run and stops its running
//! try, and a task's `within` concerns that task only.

use std::collections::BTreeMap;
use std::time::Duration;

use nightshift_core::state::{RunState, TaskState};
use nightshift_scheduler::Scheduler;
use nightshift_store::{CallbackEvent, CallbackKind, CallbackRequest, ClaimRequest, DagRun, Store};

use crate::common::{add_dag, both_backends, config, scheduler, secs, t, trigger, work, Outcome};

both_backends!(
    a_late_run_is_announced_once_with_a_link,
    two_schedulers_announce_a_late_run_once,
    a_run_finished_before_its_deadline_is_not_late,
    a_failed_run_is_not_late,
    fail_fails_the_late_run_and_stops_its_running_try,
    a_task_within_concerns_that_task_only,
);

/// A manual run's data interval ends at its logical date, 2026-01-01T00:00:00Z, so its
/// `at = "06:00"` deadline falls at 06:00 UTC that day.
fn dag_toml(id: &str, deadline: &str) -> String {
    format!(
        "id = \"{id}\"\non_failure = {{ url = \"http://hooks.test/failure\" }}\n{deadline}\n\
         [tasks.load]\ntype = \"noop\"\n\
         [tasks.report]\ntype = \"noop\"\ndepends_on = [\"load\"]\n"
    )
}

fn deadline_callbacks(all: &[CallbackRequest]) -> Vec<&CallbackRequest> {
    all.iter()
        .filter(|c| c.event == CallbackEvent::DeadlineMissed)
        .collect()
}

/// A manual run at 2026-01-01T00:00:00Z of DAG `id` with `deadline` (see [`dag_toml`]).
async fn run_of(store: &Store, id: &str, deadline: &str) -> DagRun {
    run_at_new_year(store, id, &dag_toml(id, deadline)).await
}

/// A manual run at 2026-01-01T00:00:00Z of DAG `id` from `toml`.
async fn run_at_new_year(store: &Store, id: &str, toml: &str) -> DagRun {
    let dag = add_dag(store, id, toml, false).await;
    trigger(store, &dag, t("2026-01-01T00:00:00Z")).await
}

/// Claims the run's roots (as worker `w1`, with a long lease) and finishes nothing.
async fn claim_all(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<nightshift_store::RunningTry> {
    store
        .claim(&ClaimRequest {
            limit: 10,
            lease: Duration::from_secs(24 * 3600),
            ..nightshift_testkit::claim_request("w1", now)
        })
        .await
        .expect("claim")
}

async fn a_late_run_is_announced_once_with_a_link(store: Store) {
    let run = run_of(&store, "late", "[deadline]\nat = \"06:00\"").await;
    let s = scheduler(&store, "s1");
    s.tick(t("2026-01-01T00:00:01Z")).await.expect("tick");
    let claimed = claim_all(&store, t("2026-01-01T00:00:02Z")).await;
    assert_eq!(claimed.len(), 1);
    // Still running, but not yet due.
    let report = s.tick(t("2026-01-01T05:59:59Z")).await.expect("tick");
    assert_eq!(report.deadlines_missed, 0);
    assert!(store
        .deadline_misses(run.id)
        .await
        .expect("misses")
        .is_empty());
    // Due: recorded and announced once, however many ticks follow.
    let report = s.tick(t("2026-01-01T06:00:00Z")).await.expect("tick");
    assert_eq!(report.deadlines_missed, 1);
    for minute in 1..4 {
        let report = s
            .tick(t("2026-01-01T06:00:00Z") + secs(60 * minute))
            .await
            .expect("tick");
        assert_eq!(report.deadlines_missed, 0);
    }
    let misses = store.deadline_misses(run.id).await.expect("misses");
    assert_eq!(misses.len(), 1, "{misses:?}");
    assert_eq!(misses[0].task_id, None);
    assert_eq!(misses[0].deadline, "at 06:00 (UTC)");
    assert_eq!(misses[0].due_at, t("2026-01-01T06:00:00Z"));
    assert!(!misses[0].failed);
    let all = store.list_callbacks(Some("late"), 50).await.expect("list");
    let late = deadline_callbacks(&all);
    assert_eq!(late.len(), 1, "{all:?}");
    assert_eq!(late[0].kind, CallbackKind::DagRun);
    assert_eq!(late[0].run_id, run.run_id);
    // No on_deadline_missed: the DAG's on_failure callback gets it.
    assert_eq!(late[0].callback["url"], "http://hooks.test/failure");
    // The message the sender builds names the deadline and links to the run page.
    let (text, event) = nightshift_scheduler::callback_message(late[0], "http://ui.test");
    let link = format!(
        "http://ui.test/dags/late/runs/{}",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );
    assert_eq!(event["event"], "deadline_missed");
    assert_eq!(event["link"], link.as_str());
    assert_eq!(event["deadline"], "at 06:00 (UTC)");
    assert!(text.contains("missed its deadline"), "{text}");
    assert!(text.contains(&link), "{text}");
    // The run goes on.
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Running
    );
}

async fn two_schedulers_announce_a_late_run_once(store: Store) {
    let toml = dag_toml(
        "late2",
        "on_deadline_missed = { slack_webhook = \"http://hooks.test/late\" }\n[deadline]\nat = \"06:00\"",
    );
    let run = run_at_new_year(&store, "late2", &toml).await;
    let (a, b) = (scheduler(&store, "s1"), scheduler(&store, "s2"));
    a.tick(t("2026-01-01T00:00:01Z")).await.expect("tick");
    claim_all(&store, t("2026-01-01T00:00:02Z")).await;
    // Both tick at the same instant, at once, several times.
    let due = t("2026-01-01T06:00:00Z");
    let mut recorded = 0;
    for i in 0..3 {
        let now = due + secs(i);
        let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
        recorded += ra.expect("tick a").deadlines_missed + rb.expect("tick b").deadlines_missed;
    }
    assert_eq!(recorded, 1);
    assert_eq!(
        store.deadline_misses(run.id).await.expect("misses").len(),
        1
    );
    let all = store.list_callbacks(Some("late2"), 50).await.expect("list");
    let late = deadline_callbacks(&all);
    assert_eq!(late.len(), 1, "{all:?}");
    // on_deadline_missed replaces on_failure.
    assert_eq!(late[0].callback["type"], "slack");
    assert_eq!(late[0].callback["webhook"], "http://hooks.test/late");
}

async fn a_run_finished_before_its_deadline_is_not_late(store: Store) {
    let run = run_of(&store, "ontime", "[deadline]\nwithin = \"1h\"").await;
    let s = scheduler(&store, "s1");
    let (state, _) = crate::common::drive(
        &store,
        &s,
        &run,
        t("2026-01-01T00:00:01Z"),
        &crate::common::succeed,
    )
    .await;
    assert_eq!(state, RunState::Success);
    for hours in [1, 2, 24] {
        s.tick(t("2026-01-01T00:00:01Z") + secs(3600 * hours))
            .await
            .expect("tick");
    }
    assert!(store
        .deadline_misses(run.id)
        .await
        .expect("misses")
        .is_empty());
    let all = store
        .list_callbacks(Some("ontime"), 50)
        .await
        .expect("list");
    assert!(deadline_callbacks(&all).is_empty(), "{all:?}");
}

async fn a_failed_run_is_not_late(store: Store) {
    let run = run_of(&store, "failing", "[deadline]\nat = \"06:00\"").await;
    let s = scheduler(&store, "s1");
    let fail = |_: &nightshift_store::TaskInstance| Outcome::Fail;
    let (state, _) = crate::common::drive(&store, &s, &run, t("2026-01-01T00:00:01Z"), &fail).await;
    assert_eq!(state, RunState::Failed);
    s.tick(t("2026-01-01T06:00:00Z")).await.expect("tick");
    s.tick(t("2026-01-02T06:00:00Z")).await.expect("tick");
    assert!(store
        .deadline_misses(run.id)
        .await
        .expect("misses")
        .is_empty());
    let all = store
        .list_callbacks(Some("failing"), 50)
        .await
        .expect("list");
    assert!(deadline_callbacks(&all).is_empty(), "{all:?}");
    // Only the run's failure was announced.
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].event, CallbackEvent::Failure);
}

async fn fail_fails_the_late_run_and_stops_its_running_try(store: Store) {
    let run = run_of(&store, "strict", "[deadline]\nwithin = \"2h\"\nfail = true").await;
    let s = scheduler(&store, "s1");
    s.tick(t("2026-01-01T00:00:01Z")).await.expect("tick");
    let mut claimed = claim_all(&store, t("2026-01-01T00:00:02Z")).await;
    assert_eq!(claimed.len(), 1);
    let load = claimed[0].instance().id;
    // The run started at its first tick: due two hours later.
    s.tick(t("2026-01-01T02:00:00Z")).await.expect("tick");
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Running
    );
    s.tick(t("2026-01-01T02:00:01Z")).await.expect("tick");
    let states = crate::common::states(&store, &run).await;
    assert_eq!(states["load"], TaskState::Failed);
    assert_eq!(states["report"], TaskState::Skipped);
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Failed
    );
    let misses = store.deadline_misses(run.id).await.expect("misses");
    assert_eq!(misses.len(), 1);
    assert!(misses[0].failed);
    // The running try is stopped: its worker's heartbeat finds the lease gone, and its
    // late success loses.
    let try_ = claimed.remove(0);
    let beat = try_.heartbeat(Duration::from_secs(60)).await;
    assert!(beat.expect_err("lease gone").is_stale());
    let late = try_
        .finish(nightshift_testkit::success(t("2026-01-01T02:00:05Z")))
        .await;
    assert!(late.expect_err("stale").is_stale());
    // The try says why it ended.
    let attempts = store.list_attempts(load).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, TaskState::Failed);
    let error = attempts[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("missed its deadline (within 2h"), "{error}");
    // Announced once as late, and once as failed.
    let all = store
        .list_callbacks(Some("strict"), 50)
        .await
        .expect("list");
    let events: BTreeMap<String, usize> = all.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.event.to_string()).or_default() += 1;
        m
    });
    assert_eq!(
        events,
        BTreeMap::from([("deadline_missed".into(), 1), ("failure".into(), 1)])
    );
    let late_cb = deadline_callbacks(&all)[0];
    assert_eq!(late_cb.payload["fail"], true);
}

async fn a_task_within_concerns_that_task_only(store: Store) {
    let toml = "id = \"tasks\"\non_failure = { url = \"http://hooks.test/failure\" }\n\
        [tasks.quick]\ntype = \"noop\"\ndeadline = { within = \"10m\" }\n\
        [tasks.slow]\ntype = \"noop\"\ndeadline = { within = \"30m\", fail = true }\n\
        [tasks.free]\ntype = \"noop\"\n\
        [tasks.after]\ntype = \"noop\"\ndepends_on = [\"slow\"]\n";
    let run = run_at_new_year(&store, "tasks", toml).await;
    let mut cfg = config("s1");
    cfg.base_url = "http://ui.test".into();
    let s = Scheduler::new(store.clone(), cfg);
    s.tick(t("2026-01-01T00:00:01Z")).await.expect("tick");
    // The worker claims the three roots at 00:00:02 and finishes only `quick`, in time.
    let claimed = claim_all(&store, t("2026-01-01T00:00:02Z")).await;
    assert_eq!(claimed.len(), 3);
    let mut slow_try = None;
    for c in claimed {
        if c.instance().task_id == "quick" {
            c.finish(nightshift_testkit::success(t("2026-01-01T00:05:00Z")))
                .await
                .expect("finish");
        } else if c.instance().task_id == "slow" {
            slow_try = Some(c);
        }
    }
    let slow_try = slow_try.expect("slow claimed");
    // Past quick's 10 minutes (it finished), before slow's 30.
    let report = s.tick(t("2026-01-01T00:20:00Z")).await.expect("tick");
    assert_eq!(report.deadlines_missed, 0);
    // Past slow's 30 minutes from its try's start: slow only, and slow is failed.
    let report = s.tick(t("2026-01-01T00:30:02Z")).await.expect("tick");
    assert_eq!(report.deadlines_missed, 1);
    let misses = store.deadline_misses(run.id).await.expect("misses");
    assert_eq!(misses.len(), 1, "{misses:?}");
    assert_eq!(misses[0].task_id.as_deref(), Some("slow"));
    assert_eq!(misses[0].due_at, t("2026-01-01T00:30:02Z"));
    let all = store.list_callbacks(Some("tasks"), 50).await.expect("list");
    let late = deadline_callbacks(&all);
    assert_eq!(late.len(), 1, "{all:?}");
    assert_eq!(
        (late[0].kind, late[0].task_id.as_deref()),
        (CallbackKind::Task, Some("slow"))
    );
    let (text, event) = nightshift_scheduler::callback_message(late[0], "http://ui.test");
    assert_eq!(
        event["link"],
        format!(
            "http://ui.test/dags/tasks/runs/{}/tasks/slow?map_index=-1",
            run.run_id.replace(':', "%3A").replace('+', "%2B")
        )
    );
    assert!(text.contains("task slow"), "{text}");
    // The running try of slow is stopped; free (no deadline) still runs.
    assert!(slow_try
        .heartbeat(Duration::from_secs(60))
        .await
        .expect_err("lease gone")
        .is_stale());
    s.tick(t("2026-01-01T00:30:03Z")).await.expect("tick");
    let states = crate::common::states(&store, &run).await;
    assert_eq!(states["quick"], TaskState::Success);
    assert_eq!(states["slow"], TaskState::Failed);
    assert_eq!(states["after"], TaskState::UpstreamFailed);
    assert_eq!(states["free"], TaskState::Running);
    // Later ticks add nothing.
    work(
        &store,
        "w2",
        t("2026-01-01T01:00:00Z"),
        &crate::common::succeed,
    )
    .await;
    s.tick(t("2026-01-01T02:00:00Z")).await.expect("tick");
    assert_eq!(
        store.deadline_misses(run.id).await.expect("misses").len(),
        1
    );
}
