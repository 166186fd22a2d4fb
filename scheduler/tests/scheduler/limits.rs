//! Limits while queueing: max_active_tasks per DAG and pool slots, also with two
//! schedulers queueing at once.

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{Pool, Store};

use crate::common::{add_dag, both_backends, scheduler, secs, succeed, t, trigger, work};

both_backends!(
    max_active_tasks_caps_queued_and_running,
    pool_slots_are_never_exceeded,
);

fn parallel(id: &str, header: &str, task_extra: &str, n: usize) -> String {
    let mut toml = format!("id = \"{id}\"\n{header}\n");
    for i in 0..n {
        toml.push_str(&format!("[tasks.t{i}]\ntype = \"noop\"\n{task_extra}\n"));
    }
    toml
}

async fn active(store: &Store, run_id: i64) -> usize {
    store
        .list_task_instances(run_id)
        .await
        .expect("list")
        .iter()
        .filter(|ti| matches!(ti.state, TaskState::Queued | TaskState::Running))
        .count()
}

async fn max_active_tasks_caps_queued_and_running(store: Store) {
    let dag = add_dag(
        &store,
        "capped",
        &parallel("capped", "max_active_tasks = 2", "", 5),
        false,
    )
    .await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(&store, "s1");
    let mut now = t("2026-01-01T00:00:01Z");
    let report = s.tick(now).await.expect("tick");
    assert_eq!(report.queued, 2);
    let mut finished = 0;
    for _ in 0..10 {
        assert!(active(&store, run.id).await <= 2);
        now += secs(1);
        finished += work(&store, "w1", now, &succeed).await.len();
        s.tick(now).await.expect("tick");
    }
    assert_eq!(finished, 5);
    assert_eq!(
        nightshift_testkit::dag_run(&store, run.id).await.state,
        RunState::Success
    );
}

async fn pool_slots_are_never_exceeded(store: Store) {
    store
        .upsert_pool(&Pool {
            name: "narrow".into(),
            slots: 2,
            description: String::new(),
        })
        .await
        .expect("pool");
    let header = "max_active_tasks = 50\n[defaults]\npool = \"narrow\"";
    let one = add_dag(&store, "p1", &parallel("p1", header, "", 4), false).await;
    let two = add_dag(&store, "p2", &parallel("p2", header, "", 4), false).await;
    let run1 = trigger(&store, &one, t("2026-01-01T00:00:00Z")).await;
    let run2 = trigger(&store, &two, t("2026-01-01T00:00:00Z")).await;
    // Two schedulers queue at the same time: together they fill the pool, no more.
    let (a, b) = (scheduler(&store, "s1"), scheduler(&store, "s2"));
    let mut now = t("2026-01-01T00:00:01Z");
    let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
    assert_eq!(ra.expect("a").queued + rb.expect("b").queued, 2);
    for _ in 0..12 {
        let used = store.used_slots("narrow").await.expect("used");
        assert!(used <= 2, "pool overfilled: {used}");
        now += secs(1);
        work(&store, "w1", now, &succeed).await;
        let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
        ra.expect("a");
        rb.expect("b");
    }
    for run in [run1, run2] {
        assert_eq!(
            nightshift_testkit::dag_run(&store, run.id).await.state,
            RunState::Success
        );
    }
}
