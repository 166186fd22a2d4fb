//! The database's own guard on state columns (migration 0009) and the run state machine
//! behind `set_run_state`.

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{Store, StoreError};

use crate::common::{both_backends, finish_run, new_ti, seed_run, t};

both_backends!(
    database_accepts_every_state_and_rejects_an_unknown_one,
    set_run_state_refuses_a_move_no_run_event_makes,
);

/// Writes `state` into one row of `table` with raw SQL, bypassing the store's API.
async fn write_state(store: &Store, table: &str, id: i64, state: &str) -> Result<u64, sqlx::Error> {
    let sql = format!("UPDATE {table} SET state = $1 WHERE id = $2");
    if let Some(pool) = store.pg_pool() {
        return Ok(sqlx::query(&sql)
            .bind(state)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected());
    }
    let pool = store.sqlite_pool().expect("one of the two backends");
    Ok(sqlx::query(&sql)
        .bind(state)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected())
}

async fn database_accepts_every_state_and_rejects_an_unknown_one(store: Store) {
    let run = seed_run(&store, "d", &[new_ti("a", TaskState::Pending)]).await;
    let ti = store
        .list_task_instances(run.id)
        .await
        .expect("instances")
        .into_iter()
        .next()
        .expect("one instance");

    let tasks: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let runs: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
    // (the table, the row, every state it may hold, names that are no state of it)
    for (table, id, states, bogus) in [
        ("task_instances", ti.id, tasks, ["bogus", "Running", ""]),
        ("dag_runs", run.id, runs, ["bogus", "up_for_retry", ""]),
    ] {
        for state in states {
            let written = write_state(&store, table, id, state).await;
            assert_eq!(written.ok(), Some(1), "{table}: state {state} is accepted");
        }
        for bogus in bogus {
            let refused = write_state(&store, table, id, bogus).await;
            assert!(refused.is_err(), "{table}: state {bogus:?} must be refused");
        }
    }
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::ALL[RunState::ALL.len() - 1]);
}

/// Asserts that moving the run `run` from `from` to `to` is refused as a conflict and
/// leaves it in `from`; the run as it stays.
async fn assert_refused(
    store: &Store,
    run: i64,
    (from, to): (RunState, RunState),
    now: chrono::DateTime<chrono::Utc>,
) -> nightshift_store::DagRun {
    let refused = store.set_run_state(run, from, to, now).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{from} to {to}: {refused:?}"
    );
    let unchanged = nightshift_testkit::dag_run(store, run).await;
    assert_eq!(unchanged.state, from);
    unchanged
}

async fn set_run_state_refuses_a_move_no_run_event_makes(store: Store) {
    let run = seed_run(&store, "d", &[new_ti("a", TaskState::Pending)]).await;
    let now = t("2026-01-03T00:00:00Z");
    // A queued run cannot succeed without running.
    let queued_to_success = (RunState::Queued, RunState::Success);
    let unchanged = assert_refused(&store, run.id, queued_to_success, now).await;
    assert_eq!(unchanged.end_date, None);

    // Nor can a finished run change its outcome in one step.
    finish_run(&store, run.id, RunState::Success, now).await;
    let success_to_failed = (RunState::Success, RunState::Failed);
    assert_refused(&store, run.id, success_to_failed, now).await;
}
