//! A run's progress through the real loop: a chain in order, retries after their delay,
//! exhausted retries failing the run, and dagrun_timeout.

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::Store;

use crate::common::{
    add_dag, both_backends, scheduler, secs, started, succeed, t, trigger, work, Outcome,
};

both_backends!(
    chain_runs_in_order_to_success,
    retry_waits_for_its_delay_then_fails_the_run,
    dagrun_timeout_fails_the_run_and_its_unfinished_tasks,
);

const CHAIN: &str = "id = \"chain\"\n[tasks.a]\ntype = \"noop\"\n\
    [tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n\
    [tasks.c]\ntype = \"noop\"\ndepends_on = [\"b\"]\n";

async fn chain_runs_in_order_to_success(store: Store) {
    let dag = add_dag(&store, "chain", CHAIN, false).await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(&store, "s1");
    let mut now = t("2026-01-01T00:00:01Z");
    let mut order = Vec::new();
    for _ in 0..10 {
        s.tick(now).await.expect("tick");
        now += secs(1);
        let done = work(&store, "w1", now, &succeed).await;
        // Never more than one task of a chain at a time.
        assert!(done.len() <= 1, "{done:?}");
        order.extend(done.into_iter().map(|ti| ti.task_id));
        now += secs(1);
    }
    assert_eq!(order, ["a", "b", "c"]);
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Success);
    assert!(run.end_date.is_some());
}

async fn retry_waits_for_its_delay_then_fails_the_run(store: Store) {
    let dag = add_dag(
        &store,
        "flaky",
        "id = \"flaky\"\n[tasks.f]\ntype = \"noop\"\nretries = 2\nretry_delay = \"1m\"\n\
         [tasks.after]\ntype = \"noop\"\ndepends_on = [\"f\"]\n",
        false,
    )
    .await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(&store, "s1");
    let fail = |_: &nightshift_store::TaskInstance| Outcome::Fail;
    let mut now = t("2026-01-01T00:00:01Z");
    for try_number in 1..=3 {
        s.tick(now).await.expect("tick");
        let done = work(&store, "w1", now, &fail).await;
        assert_eq!(done.len(), 1, "try {try_number}");
        let ti = &done[0];
        assert_eq!(ti.try_number, try_number);
        if try_number < 3 {
            assert_eq!(ti.state, TaskState::UpForRetry);
            let retry_at = ti.next_retry_at.expect("next_retry_at");
            assert!(retry_at > now);
            // Before the delay has passed it is not scheduled again.
            s.tick(retry_at - secs(1)).await.expect("tick");
            let ti = nightshift_testkit::instance(&store, ti.id).await;
            assert_eq!(ti.state, TaskState::UpForRetry);
            now = retry_at;
        } else {
            assert_eq!(ti.state, TaskState::Failed);
        }
    }
    s.tick(now + secs(1)).await.expect("tick");
    let states = crate::common::states(&store, &run).await;
    assert_eq!(states["f"], TaskState::Failed);
    assert_eq!(states["after"], TaskState::UpstreamFailed);
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Failed);
    let attempts = store
        .list_attempts(
            store
                .find_task_instance(run.id, "f", -1)
                .await
                .expect("find")
                .expect("f")
                .id,
        )
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 3);
}

async fn dagrun_timeout_fails_the_run_and_its_unfinished_tasks(store: Store) {
    let dag = add_dag(
        &store,
        "slow",
        "id = \"slow\"\ndagrun_timeout = \"10m\"\n[tasks.a]\ntype = \"noop\"\n\
         [tasks.b]\ntype = \"noop\"\n[tasks.c]\ntype = \"noop\"\ndepends_on = [\"a\"]\n",
        false,
    )
    .await;
    let (run, s, start) = started(&store, &dag).await;
    // The worker claims both roots but finishes nothing in time.
    let mut claimed = store
        .claim(&nightshift_store::ClaimRequest {
            limit: 10,
            lease: std::time::Duration::from_secs(3600),
            ..nightshift_testkit::claim_request("w1", start)
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let ids: Vec<i64> = claimed.iter().map(|c| c.instance().id).collect();
    s.tick(start + secs(9 * 60)).await.expect("tick");
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Running
    );
    s.tick(start + secs(11 * 60)).await.expect("tick");
    let states = crate::common::states(&store, &run).await;
    assert_eq!(states["a"], TaskState::Failed);
    assert_eq!(states["b"], TaskState::Failed);
    assert_eq!(states["c"], TaskState::Skipped);
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Failed
    );
    // The running worker's late success loses.
    let late = claimed
        .remove(0)
        .finish(nightshift_testkit::success(start + secs(12 * 60)))
        .await;
    assert!(late.expect_err("stale").is_stale());
    // Both tries were closed when the run timed out, saying why.
    for id in ids {
        let attempts = store.list_attempts(id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].state, TaskState::Failed);
        assert_eq!(attempts[0].end_date, Some(start + secs(11 * 60)));
        assert_eq!(
            attempts[0].error.as_deref(),
            Some("the run exceeded its dagrun_timeout of 10m")
        );
    }
}
