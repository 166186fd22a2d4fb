//! Waiting costs no slot: a real scheduler and a real worker (in process) on both
//! backends. Sensors whose condition is false give their worker slot back between pokes
//! (`up_for_reschedule`), so a worker with one slot still runs other work at once; the
//! scheduler wakes them at their next poke; a sensor's pokes are one try, and its
//! timeout counts from its first poke without spending retries.

mod inprocess;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use inprocess::{instance, queued_manual_run, quick_worker, start_scheduler, wait_until};
use nightshift_core::connection::{Connection, Connections};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, Store, TaskInstance};
use nightshift_testkit::{both_backends, Service};
use nightshift_worker::WorkerConfig;
use serde_json::json;

both_backends!(
    ten_waiting_sensors_leave_the_one_slot_to_other_work,
    sensors_of_both_modes_are_woken_until_done,
    a_sensor_times_out_from_its_first_poke_without_spending_retries,
);

fn start_worker(store: &Store, concurrency: usize, connections: &[Connection]) -> Service {
    let mut known = Connections::new();
    for connection in connections {
        known.insert(connection.clone());
    }
    let config = WorkerConfig {
        concurrency,
        lease: Duration::from_secs(5),
        heartbeat_interval: Duration::from_millis(500),
        connections: known,
        ..quick_worker("w1", "test-host")
    };
    inprocess::start_worker(store, config)
}

fn connection(name: &str, uri: &str) -> Connection {
    Connection::parse(name, uri, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Stores `toml` as DAG `waits` and creates a queued manual run of it (the scheduler
/// starts it).
async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/waits.toml", toml).await;
    queued_manual_run(store, &dag, "manual__waits").await
}

/// A SQLite file with an empty table `arrivals`: the sensors' condition is false until
/// a row arrives.
async fn condition_db(dir: &tempfile::TempDir) -> (String, sqlx::SqlitePool) {
    let uri = format!("sqlite://{}", dir.path().join("cond.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("{uri}?mode=rwc"))
        .await
        .expect("sqlite");
    sqlx::query("CREATE TABLE arrivals (day TEXT)")
        .execute(&pool)
        .await
        .expect("create");
    (uri, pool)
}

/// The done-when of "waiting costs no slot": a worker with concurrency 1 and ten sensors
/// waiting on a false condition (claimed first: they have the higher priority) still
/// runs an unrelated task at once; then the condition turns true and every sensor
/// succeeds in one try that was woken several times.
async fn ten_waiting_sensors_leave_the_one_slot_to_other_work(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (uri, pool) = condition_db(&dir).await;
    let mut toml = String::new();
    for i in 0..10 {
        toml.push_str(&format!(
            "[tasks.wait_{i}]\ntype = \"sensor\"\nmode = \"sql\"\nconnection = \"cond\"\n\
             sql = \"SELECT count(*) FROM arrivals\"\npoke_interval = \"1s\"\ntimeout = \"5m\"\n\
             retries = 1\npriority = 10\n\n"
        ));
    }
    toml.push_str("[tasks.unrelated]\ntype = \"command\"\ncommand = \"true\"\npriority = 1\n");
    let run = seed(&store, &toml).await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store, 1, &[connection("cond", &uri)]);

    let sensors = |instances: &[TaskInstance]| {
        instances
            .iter()
            .filter(|ti| ti.task_id.starts_with("wait_"))
            .cloned()
            .collect::<Vec<_>>()
    };
    // Every sensor has poked once and waits without its slot; the unrelated task ran.
    let instances = wait_until(
        &store,
        &run,
        "the unrelated task to run beside ten waiting sensors",
        Duration::from_secs(30),
        |tis| instance(tis, "unrelated").state == TaskState::Success,
    )
    .await;
    let waiting = sensors(&instances);
    assert_eq!(waiting.len(), 10);
    for ti in &waiting {
        assert!(
            !ti.state.is_finished(),
            "{} is still waiting: {ti:?}",
            ti.task_id
        );
        assert_eq!(ti.try_number, 1, "{ti:?}");
    }
    // The sensors keep waiting without a slot: the scheduler wakes them and they poke
    // again (each try is woken at least once).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut woken = 0;
        for ti in sensors(&store.list_task_instances(run.id).await.expect("tis")) {
            let attempts = store.list_attempts(ti.id).await.expect("attempts");
            assert_eq!(attempts.len(), 1, "one try: {attempts:?}");
            woken += usize::from(attempts[0].reschedules >= 1);
        }
        if woken == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "only {woken} sensors were woken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("INSERT INTO arrivals VALUES ('2026-01-01')")
        .execute(&pool)
        .await
        .expect("insert");
    let instances = wait_until(
        &store,
        &run,
        "every sensor to succeed",
        Duration::from_secs(30),
        |tis| tis.iter().all(|ti| ti.state == TaskState::Success),
    )
    .await;
    worker.stop().await;
    scheduler.stop().await;
    for ti in sensors(&instances) {
        assert_eq!((ti.try_number, ti.max_tries), (1, 2), "{ti:?}");
        let attempts = store.list_attempts(ti.id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].state, TaskState::Success);
        assert!(attempts[0].reschedules >= 1, "{attempts:?}");
        let pokes = ti.output.as_ref().and_then(|o| o["pokes"].as_i64());
        assert_eq!(
            pokes,
            Some(i64::from(attempts[0].reschedules) + 1),
            "one poke per claim: {ti:?}"
        );
    }
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Success);
}

/// A server whose `/ready` says `{"ready": true}` from the third call on.
async fn ready_server() -> String {
    let app = Router::new()
        .route(
            "/ready",
            get(|State(calls): State<Arc<AtomicU32>>| async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Json(json!({"ready": n >= 3}))
            }),
        )
        .with_state(Arc::new(AtomicU32::new(0)));
    nightshift_testkit::serve(app).await
}

/// An HTTP sensor and a SQL sensor (with `soft_fail`) in one DAG, through the real
/// worker and scheduler: the HTTP one succeeds at its third poke (one try, woken
/// twice), the SQL one is skipped when its timeout passes.
async fn sensors_of_both_modes_are_woken_until_done(store: Store) {
    let base = ready_server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (uri, _pool) = condition_db(&dir).await;
    let run = seed(
        &store,
        r#"
[tasks.wait_api]
type = "sensor"
mode = "http"
connection = "api"
url = "/ready"
json_check = { path = "ready", equals = true }
poke_interval = "200ms"
timeout = "20s"

[tasks.wait_rows]
type = "sensor"
mode = "sql"
connection = "cond"
sql = "SELECT count(*) FROM arrivals"
poke_interval = "200ms"
timeout = "1s"
soft_fail = true
"#,
    )
    .await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(
        &store,
        1,
        &[connection("api", &base), connection("cond", &uri)],
    );
    let instances = wait_until(
        &store,
        &run,
        "both sensors to end",
        Duration::from_secs(30),
        |tis| tis.iter().all(|ti| ti.state.is_finished()),
    )
    .await;
    worker.stop().await;
    scheduler.stop().await;
    let api = instance(&instances, "wait_api");
    assert_eq!(api.state, TaskState::Success);
    assert_eq!(api.output, Some(json!({"pokes": 3})));
    let attempts = store.list_attempts(api.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].reschedules, 2);
    let rows = instance(&instances, "wait_rows");
    assert_eq!(rows.state, TaskState::Skipped);
    let attempts = store.list_attempts(rows.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let reason = attempts[0].error.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("sensor timed out after 1s after ")
            && reason.ends_with("(soft_fail): skipped"),
        "{reason}"
    );
}

/// A sensor with retries left whose condition never holds: it fails once its timeout,
/// counted from its first poke, has passed, in its first try (a timed-out sensor is not
/// retried, and waiting spent none of its retries).
async fn a_sensor_times_out_from_its_first_poke_without_spending_retries(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (uri, _pool) = condition_db(&dir).await;
    let run = seed(
        &store,
        r#"
[tasks.wait]
type = "sensor"
mode = "sql"
connection = "cond"
sql = "SELECT count(*) FROM arrivals"
poke_interval = "300ms"
timeout = "2s"
retries = 3
"#,
    )
    .await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store, 1, &[connection("cond", &uri)]);
    let started = Instant::now();
    let instances = wait_until(
        &store,
        &run,
        "the sensor to time out",
        Duration::from_secs(30),
        |tis| tis.iter().all(|ti| ti.state.is_finished()),
    )
    .await;
    let took = started.elapsed();
    worker.stop().await;
    scheduler.stop().await;
    let ti = &instances[0];
    assert_eq!(ti.state, TaskState::Failed);
    assert_eq!((ti.try_number, ti.max_tries), (1, 4), "{ti:?}");
    assert!(took >= Duration::from_secs(2), "timed out early: {took:?}");
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].reschedules >= 3, "{attempts:?}");
    let error = attempts[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("sensor timed out after 2s after ")
            && error.contains("last poke: the query returned 0"),
        "{error}"
    );
}
