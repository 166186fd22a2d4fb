//! The `sensor` kind: a SQL sensor on a SQLite file that becomes true when a row
//! arrives, an HTTP sensor on a local server that becomes ready after a few calls,
//! `soft_fail`, and a sensor run through the real worker. The HTTP sensors run in paused
//! time (pokes, timeouts and the cancel are timers; the local server answers at once);
//! the SQL ones cannot, as SQLite answers on a thread of its own.

mod kinds_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use kinds_common::{connection, context, lines};
use nightshift_core::connection::Connection;
use nightshift_core::dag::{HttpTask, JsonCheck, SensorCheck, SensorTask, SqlSource, SqlTask};
use nightshift_worker::kind::sensor::{self, SensorSpec};
use nightshift_worker::kind::Outcome;
use serde_json::json;
use sqlx::Connection as _;

/// A server whose `/ready` says `{"ready": true}` from the third call on.
async fn server() -> String {
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

fn sql_sensor(sql: &str, soft_fail: bool, conn: &Connection) -> SensorSpec {
    SensorSpec {
        task: SensorTask {
            poke_interval: Duration::from_millis(200),
            soft_fail,
            check: SensorCheck::Sql(SqlTask {
                connection: conn.name.clone(),
                source: SqlSource::Sql(sql.into()),
                parameters: BTreeMap::from([("day".to_owned(), json!("2026-01-01"))]),
                transaction: false,
            }),
        },
        connection: Some(conn.clone()),
    }
}

fn http_sensor(url: String, soft_fail: bool) -> SensorSpec {
    SensorSpec {
        task: SensorTask {
            poke_interval: Duration::from_millis(100),
            soft_fail,
            check: SensorCheck::Http(HttpTask {
                connection: None,
                method: "GET".into(),
                url,
                headers: BTreeMap::new(),
                query: BTreeMap::new(),
                body: None,
                json: None,
                expect_status: vec![],
                json_check: Some(JsonCheck {
                    path: "ready".into(),
                    equals: json!(true),
                }),
            }),
        },
        connection: None,
    }
}

async fn run(spec: &SensorSpec, timeout: Duration) -> (Outcome, Vec<String>) {
    let (ctx, mut rx) = context(Some(timeout));
    let outcome = sensor::run(spec, &ctx).await;
    drop(ctx);
    (outcome, lines(&mut rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sensor_waits_for_the_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("sqlite://{}", dir.path().join("staging.db").display());
    let conn = connection("staging", &uri, None);
    let mut setup = sqlx::SqliteConnection::connect(&format!("{uri}?mode=rwc"))
        .await
        .expect("sqlite");
    sqlx::query("CREATE TABLE lesson (day TEXT)")
        .execute(&mut setup)
        .await
        .expect("create");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        sqlx::query("INSERT INTO lesson VALUES ('2026-01-01')")
            .execute(&mut setup)
            .await
            .expect("insert");
    });
    let spec = sql_sensor(
        "SELECT count(*) > 0 FROM lesson WHERE day = :day",
        false,
        &conn,
    );
    let (outcome, log) = run(&spec, Duration::from_secs(20)).await;
    writer.await.expect("writer");
    let output = kinds_common::output(&outcome, &log);
    let pokes = output["pokes"].as_u64().unwrap_or_default();
    assert!(pokes >= 2, "{output}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("poke 1: not yet (the query returned 0)")),
        "{log:#?}"
    );
    assert_eq!(
        log.last().map(String::as_str),
        Some(format!("poke {pokes}: condition met").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sensor_counts_a_missing_table_as_not_yet_and_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = connection(
        "staging",
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        None,
    );
    let spec = sql_sensor("SELECT 1 FROM not_yet", false, &conn);
    let (outcome, log) = run(&spec, Duration::from_millis(700)).await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(!retryable, "a fatal failure expected");
    assert!(
        error.starts_with("sensor timed out after 700ms after ")
            && error.contains("no such table: not_yet"),
        "{error}"
    );
    assert!(log.len() >= 2, "{log:#?}");
}

#[tokio::test(start_paused = true)]
async fn http_sensor_waits_until_ready() {
    let base = server().await;
    let (outcome, log) = run(
        &http_sensor(format!("{base}/ready"), false),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Success {
            output: Some(json!({"pokes": 3}))
        },
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l
                .starts_with("poke 1: not yet (json_check failed: ready is false, expected true)")),
        "{log:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn soft_fail_skips_on_timeout() {
    let base = server().await;
    let spec = http_sensor(format!("{base}/nope"), true);
    let started = Instant::now();
    let (outcome, _) = run(&spec, Duration::from_millis(500)).await;
    let Outcome::Skipped { reason, .. } = &outcome else {
        panic!("skipped expected: {outcome:?}");
    };
    assert!(
        reason.starts_with("sensor timed out after 500ms after "),
        "{reason}"
    );
    assert!(reason.ends_with("pokes (soft_fail): skipped"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_sensor_stops_at_once() {
    let base = server().await;
    let spec = http_sensor(format!("{base}/nope"), true);
    let (ctx, _rx) = context(None);
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    assert_eq!(sensor::run(&spec, &ctx).await, Outcome::Cancelled);
}

/// Through the real worker: an HTTP sensor and a SQL sensor (with `soft_fail`) in one DAG.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_runs_sensors() {
    let base = server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let temp = nightshift_testkit::sqlite_store().await;
    let store = temp.store.clone();
    let run = kinds_common::seed(
        &store,
        r#"
[tasks.wait_api]
type = "sensor"
mode = "http"
connection = "api"
url = "/ready"
json_check = { path = "ready", equals = true }
poke_interval = "100ms"
timeout = "20s"

[tasks.wait_rows]
type = "sensor"
mode = "sql"
connection = "staging"
sql = "SELECT 0"
poke_interval = "100ms"
timeout = "1s"
soft_fail = true
"#,
    )
    .await;
    let staging = format!("sqlite://{}", dir.path().join("s.db").display());
    let connections = [
        connection("api", &base, None),
        connection("staging", &staging, None),
    ];
    let done = kinds_common::run_to_end(&store, kinds_common::config(connections, &[]), &run).await;
    assert_eq!(done["wait_api"].state.as_str(), "success");
    assert_eq!(done["wait_api"].output, Some(json!({"pokes": 3})));
    assert_eq!(done["wait_rows"].state.as_str(), "skipped");
}
