//! Internal errors: the client gets a plain 500 with no internal detail, while the cause
//! keeps its source chain and is logged exactly once, with the request id, by the
//! router's logging middleware (not wherever the problem document is built).

use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use nightshift_store::{Store, StoreError};
use nightshift_web::ApiError;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

use crate::common::{both_backends, fixture, get, Auth, Reply};

both_backends!(
    an_internal_api_error_is_a_plain_500_logged_once_with_its_request_id,
    an_internal_page_error_is_a_plain_500_logged_once_with_its_request_id,
);

/// Log output captured in memory, one JSON object per line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// The captured events whose message is "request failed" (the event's own fields,
    /// without the enclosing spans', so the request id must be on the event itself).
    fn failures(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON log line"))
            .filter(|event| event["fields"]["message"] == "request failed")
            .collect()
    }
}

/// Sends one GET to an app whose store is closed, capturing what it logs.
async fn get_with_closed_store(store: Store, path: &str, page: bool) -> (Reply, Vec<Value>) {
    let fx = fixture(store).await;
    fx.store.close().await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(captured.clone())
        .finish();
    let reply = {
        let _guard = tracing::subscriber::set_default(subscriber);
        let auth = if page {
            Auth::Session(&fx.viewer_session, false)
        } else {
            Auth::Bearer(&fx.viewer)
        };
        get(&fx.app, path, auth).await
    };
    (reply, captured.failures())
}

/// The one "request failed" event carries this reply's request id and the whole cause.
fn assert_logged_once(reply: &Reply, failures: &[Value]) {
    let request_id = reply
        .headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("an x-request-id on the response");
    assert_eq!(failures.len(), 1, "logged once: {failures:#?}");
    let fields = &failures[0]["fields"];
    assert_eq!(failures[0]["level"], "ERROR");
    assert_eq!(fields["request_id"], request_id, "{fields}");
    assert_eq!(fields["status"], 500, "{fields}");
    let error = fields["error"].as_str().expect("an error field");
    assert!(
        error.contains("database error"),
        "the store's error: {error}"
    );
    assert!(
        error.contains("closed pool"),
        "sqlx's error below it: {error}"
    );
}

/// Nothing of the cause reaches the client.
fn assert_no_internal_detail(body: &str) {
    for secret in ["database", "pool", "sqlx", "closed"] {
        assert!(!body.contains(secret), "{secret:?} leaked: {body}");
    }
}

async fn an_internal_api_error_is_a_plain_500_logged_once_with_its_request_id(store: Store) {
    let (reply, failures) = get_with_closed_store(store, "/api/v1/dags", false).await;
    let detail = reply.problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(detail.contains("internal error"), "{detail}");
    assert_no_internal_detail(&reply.text());
    assert_logged_once(&reply, &failures);
}

async fn an_internal_page_error_is_a_plain_500_logged_once_with_its_request_id(store: Store) {
    let (reply, failures) = get_with_closed_store(store, "/dags", true).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    assert!(reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert_no_internal_detail(&reply.text());
    assert_logged_once(&reply, &failures);
}

#[test]
fn an_internal_error_keeps_its_source_chain() {
    let err = ApiError::from(StoreError::Database(sqlx::Error::PoolClosed));
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    assert!(
        chain
            .iter()
            .any(|cause| cause.starts_with("database error")),
        "the StoreError is a source: {chain:?}"
    );
    assert!(
        chain
            .last()
            .is_some_and(|cause| cause.contains("closed pool")),
        "sqlx's error ends the chain: {chain:?}"
    );
}

#[test]
fn an_internal_error_built_with_context_names_what_failed_and_why() {
    let parse = serde_json::from_str::<Value>("{").expect_err("not JSON");
    let err = ApiError::internal_while("parsing the stored definition of DAG \"nightly\"", parse);
    let top = std::error::Error::source(&err).expect("a source");
    assert_eq!(
        top.to_string(),
        "parsing the stored definition of DAG \"nightly\""
    );
    assert!(top.source().is_some(), "serde_json's error below it");
    assert!(
        !err.problem().detail.contains("nightly"),
        "the client sees none of it"
    );
}
