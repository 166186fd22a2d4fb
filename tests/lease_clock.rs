//! Leases in database time: a real scheduler and a real worker whose wall clock is
//! skewed by minutes (as on a machine without NTP) share one store. A worker five
//! minutes behind is not reaped while it heartbeats (no second try beside the live one);
//! a worker five minutes ahead that dies is reaped within its lease, not minutes late.

mod inprocess;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use inprocess::{queued_manual_run, quick_worker, start_scheduler, start_worker};
use nightshift_core::dag::Dag;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, Store};
use nightshift_worker::{Clock, WorkerConfig};

/// Each test gets two stores on one fresh database: the scheduler's, and the worker's own
/// (its own pool), so that the worker can lose the database alone.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod pg {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    let worker_pool = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(4)
                        .connect_with((*pool.connect_options()).clone())
                        .await
                        .expect("worker pool");
                    let store = nightshift_testkit::pg_store(pool).await;
                    super::$name(store, nightshift_store::Store::from_pg_pool(worker_pool)).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let temp = nightshift_testkit::sqlite_store().await;
                    let worker_store = nightshift_store::Store::connect(&temp.url).await.expect("connect");
                    super::$name(temp.store.clone(), worker_store).await;
                }
            )+
        }
    };
}

both_backends!(
    worker_clock_behind_is_not_reaped_early,
    worker_clock_ahead_is_not_kept_alive_late
);

/// The skew of the worker machine's clock.
const SKEW_MINUTES: i64 = 5;
const LEASE: Duration = Duration::from_secs(2);

fn worker_config(id: &str, skew: TimeDelta) -> WorkerConfig {
    WorkerConfig {
        lease: LEASE,
        clock: Clock::skewed(skew),
        ..quick_worker(id, "skewed-host")
    }
}

/// Stores `toml` as a DAG and creates a queued manual run of it (the scheduler starts it).
async fn seed(store: &Store, toml: &str) -> (Dag, DagRun) {
    let dag = nightshift_testkit::seed_dag(store, "dags/skew.toml", toml).await;
    let run = queued_manual_run(store, &dag, "manual__skew").await;
    (dag, run)
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker whose clock is five minutes behind runs a task for several leases: the
/// scheduler never reaps it, and the run succeeds with exactly one try.
async fn worker_clock_behind_is_not_reaped_early(store: Store, worker_store: Store) {
    let toml = "id = \"skew\"\n[tasks.slow]\ntype = \"command\"\ncommand = \"sleep 3\"\nretries = 2\nretry_delay = \"1s\"\n";
    let (_dag, run) = seed(&store, toml).await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(
        &worker_store,
        worker_config("behind", -TimeDelta::minutes(SKEW_MINUTES)),
    );
    wait_for("the run to finish", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            let run = nightshift_testkit::dag_run(&store, run.id).await;
            run.state.is_finished()
        }
    })
    .await;
    worker.stop().await;
    scheduler.stop().await;

    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Success);
    let instances = store.list_task_instances(run.id).await.expect("instances");
    assert_eq!(instances.len(), 1);
    let attempts = store
        .list_attempts(instances[0].id)
        .await
        .expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| a.state).collect::<Vec<_>>(),
        [TaskState::Success],
        "one try, never reaped: {attempts:?}"
    );
}

/// A worker whose clock is five minutes ahead claims a long task and is then cut off
/// from the database: the scheduler reaps the try about one lease after its last heartbeat, not five
/// minutes later.
async fn worker_clock_ahead_is_not_kept_alive_late(store: Store, worker_store: Store) {
    let toml = "id = \"skew\"\n[tasks.long]\ntype = \"command\"\ncommand = \"sleep 120\"\nretries = 1\nretry_delay = \"10m\"\n";
    let (_dag, run) = seed(&store, toml).await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(
        &worker_store,
        worker_config("ahead", TimeDelta::minutes(SKEW_MINUTES)),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let ti_id = loop {
        let instances = store.list_task_instances(run.id).await.expect("instances");
        if let Some(ti) = instances.iter().find(|ti| ti.state == TaskState::Running) {
            break ti.id;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the try to run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Heartbeats go on for a few lease lengths, then the worker loses the database for
    // good (its machine is cut off): nothing it does reaches the store any more.
    tokio::time::sleep(LEASE * 2).await;
    worker_store.close().await;
    let died = Instant::now();

    wait_for("the dead worker's try to be reaped", LEASE * 6, || {
        let store = store.clone();
        async move {
            let ti = nightshift_testkit::instance(&store, ti_id).await;
            ti.state != TaskState::Running
        }
    })
    .await;
    assert!(
        died.elapsed() >= LEASE / 2,
        "reaped {:?} after the worker died, before its lease could run out",
        died.elapsed()
    );
    scheduler.stop().await;
    // The cut-off worker cannot record anything any more; it is not waited for.
    worker.kill().await;
    let attempts = store.list_attempts(ti_id).await.expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].state, TaskState::UpForRetry);
    assert!(
        attempts[0].error.as_deref().unwrap_or("").contains("ahead"),
        "{attempts:?}"
    );
}
