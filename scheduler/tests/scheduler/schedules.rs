//! Scheduled runs: due intervals with and without catch-up, idempotent across schedulers,
//! none for paused or unscheduled DAGs, and max_active_runs.

use nightshift_core::state::RunState;
use nightshift_store::{RunFilter, Store};

use crate::common::{add_dag, both_backends, scheduler, t};

both_backends!(
    catchup_creates_every_due_interval_once,
    without_catchup_only_the_latest_interval,
    paused_and_unscheduled_dags_get_no_runs,
    max_active_runs_limits_running_runs,
);

fn hourly(id: &str, catchup: bool, max_active_runs: u32) -> String {
    format!(
        "id = \"{id}\"\nschedule = \"0 * * * *\"\ntimezone = \"UTC\"\nstart_date = \"2026-01-01\"\n\
         catchup = {catchup}\nmax_active_runs = {max_active_runs}\n[tasks.a]\ntype = \"noop\"\n"
    )
}

async fn logical_dates(store: &Store, dag_id: &str) -> Vec<String> {
    let mut runs = store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.to_owned()),
            ..RunFilter::default()
        })
        .await
        .expect("list runs");
    runs.reverse();
    runs.iter().map(|r| r.run_id.clone()).collect()
}

async fn catchup_creates_every_due_interval_once(store: Store) {
    add_dag(&store, "hourly", &hourly("hourly", true, 16), false).await;
    let now = t("2026-01-01T05:30:00Z");
    // Two schedulers tick the same instant, concurrently and then again.
    let (a, b) = (scheduler(&store, "s1"), scheduler(&store, "s2"));
    let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
    let created = ra.expect("tick a").runs_created + rb.expect("tick b").runs_created;
    assert_eq!(created, 5);
    a.tick(now).await.expect("tick again");
    let expected: Vec<String> = (0..5)
        .map(|h| format!("scheduled__2026-01-01T0{h}:00:00+00:00"))
        .collect();
    assert_eq!(logical_dates(&store, "hourly").await, expected);
    // The next interval is due once it has ended, and only then.
    let report = a.tick(t("2026-01-01T05:59:59Z")).await.expect("tick");
    assert_eq!(report.runs_created, 0);
    let report = b.tick(t("2026-01-01T06:00:00Z")).await.expect("tick");
    assert_eq!(report.runs_created, 1);
    let run = store
        .get_run_by_run_id("hourly", "scheduled__2026-01-01T05:00:00+00:00")
        .await
        .expect("get")
        .expect("run 05:00");
    assert_eq!(run.data_interval_end, t("2026-01-01T06:00:00Z"));
    assert_eq!(
        store.list_task_instances(run.id).await.expect("tis").len(),
        1
    );
}

async fn without_catchup_only_the_latest_interval(store: Store) {
    add_dag(&store, "latest", &hourly("latest", false, 16), false).await;
    let s = scheduler(&store, "s1");
    s.tick(t("2026-01-01T05:30:00Z")).await.expect("tick");
    s.tick(t("2026-01-01T05:31:00Z")).await.expect("tick");
    assert_eq!(
        logical_dates(&store, "latest").await,
        vec!["scheduled__2026-01-01T04:00:00+00:00"]
    );
    // Hours later: again only the latest, no backlog.
    s.tick(t("2026-01-01T09:10:00Z")).await.expect("tick");
    assert_eq!(
        logical_dates(&store, "latest").await,
        vec![
            "scheduled__2026-01-01T04:00:00+00:00",
            "scheduled__2026-01-01T08:00:00+00:00"
        ]
    );
}

async fn paused_and_unscheduled_dags_get_no_runs(store: Store) {
    add_dag(&store, "paused", &hourly("paused", true, 16), true).await;
    add_dag(
        &store,
        "manual",
        "id = \"manual\"\n[tasks.a]\ntype = \"noop\"\n",
        false,
    )
    .await;
    let s = scheduler(&store, "s1");
    let report = s.tick(t("2026-01-03T00:00:00Z")).await.expect("tick");
    assert_eq!(report.runs_created, 0);
    assert!(logical_dates(&store, "paused").await.is_empty());
    assert!(logical_dates(&store, "manual").await.is_empty());
}

async fn max_active_runs_limits_running_runs(store: Store) {
    add_dag(&store, "limited", &hourly("limited", true, 2), false).await;
    let s = scheduler(&store, "s1");
    let report = s.tick(t("2026-01-01T05:30:00Z")).await.expect("tick");
    assert_eq!((report.runs_created, report.runs_started), (5, 2));
    let running = store
        .count_runs("limited", &[RunState::Running])
        .await
        .expect("count");
    assert_eq!(running, 2);
    // The oldest two run first.
    let first = store
        .get_run_by_run_id("limited", "scheduled__2026-01-01T00:00:00+00:00")
        .await
        .expect("get")
        .expect("run");
    assert_eq!(first.state, RunState::Running);
    // A second scheduler starts none beyond the limit.
    let report = scheduler(&store, "s2")
        .tick(t("2026-01-01T05:30:01Z"))
        .await
        .expect("tick");
    assert_eq!(report.runs_started, 0);
}
