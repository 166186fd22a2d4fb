//! The `sensor` kind: a SQL sensor on a SQLite file that becomes true when a row
//! arrives, an HTTP sensor on a local server that becomes ready after a few calls,
//! `soft_fail`, and a sensor run through the real worker. Each claim pokes once and asks
//! to be rescheduled; [`run`] wakes it as the scheduler would. The HTTP sensors run in
//! paused time (pokes, timeouts and the cancel are timers; the local server answers at
//! once); the SQL ones cannot, as SQLite answers on a thread of its own.

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

/// Runs a sensor's try as the worker and the scheduler do: claim after claim, each woken
/// `wake_in` after the one before rescheduled, with what is left of the timeout counted
/// from the first poke. Returns the try's end and the log of all its claims.
async fn run(spec: &SensorSpec, timeout: Duration) -> (Outcome, Vec<String>) {
    let started = tokio::time::Instant::now();
    let mut log = Vec::new();
    for wakes in 0.. {
        let (mut ctx, mut rx) = context(Some(timeout));
        ctx.timeout = Some(timeout.saturating_sub(started.elapsed()));
        ctx.wakes = wakes;
        let outcome = sensor::run(spec, &ctx).await;
        drop(ctx);
        log.extend(lines(&mut rx));
        match outcome {
            Outcome::Reschedule { wake_in, reason } => {
                assert!(wake_in <= spec.task.poke_interval, "{wake_in:?}");
                assert!(!reason.is_empty());
                tokio::time::sleep(wake_in).await;
            }
            other => return (other, log),
        }
    }
    unreachable!("the loop ends with the try")
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
        log.iter().any(|l| l.starts_with(
            "poke 1: not yet (the query returned 0); next poke in 200ms, without a worker slot"
        )),
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
async fn a_poke_that_is_not_true_yet_gives_the_slot_back() {
    let base = server().await;
    let spec = http_sensor(format!("{base}/ready"), false);
    let (ctx, mut rx) = context(Some(Duration::from_secs(20)));
    let started = Instant::now();
    let outcome = sensor::run(&spec, &ctx).await;
    assert_eq!(
        outcome,
        Outcome::Reschedule {
            wake_in: Duration::from_millis(100),
            reason: "json_check failed: ready is false, expected true".into(),
        }
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "no wait inside the claim"
    );
    drop(ctx);
    assert_eq!(lines(&mut rx).len(), 1);
    // Woken close to its timeout, it asks to be woken at the timeout, not later.
    let (mut ctx, _rx) = context(Some(Duration::from_secs(20)));
    ctx.timeout = Some(Duration::from_millis(30));
    ctx.wakes = 1;
    let Outcome::Reschedule { wake_in, .. } = sensor::run(&spec, &ctx).await else {
        panic!("a reschedule expected");
    };
    assert_eq!(wake_in, Duration::from_millis(30));
    // Woken after it: a last poke, which succeeds here (the server is ready from its third call).
    ctx.timeout = Some(Duration::ZERO);
    ctx.wakes = 2;
    assert_eq!(
        sensor::run(&spec, &ctx).await,
        Outcome::Success {
            output: Some(json!({"pokes": 3}))
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_sensor_stops_at_once() {
    let base = server().await;
    let spec = http_sensor(format!("{base}/nope"), true);
    let (ctx, _rx) = context(None);
    ctx.cancel.cancel();
    assert_eq!(sensor::run(&spec, &ctx).await, Outcome::Cancelled);
}

// Sensors through the real worker and scheduler (woken from `up_for_reschedule`) are in
// the root package's tests/waiting.rs.
