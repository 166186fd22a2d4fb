//! DAG runs: idempotent creation, lookups, lists, state compare-and-set, scheduler leases.

use std::time::Duration;

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{RunClaim, RunFilter, RunType, Store, StoreError};
use serde_json::json;

use crate::common::{both_backends, dag, new_run, new_ti, stored_dag, t};

both_backends!(
    create_run_is_idempotent,
    concurrent_creators_make_one_run,
    create_run_with_tasks_and_fan_out,
    list_and_count_runs,
    run_state_is_compare_and_set,
    schedulers_claim_disjoint_runs,
);

async fn create_run_is_idempotent(store: Store) {
    let now = t("2026-01-02T03:00:00Z");
    store.upsert_dag(&dag("d", now)).await.expect("dag");
    let mut run = new_run("d", t("2026-01-01T03:00:00Z"));
    run.conf = json!({"table": "Student", "limit": 10});
    let created = store.create_run(&run).await.expect("create").expect("new");
    assert_eq!(created.run_id, run.run_id);
    assert_eq!(created.run_type, RunType::Scheduled);
    assert_eq!(created.state, RunState::Queued);
    assert_eq!(created.conf, run.conf);
    assert_eq!(created.logical_date, run.logical_date);
    assert_eq!(created.data_interval_end, run.data_interval_end);
    assert_eq!(created.start_date, None);

    // Same DAG and logical date: nothing new.
    assert_eq!(store.create_run(&run).await.expect("again"), None);
    let mut manual = run.clone();
    manual.run_id = "manual__x".to_owned();
    manual.run_type = RunType::Manual;
    assert_eq!(store.create_run(&manual).await.expect("manual"), None);

    // Same run id at another logical date: a conflict.
    let mut clash = new_run("d", t("2026-01-05T03:00:00Z"));
    clash.run_id = run.run_id.clone();
    assert!(matches!(
        store.create_run(&clash).await,
        Err(StoreError::Conflict { .. })
    ));

    assert_eq!(
        store.get_run(created.id).await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(
        store
            .get_run_by_run_id("d", &run.run_id)
            .await
            .expect("get"),
        Some(created.clone())
    );
    assert_eq!(store.get_run(created.id + 1000).await.expect("get"), None);

    // A run created running starts at once.
    let mut running = new_run("d", t("2026-01-03T03:00:00Z"));
    running.state = RunState::Running;
    let started = store
        .create_run(&running)
        .await
        .expect("create")
        .expect("new");
    assert_eq!(started.start_date, Some(running.queued_at));
}

async fn concurrent_creators_make_one_run(store: Store) {
    stored_dag(&store, "d").await;
    let run = new_run("d", t("2026-01-01T03:00:00Z"));
    let tasks = ["a", "b"].map(|id| new_ti(id, TaskState::Pending));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (store, run, tasks) = (store.clone(), run.clone(), tasks.clone());
        set.spawn(async move { store.create_run_with_tasks(&run, &tasks).await });
    }
    let mut created = 0;
    while let Some(result) = set.join_next().await {
        if result.expect("join").expect("create").is_some() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    let runs = store.list_runs(&RunFilter::default()).await.expect("list");
    assert_eq!(runs.len(), 1);
    let tis = store.list_task_instances(runs[0].id).await.expect("tis");
    assert_eq!(tis.len(), 2);
}

async fn create_run_with_tasks_and_fan_out(store: Store) {
    stored_dag(&store, "d").await;
    let run = new_run("d", t("2026-01-01T03:00:00Z"));
    let tasks = vec![
        new_ti("b", TaskState::Pending),
        new_ti("a", TaskState::Scheduled),
    ];
    let (created, tis) = store
        .create_run_with_tasks(&run, &tasks)
        .await
        .expect("create")
        .expect("new");
    assert_eq!(tis.len(), 2);
    for ti in &tis {
        assert_eq!(ti.run, created.id);
        assert_eq!(ti.dag_id, "d");
        assert_eq!(ti.try_number, 0);
        assert_eq!(ti.map_index, -1);
        assert_eq!(ti.updated_at, run.queued_at);
    }
    // A second creation writes nothing, not even task instances.
    assert_eq!(
        store
            .create_run_with_tasks(&run, &tasks)
            .await
            .expect("again"),
        None
    );

    // Fan-out from an upstream's output: inserting twice adds each instance once.
    let mapped: Vec<_> = (0..3)
        .map(|i| nightshift_store::NewTaskInstance {
            map_index: i,
            ..new_ti("mapped", TaskState::Pending)
        })
        .collect();
    let now = t("2026-01-02T03:01:00Z");
    let first = store
        .insert_task_instances(created.id, &mapped, now)
        .await
        .expect("fan out");
    assert_eq!(first.len(), 3);
    let second = store
        .insert_task_instances(created.id, &mapped, now)
        .await
        .expect("fan out again");
    assert!(second.is_empty());
    let listed = store.list_task_instances(created.id).await.expect("list");
    let keys: Vec<_> = listed
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti.map_index))
        .collect();
    assert_eq!(
        keys,
        [
            ("a", -1),
            ("b", -1),
            ("mapped", 0),
            ("mapped", 1),
            ("mapped", 2)
        ]
    );
    let found = store
        .find_task_instance(created.id, "mapped", 2)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(
        store.get_task_instance(found.id).await.expect("get"),
        Some(found)
    );
    let grid = store
        .list_task_instances_for_runs(&[created.id, created.id + 999])
        .await
        .expect("grid");
    assert_eq!(grid, listed);

    assert!(matches!(
        store
            .insert_task_instances(created.id + 999, &mapped, now)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn list_and_count_runs(store: Store) {
    let now = t("2026-01-01T00:00:00Z");
    store.upsert_dag(&dag("d", now)).await.expect("dag");
    store.upsert_dag(&dag("e", now)).await.expect("dag");
    let mut ids = Vec::new();
    for day in 1..=4 {
        let mut run = new_run("d", t(&format!("2026-01-0{day}T03:00:00Z")));
        if day == 4 {
            run.run_type = RunType::Manual;
        }
        let created = store.create_run(&run).await.expect("create").expect("new");
        ids.push(created.id);
    }
    store
        .create_run(&new_run("e", t("2026-02-01T03:00:00Z")))
        .await
        .expect("create");
    let later = t("2026-01-09T00:00:00Z");
    store
        .set_run_state(ids[0], RunState::Queued, RunState::Running, later)
        .await
        .expect("run");
    store
        .set_run_state(ids[1], RunState::Queued, RunState::Running, later)
        .await
        .expect("run");
    store
        .set_run_state(ids[1], RunState::Running, RunState::Failed, later)
        .await
        .expect("fail");

    let d_runs = RunFilter {
        dag_id: Some("d".to_owned()),
        ..RunFilter::default()
    };
    let listed = run_ids(&store, &d_runs).await;
    assert_eq!(listed, [ids[3], ids[2], ids[1], ids[0]]);
    let active = RunFilter {
        states: vec![RunState::Queued, RunState::Running, RunState::Queued],
        ..d_runs.clone()
    };
    let listed = run_ids(&store, &active).await;
    assert_eq!(listed, [ids[3], ids[2], ids[0]]);
    let manual = RunFilter {
        run_type: Some(RunType::Manual),
        ..RunFilter::default()
    };
    assert_eq!(store.list_runs(&manual).await.expect("list").len(), 1);
    let page = RunFilter {
        limit: Some(2),
        offset: 1,
        ..d_runs.clone()
    };
    let listed = run_ids(&store, &page).await;
    assert_eq!(listed, [ids[2], ids[1]]);
    assert_eq!(
        store
            .list_runs(&RunFilter::default())
            .await
            .expect("all")
            .len(),
        5
    );

    assert_eq!(count_d(&store, &[]).await, 4);
    assert_eq!(
        count_d(&store, &[RunState::Queued, RunState::Running]).await,
        3
    );
    assert_eq!(count_d(&store, &[RunState::Failed]).await, 1);
    let latest = store.latest_run("d").await.expect("latest").expect("some");
    assert_eq!(latest.id, ids[3]);
    assert_eq!(store.latest_run("nope").await.expect("latest"), None);
}

/// The ids of the runs `filter` lists, in its order.
async fn run_ids(store: &Store, filter: &RunFilter) -> Vec<i64> {
    let runs = store.list_runs(filter).await.expect("list");
    runs.into_iter().map(|r| r.id).collect()
}

/// How many runs of DAG `d` are in one of `states` (any state when empty).
async fn count_d(store: &Store, states: &[RunState]) -> i64 {
    store.count_runs("d", states).await.expect("count")
}

async fn run_state_is_compare_and_set(store: Store) {
    stored_dag(&store, "d").await;
    let run = store
        .create_run(&new_run("d", t("2026-01-01T03:00:00Z")))
        .await
        .expect("create")
        .expect("new");
    let t1 = t("2026-01-02T03:00:01Z");
    let running = store
        .set_run_state(run.id, RunState::Queued, RunState::Running, t1)
        .await
        .expect("start");
    assert_eq!(running.end_date, None);
    assert_eq!(running.start_date, Some(t1));
    let stale = store
        .set_run_state(run.id, RunState::Queued, RunState::Running, t1)
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Stale {
            what: "DAG run",
            ..
        })
    ));

    let t2 = t("2026-01-02T03:10:00Z");
    let done = store
        .set_run_state(run.id, RunState::Running, RunState::Success, t2)
        .await
        .expect("finish");
    assert_eq!(done.end_date, Some(t2));
    // Cleared back to running: start_date stays, end_date goes.
    let again = store
        .set_run_state(
            run.id,
            RunState::Success,
            RunState::Running,
            t("2026-01-03T00:00:00Z"),
        )
        .await
        .expect("rerun");
    assert_eq!(again.start_date, Some(t1));
    assert_eq!(again.end_date, None);
}

async fn schedulers_claim_disjoint_runs(store: Store) {
    stored_dag(&store, "d").await;
    let mut ids = Vec::new();
    for day in 1..=5 {
        let run = new_run("d", t(&format!("2026-01-0{day}T03:00:00Z")));
        ids.push(
            store
                .create_run(&run)
                .await
                .expect("create")
                .expect("new")
                .id,
        );
    }
    // A finished run is never claimed.
    store
        .set_run_state(
            ids[4],
            RunState::Queued,
            RunState::Running,
            t("2026-01-09T00:00:00Z"),
        )
        .await
        .expect("start");
    store
        .set_run_state(
            ids[4],
            RunState::Running,
            RunState::Success,
            t("2026-01-09T00:00:00Z"),
        )
        .await
        .expect("finish");

    // Leases are in the database's clock: a short one really runs out.
    const SHORT: Duration = Duration::from_secs(2);
    const LONG: Duration = Duration::from_secs(3600);
    let claim = |scheduler: &str, limit, lease| RunClaim {
        scheduler_id: scheduler.to_owned(),
        limit,
        lease,
    };
    let ids_of =
        |runs: Vec<nightshift_store::DagRun>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let a = ids_of(store.claim_runs(&claim("a", 2, SHORT)).await.expect("a"));
    let b = ids_of(store.claim_runs(&claim("b", 10, LONG)).await.expect("b"));
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    assert!(a.iter().all(|id| !b.contains(id)));
    // Claiming again renews what one holds; nothing is free for a third scheduler.
    let a_again = ids_of(store.claim_runs(&claim("a", 10, SHORT)).await.expect("a"));
    assert_eq!(a_again, a);
    assert!(store
        .claim_runs(&claim("c", 10, LONG))
        .await
        .expect("c")
        .is_empty());
    // After a's lease expires, c takes a's runs over; after release, b's are free.
    let b_renewed = ids_of(store.claim_runs(&claim("b", 10, LONG)).await.expect("b"));
    assert_eq!(b_renewed, b);
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    let c = ids_of(store.claim_runs(&claim("c", 10, LONG)).await.expect("c"));
    assert_eq!(c, a);
    assert_eq!(store.release_runs("b").await.expect("release"), 2);
    let c = ids_of(store.claim_runs(&claim("c", 10, LONG)).await.expect("c"));
    let mut expected: Vec<_> = a.iter().chain(&b).copied().collect();
    expected.sort();
    assert_eq!(c, expected);
}
