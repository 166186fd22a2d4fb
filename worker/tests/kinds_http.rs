//! The `http` kind against a local axum server started by each test: status match and
//! mismatch, JSON check, bearer and basic auth from a connection, timeout, and a run
//! through the real worker whose token never reaches the database.

mod kinds_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, get};
use axum::{Json, Router};
use kinds_common::{connection, context, lines};
use nightshift_core::dag::{HttpTask, JsonCheck, StatusRange};
use nightshift_worker::kind::http::{self, HttpSpec};
use nightshift_worker::kind::Outcome;
use serde_json::{json, Value};

pub const TOKEN: &str = "tok-9f8e7d";

/// Starts the test server; returns its base URL.
pub async fn server() -> String {
    let calls = Arc::new(AtomicU32::new(0));
    let app =
        Router::new()
            .route(
                "/ok",
                get(|| async { Json(json!({"data": {"status": "ok"}})) }),
            )
            .route(
                "/status/{code}",
                get(|Path(code): Path<u16>| async move {
                    (
                        StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
                        "not this one",
                    )
                }),
            )
            .route(
                "/auth",
                get(|headers: HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if auth == format!("Bearer {TOKEN}") || auth.starts_with("Basic ") {
                        (StatusCode::OK, Json(json!({"auth": auth})))
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            Json(json!({"error": "who are you"})),
                        )
                    }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route(
                "/ready",
                get(|State(calls): State<Arc<AtomicU32>>| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    Json(json!({"ready": n >= 3, "calls": n}))
                }),
            )
            .route(
                "/echo",
                any(
                    |headers: HeaderMap,
                     Query(q): Query<BTreeMap<String, String>>,
                     body: String| async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        Json(json!({
                            "query": q,
                            "body": body,
                            "content_type": header("content-type"),
                            "x_run": header("x-run"),
                            "authorization": header("authorization"),
                        }))
                    },
                ),
            )
            .with_state(calls);
    nightshift_testkit::serve(app).await
}

fn task(url: &str) -> HttpTask {
    HttpTask {
        connection: None,
        method: "GET".into(),
        url: url.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        body: None,
        json: None,
        expect_status: vec![],
        json_check: None,
    }
}

async fn run(spec: &HttpSpec, timeout: Option<Duration>) -> (Outcome, Vec<String>) {
    let (ctx, mut rx) = context(timeout);
    let outcome = http::run(spec, &ctx).await;
    drop(ctx);
    (outcome, lines(&mut rx))
}

fn spec(task: HttpTask) -> HttpSpec {
    HttpSpec {
        task,
        connection: None,
    }
}

#[tokio::test]
async fn expected_status_succeeds_with_the_response_as_output() {
    let base = server().await;
    let (outcome, log) = run(&spec(task(&format!("{base}/ok"))), None).await;
    let output = kinds_common::output(&outcome, &log);
    assert_eq!(output["status"], json!(200));
    assert_eq!(output["body"], json!({"data": {"status": "ok"}}));
    assert_eq!(output["headers"]["content-type"], json!("application/json"));
    assert!(
        log.iter().any(|l| l.starts_with("HTTP 200 OK in ")),
        "{log:#?}"
    );

    let mut t = task(&format!("{base}/status/404"));
    t.expect_status = vec![
        StatusRange {
            start: 200,
            end: 200,
        },
        StatusRange {
            start: 404,
            end: 404,
        },
    ];
    assert!(matches!(
        run(&spec(t), None).await.0,
        Outcome::Success { .. }
    ));
}

#[tokio::test]
async fn unexpected_status_fails_retryable_with_the_body() {
    let base = server().await;
    let (outcome, log) = run(&spec(task(&format!("{base}/status/503"))), None).await;
    let expected = "HTTP 503 Service Unavailable, expected 200-299; body: not this one";
    assert_eq!(outcome, Outcome::retryable(expected));
    assert!(log.iter().any(|l| l == expected), "{log:#?}");
}

#[tokio::test]
async fn json_check_decides() {
    let base = server().await;
    let check = |equals: Value| {
        let mut t = task(&format!("{base}/ok"));
        t.json_check = Some(JsonCheck {
            path: "data.status".into(),
            equals,
        });
        spec(t)
    };
    assert!(matches!(
        run(&check(json!("ok")), None).await.0,
        Outcome::Success { .. }
    ));
    assert_eq!(
        run(&check(json!("done")), None).await.0,
        Outcome::retryable("json_check failed: data.status is \"ok\", expected \"done\"")
    );
}

#[tokio::test]
async fn bearer_auth_comes_from_the_connection() {
    let base = server().await;
    let mut t = task("/auth");
    t.connection = Some("api".into());
    let without = HttpSpec {
        task: t.clone(),
        connection: Some(connection("api", &base, None)),
    };
    assert_eq!(
        run(&without, None).await.0,
        Outcome::retryable(
            "HTTP 401 Unauthorized, expected 200-299; body: {\"error\":\"who are you\"}"
        )
    );
    let with = HttpSpec {
        task: t.clone(),
        connection: Some(connection("api", &base, Some(json!({"token": TOKEN})))),
    };
    let (outcome, _) = run(&with, None).await;
    let output = kinds_common::output(&outcome, &[]);
    assert_eq!(output["body"]["auth"], json!(format!("Bearer {TOKEN}")));
    // Login and password in the URI: basic auth.
    let basic = HttpSpec {
        task: t,
        connection: Some(connection(
            "api",
            &base.replace("http://", "http://bot:pw@"),
            None,
        )),
    };
    let (outcome, _) = run(&basic, None).await;
    let output = kinds_common::output(&outcome, &[]);
    assert_eq!(output["body"]["auth"], json!("Basic Ym90OnB3"));
}

#[tokio::test]
async fn method_query_headers_and_json_are_sent() {
    let base = server().await;
    let mut t = task(&format!("{base}/echo"));
    t.method = "post".into();
    t.query = BTreeMap::from([("date".into(), "2026-01-01".into())]);
    t.headers = BTreeMap::from([("X-Run".into(), "manual__1".into())]);
    t.json = Some(json!({"text": "hi"}));
    let (outcome, _) = run(&spec(t), None).await;
    let output = kinds_common::output(&outcome, &[]);
    assert_eq!(
        output["body"],
        json!({
            "query": {"date": "2026-01-01"},
            "body": "{\"text\":\"hi\"}",
            "content_type": "application/json",
            "x_run": "manual__1",
            "authorization": "",
        })
    );
}

/// In paused time: the task's 500 ms timeout and the server's 30 s delay are timers, so
/// the test waits for neither.
#[tokio::test(start_paused = true)]
async fn timeout_abandons_the_request() {
    let base = server().await;
    let started = Instant::now();
    let (outcome, log) = run(
        &spec(task(&format!("{base}/slow"))),
        Some(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(outcome, Outcome::retryable("timed out after 500ms"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        log.iter()
            .any(|l| l == "timed out after 500ms: request abandoned"),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_failure() {
    // A port nobody listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (outcome, _) = run(&spec(task(&format!("http://127.0.0.1:{port}/x"))), None).await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(retryable);
    assert!(
        error.starts_with(&format!("GET http://127.0.0.1:{port}/x failed: ")),
        "{error}"
    );
}

/// Through the real worker: the connection's token is sent (and echoed back by the
/// server into the output and the log) but never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_runs_http_and_never_stores_the_token() {
    let base = server().await;
    let temp = nightshift_testkit::sqlite_store().await;
    let (store, file) = (temp.store.clone(), temp.path.clone());
    let run = kinds_common::seed(
        &store,
        r#"
[tasks.post]
type = "http"
connection = "api"
method = "POST"
url = "/echo"
query = { t = "{{ env.API_TOKEN }}" }
json = { text = "run {{ run_id }}" }
json_check = { path = "body", equals = "{\"text\":\"run manual__kinds\"}" }

[tasks.denied]
type = "http"
url = "/auth?token={{ env.API_TOKEN }}"
connection = "plain"
"#,
    )
    .await;
    let connections = [
        connection("api", &base, Some(json!({"token": TOKEN}))),
        connection("plain", &base, None),
    ];
    let config = kinds_common::config(connections, &[("API_TOKEN", TOKEN)]);
    let done = kinds_common::run_to_end(&store, config, &run).await;
    let post = &done["post"];
    assert_eq!(
        post.state.as_str(),
        "success",
        "{:?}",
        kinds_common::stored_log(&store, post).await
    );
    let output = post.output.clone().unwrap_or_default();
    assert_eq!(output["body"]["authorization"], json!("Bearer ***"));
    assert_eq!(output["body"]["query"], json!({"t": "***"}));
    let rendered = post.rendered.clone().unwrap_or_default();
    assert_eq!(rendered["query"], json!({"t": "***"}));
    assert_eq!(done["denied"].state.as_str(), "failed");
    kinds_common::assert_never_stored(&store, &file, &done, TOKEN).await;
}
