//! Shared fixtures: the macro that runs one test body on both backends, and seed data.

use chrono::{DateTime, Utc};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{
    Attempt, DagRun, DagUpsert, NewRun, NewTaskInstance, RunType, RunningTry, Store,
};
use serde_json::json;

pub(crate) use nightshift_testkit::both_backends;
pub use nightshift_testkit::t;

pub fn dag(dag_id: &str, now: DateTime<Utc>) -> DagUpsert {
    DagUpsert {
        dag_id: dag_id.to_owned(),
        file_path: format!("dags/{dag_id}.toml"),
        definition: json!({"id": dag_id, "tasks": {"a": {"type": "noop"}}}),
        source_hash: "hash-1".to_owned(),
        schedule: Some("0 3 * * *".to_owned()),
        timezone: "Asia/Tokyo".to_owned(),
        description: Some("a test DAG".to_owned()),
        owner: Some("data".to_owned()),
        tags: vec!["nightly".to_owned()],
        is_paused: false,
        now,
    }
}

/// Stores the DAG `dag_id` as of 2026-01-01 (see [`dag`]).
pub async fn stored_dag(store: &Store, dag_id: &str) {
    let upsert = dag(dag_id, t("2026-01-01T00:00:00Z"));
    store.upsert_dag(&upsert).await.expect("dag");
}

pub fn new_run(dag_id: &str, logical_date: DateTime<Utc>) -> NewRun {
    NewRun {
        dag_id: dag_id.to_owned(),
        run_id: format!("scheduled__{}", logical_date.to_rfc3339()),
        run_type: RunType::Scheduled,
        logical_date,
        data_interval_start: logical_date,
        data_interval_end: logical_date + chrono::Duration::days(1),
        state: RunState::Queued,
        conf: json!({}),
        queued_at: logical_date + chrono::Duration::days(1),
        definition_hash: "hash-1".to_owned(),
    }
}

pub fn new_ti(task_id: &str, state: TaskState) -> NewTaskInstance {
    NewTaskInstance {
        task_id: task_id.to_owned(),
        map_index: -1,
        state,
        max_tries: 2,
        kind: "noop".to_owned(),
        queue: "default".to_owned(),
        pool: "default_pool".to_owned(),
        pool_slots: 1,
        priority: 0,
    }
}

/// A DAG and one run of it with the given task instances.
pub async fn seed_run(store: &Store, dag_id: &str, tasks: &[NewTaskInstance]) -> DagRun {
    let now = t("2026-01-02T03:00:00Z");
    store
        .upsert_dag(&dag(dag_id, now))
        .await
        .expect("upsert dag");
    let (run, _) = store
        .create_run_with_tasks(&new_run(dag_id, t("2026-01-01T03:00:00Z")), tasks)
        .await
        .expect("create run")
        .expect("a new run");
    run
}

/// Starts the queued run `run` and ends it in `end`, as the scheduler would.
pub async fn finish_run(store: &Store, run: i64, end: RunState, now: DateTime<Utc>) -> DagRun {
    store
        .set_run_state(run, RunState::Queued, RunState::Running, now)
        .await
        .expect("run starts");
    store
        .set_run_state(run, RunState::Running, end, now)
        .await
        .unwrap_or_else(|e| panic!("run ends {end}: {e}"))
}

/// Checks that the claimed try `c` is its instance's first, running, with one attempt (its
/// own); that attempt.
pub async fn first_try(store: &Store, c: &RunningTry) -> Attempt {
    assert_eq!(c.instance().state, TaskState::Running);
    assert_eq!(c.instance().try_number, 1);
    let mut attempts = store
        .list_attempts(c.instance().id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].id, c.attempt_id());
    attempts.remove(0)
}
