//! Retention and the scheduler: deleting old runs leaves catch-up where it was (the newest
//! scheduled run stays, so no interval is created twice), and of two schedulers sharing
//! a database one runs the background pass, once per interval.

use std::time::Duration;

use nightshift_core::state::RunState;
use nightshift_scheduler::retention::RetentionConfig;
use nightshift_scheduler::Scheduler;
use nightshift_store::{CleanRequest, RunFilter, Store};

use crate::common::{add_dag, both_backends, config, t};

both_backends!(
    cleaning_history_leaves_catchup_where_it_was,
    one_scheduler_runs_the_background_pass,
);

/// A daily DAG with catch-up from 2026-01-01 (everything due is created in one tick).
fn daily(id: &str) -> String {
    format!(
        "id = \"{id}\"\nschedule = \"@daily\"\ntimezone = \"UTC\"\nstart_date = \"2026-01-01\"\n\
         catchup = true\nmax_active_runs = 16\n[tasks.a]\ntype = \"noop\"\n"
    )
}

async fn run_ids(store: &Store, dag_id: &str) -> Vec<String> {
    let runs = store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.to_owned()),
            ..RunFilter::default()
        })
        .await
        .expect("runs");
    runs.into_iter().rev().map(|run| run.run_id).collect()
}

/// Ends every run of `dag_id` in success at `now`, as if its tasks had run.
async fn finish_all(store: &Store, dag_id: &str, now: chrono::DateTime<chrono::Utc>) {
    let runs = store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.to_owned()),
            ..RunFilter::default()
        })
        .await
        .expect("runs");
    for run in runs {
        if run.state == RunState::Queued {
            store
                .set_run_state(run.id, RunState::Queued, RunState::Running, now)
                .await
                .expect("start");
        }
        store
            .set_run_state(run.id, RunState::Running, RunState::Success, now)
            .await
            .expect("finish");
    }
}

fn scheduler_with(store: &Store, id: &str, retention: RetentionConfig) -> Scheduler {
    let mut config = config(id);
    config.retention = retention;
    Scheduler::new(store.clone(), config)
}

async fn cleaning_history_leaves_catchup_where_it_was(store: Store) {
    add_dag(&store, "daily", &daily("daily"), false).await;
    let s = scheduler_with(&store, "s1", RetentionConfig::default());
    let now = t("2026-01-11T00:30:00Z");
    assert_eq!(s.tick(now).await.expect("tick").runs_created, 10);
    finish_all(&store, "daily", now).await;
    let report = store
        .clean(&CleanRequest {
            runs_before: Some(now + chrono::TimeDelta::seconds(1)),
            ..CleanRequest::default()
        })
        .await
        .expect("clean");
    assert_eq!(report.rows("dag_runs"), 9);
    assert_eq!(
        run_ids(&store, "daily").await,
        vec!["scheduled__2026-01-10T00:00:00+00:00"]
    );
    // Catch-up continues after the kept run: nothing again at the same time, then the
    // next day's interval only.
    assert_eq!(s.tick(now).await.expect("tick").runs_created, 0);
    let report = s.tick(t("2026-01-12T00:30:00Z")).await.expect("tick");
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        run_ids(&store, "daily").await,
        vec![
            "scheduled__2026-01-10T00:00:00+00:00",
            "scheduled__2026-01-11T00:00:00+00:00"
        ]
    );
}

async fn one_scheduler_runs_the_background_pass(store: Store) {
    add_dag(&store, "daily", &daily("daily"), false).await;
    let retention = RetentionConfig {
        history: Some(Duration::from_secs(3 * 86_400)),
        every: Duration::from_secs(3_600),
        rest_ratio: 0.0,
        ..RetentionConfig::default()
    };
    let (s1, s2) = (
        scheduler_with(&store, "s1", retention.clone()),
        scheduler_with(&store, "s2", retention),
    );
    // A scheduler without retention creates the runs (one with retention on would start
    // its background pass at this tick).
    let day10 = t("2026-01-11T00:30:00Z");
    scheduler_with(&store, "s0", RetentionConfig::default())
        .tick(day10)
        .await
        .expect("tick");
    finish_all(&store, "daily", day10).await;
    // Three days later every run is old enough; the newest scheduled run stays.
    let later = t("2026-01-14T01:00:00Z");
    let (a, b) = tokio::join!(s1.retention(later), s2.retention(later));
    let (a, b) = (a.expect("pass"), b.expect("pass"));
    assert!(
        a.is_some() ^ b.is_some(),
        "one scheduler ran it: {a:?} {b:?}"
    );
    let report = a.or(b).expect("a report");
    assert_eq!(report.rows("dag_runs"), 9);
    assert_eq!(run_ids(&store, "daily").await.len(), 1);
    // Not due again for an hour, for either.
    assert!(s1.retention(later).await.expect("pass").is_none());
    assert!(s2.retention(later).await.expect("pass").is_none());
}
