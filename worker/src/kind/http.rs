//! The `http` kind: one HTTP request (reqwest, rustls), checked against `expect_status`
//! and an optional `json_check`; the response's status, headers and body (bounded) are
//! the try's output. Auth comes from the task's connection: `extra.token` → bearer,
//! else login/password → basic; `extra.headers` are sent too.

use std::pin::pin;
use std::time::Duration;

use nightshift_core::connection::{is_secret_key, Connection};
use nightshift_core::dag::{HttpTask, JsonCheck, StatusRange};
use nightshift_core::mask::{mask_secrets, mask_then_cut, mask_then_shorten, Limit};
use serde_json::{Map, Value};

use super::{Outcome, TaskContext};

/// Body bytes read from a response (a longer body is cut, and a JSON check on it fails).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Body characters kept in the output when it is not JSON (or JSON too large).
pub const MAX_OUTPUT_BODY_CHARS: usize = 64 * 1024;
/// Response headers kept in the output, and the characters of each value.
const MAX_HEADERS: usize = 50;
const MAX_HEADER_CHARS: usize = 1024;
/// Body characters quoted in a failure message.
const EXCERPT_CHARS: usize = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A rendered `http` task and its connection (resolved by the worker), if it names one.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub task: HttpTask,
    pub connection: Option<Connection>,
}

impl HttpSpec {
    pub fn new(task: HttpTask) -> HttpSpec {
        HttpSpec {
            task,
            connection: None,
        }
    }
}

/// A response, read and bounded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Map<String, Value>,
    /// The body read (at most [`MAX_BODY_BYTES`]).
    pub body: String,
    pub body_truncated: bool,
}

impl Response {
    /// The body as JSON, when it is JSON and was read whole.
    pub fn json(&self) -> Option<Value> {
        if self.body_truncated {
            return None;
        }
        serde_json::from_str(&self.body).ok()
    }

    /// Why the response does not pass the task's checks; `None` when it does.
    pub fn check(&self, task: &HttpTask) -> Option<String> {
        if !status_expected(&task.expect_status, self.status) {
            return Some(format!(
                "HTTP {} {}, expected {}; body: {}",
                self.status,
                self.reason,
                describe_ranges(&task.expect_status),
                excerpt(&self.body)
            ));
        }
        let check = task.json_check.as_ref()?;
        json_mismatch(check, self.json().as_ref())
    }

    /// The output: `{status, headers, body}` (body as JSON when it parses and fits).
    pub fn output(&self) -> Value {
        let body = match self.json() {
            Some(json) if json.to_string().len() <= MAX_OUTPUT_BODY_CHARS => json,
            // The body was masked when it was read: the cut cannot split a secret.
            _ => {
                Value::String(mask_then_cut(&self.body, &[], Limit::Chars(MAX_OUTPUT_BODY_CHARS)).0)
            }
        };
        let mut out = Map::new();
        out.insert("status".into(), Value::from(self.status));
        out.insert("headers".into(), Value::Object(self.headers.clone()));
        out.insert("body".into(), body);
        if self.body_truncated || self.body.chars().count() > MAX_OUTPUT_BODY_CHARS {
            out.insert("body_truncated".into(), Value::Bool(true));
        }
        Value::Object(out)
    }
}

/// Whether `status` falls in `ranges` (2xx when there are none).
pub fn status_expected(ranges: &[StatusRange], status: u16) -> bool {
    if ranges.is_empty() {
        return (200..=299).contains(&status);
    }
    ranges.iter().any(|r| r.contains(status))
}

fn describe_ranges(ranges: &[StatusRange]) -> String {
    if ranges.is_empty() {
        return "200-299".into();
    }
    ranges
        .iter()
        .map(|r| {
            if r.start == r.end {
                r.start.to_string()
            } else {
                format!("{}-{}", r.start, r.end)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value at a dotted path (`data.items.0.state`): keys of objects, indexes of arrays.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(value, |v, key| match v {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Why `body` does not pass `check`; `None` when it does.
pub fn json_mismatch(check: &JsonCheck, body: Option<&Value>) -> Option<String> {
    let Some(body) = body else {
        return Some(format!(
            "json_check {}: the response body is not JSON (or larger than {MAX_BODY_BYTES} bytes)",
            check.path
        ));
    };
    match lookup(body, &check.path) {
        Some(v) if *v == check.equals => None,
        Some(v) => Some(format!(
            "json_check failed: {} is {}, expected {}",
            check.path,
            short(&v.to_string()),
            check.equals
        )),
        None => Some(format!(
            "json_check failed: {} is missing, expected {}; body: {}",
            check.path,
            check.equals,
            excerpt(&body.to_string())
        )),
    }
}

fn excerpt(body: &str) -> String {
    if body.is_empty() {
        return "(empty)".into();
    }
    short(body)
}

/// `text` cut to [`EXCERPT_CHARS`]. A response's text was masked when it was read (see
/// [`send`]), so the cut cannot leave part of a secret.
fn short(text: &str) -> String {
    mask_then_shorten(text, &[], EXCERPT_CHARS)
}

/// Why a request could not be sent or got no response (a response with any status is
/// not an error here; [`Response::check`] judges it).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The task's URL (joined to its connection's base) does not parse.
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("invalid HTTP method {method:?}")]
    InvalidMethod { method: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// No response: connecting, sending or reading failed. The message walks reqwest's
    /// causes (its own text is often just "error sending request"), so it is not also
    /// given as a source.
    #[error("{}", transport_error(.0))]
    Transport(reqwest::Error),
    /// `nightshift connections test` on a connection without a URL to call.
    #[error("connection {name:?} has no base URL")]
    NoBaseUrl { name: String },
}

/// The URL to call: with a connection, a path starting with `/` is appended to its base.
pub fn full_url(
    task: &HttpTask,
    connection: Option<&Connection>,
) -> Result<reqwest::Url, HttpError> {
    let url = match (
        connection.and_then(Connection::base_url),
        task.url.starts_with('/'),
    ) {
        (Some(base), true) => format!("{}{}", base.as_str().trim_end_matches('/'), task.url),
        _ => task.url.clone(),
    };
    reqwest::Url::parse(&url).map_err(|source| HttpError::InvalidUrl { url, source })
}

/// Sends the task's request and reads the response (bounded). Errors are transport
/// errors (no response), with the URL's secrets left to the log's masking.
///
/// `secrets` are masked in the response's headers and body as they are read, before
/// any of it is cut (a header to [`MAX_HEADER_CHARS`], the body to an excerpt or an
/// output), so a secret the server echoes never shows its first part.
pub(crate) async fn send(
    task: &HttpTask,
    connection: Option<&Connection>,
    secrets: &[&str],
) -> Result<Response, HttpError> {
    let url = full_url(task, connection)?;
    let method =
        reqwest::Method::from_bytes(task.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            HttpError::InvalidMethod {
                method: task.method.clone(),
            }
        })?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("nightshift/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HttpError::Client)?;
    let mut request = client.request(method, url);
    if let Some(c) = connection {
        if let Some(token) = c.token() {
            request = request.bearer_auth(token);
        } else if let Some(login) = &c.login {
            request = request.basic_auth(login, c.password.as_ref().map(|p| p.expose()));
        }
        for (name, value) in c.headers() {
            request = request.header(name, value);
        }
    }
    for (name, value) in &task.headers {
        request = request.header(name, value);
    }
    if !task.query.is_empty() {
        request = request.query(&task.query);
    }
    if let Some(json) = &task.json {
        request = request.json(json);
    } else if let Some(body) = &task.body {
        request = request.body(body.clone());
    }
    let mut response = request.send().await.map_err(HttpError::Transport)?;
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| {
            let text = if is_secret_key(name.as_str()) || name == "set-cookie" {
                "***".to_owned()
            } else {
                let value = String::from_utf8_lossy(value.as_bytes());
                mask_then_cut(&value, secrets, Limit::Chars(MAX_HEADER_CHARS)).0
            };
            (name.as_str().to_owned(), Value::String(text))
        })
        .collect();
    let mut body = Vec::new();
    let mut body_truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(HttpError::Transport)? {
        let room = MAX_BODY_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            body_truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        body: mask_secrets(&String::from_utf8_lossy(&body), secrets),
        body_truncated,
    })
}

/// Sends a GET to `connection`'s base URL with its auth and returns the status; for
/// `nightshift connections test`.
pub async fn ping(connection: &Connection) -> Result<u16, HttpError> {
    let url = connection.base_url().ok_or_else(|| HttpError::NoBaseUrl {
        name: connection.name.clone(),
    })?;
    let task = HttpTask {
        connection: Some(connection.name.clone()),
        method: "GET".into(),
        url: url.to_string(),
        headers: Default::default(),
        query: Default::default(),
        body: None,
        json: None,
        expect_status: vec![],
        json_check: None,
    };
    let secrets = connection.secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Ok(send(&task, Some(connection), &secrets).await?.status)
}

/// A reqwest error with its causes (reqwest's own text is often just "error sending
/// request").
fn transport_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Runs one try of an `http` task.
pub async fn run(spec: &HttpSpec, ctx: &TaskContext) -> Outcome {
    let interrupted = pin!(ctx.interrupted());
    let task = &spec.task;
    let url = match full_url(task, spec.connection.as_ref()) {
        Ok(url) => url,
        Err(err) => return Outcome::fatal(err.to_string()),
    };
    let method = task.method.to_ascii_uppercase();
    ctx.system(format!("{method} {url}"));
    let started = std::time::Instant::now();
    let all_secrets = ctx.log.secrets();
    let secrets = crate::connections::refs(&all_secrets);
    let response = tokio::select! {
        r = send(task, spec.connection.as_ref(), &secrets) => r,
        why = interrupted => {
            ctx.system(format!("{why}: request abandoned"));
            return why.outcome();
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(err) => {
            let message = format!("{method} {url} failed: {err}");
            ctx.system(message.clone());
            return Outcome::retryable(message);
        }
    };
    ctx.system(format!(
        "HTTP {} {} in {} ({} body bytes{})",
        response.status,
        response.reason,
        humantime::format_duration(Duration::from_millis(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
        )),
        response.body.len(),
        if response.body_truncated { ", cut" } else { "" }
    ));
    if let Some(mismatch) = response.check(task) {
        ctx.system(mismatch.clone());
        return Outcome::retryable(mismatch);
    }
    Outcome::Success {
        output: Some(response.output()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_look_up_values() {
        let body = json!({"data": {"status": "ok", "items": [{"state": "done"}, 3]}});
        let check = |path: &str, expected: Option<Value>| {
            assert_eq!(lookup(&body, path).cloned(), expected, "{path}")
        };
        check("data.status", Some(json!("ok")));
        check("data.items.0.state", Some(json!("done")));
        check("data.items.1", Some(json!(3)));
        check("data.items.2", None);
        check("data.nope", None);
        check("data.status.deeper", None);
    }

    #[test]
    fn json_checks() {
        let check = |equals: Value, body: Option<Value>, expected: Option<&str>| {
            let c = JsonCheck {
                path: "result.status".into(),
                equals,
            };
            assert_eq!(json_mismatch(&c, body.as_ref()).as_deref(), expected);
        };
        check(json!("ok"), Some(json!({"result": {"status": "ok"}})), None);
        check(
            json!("ok"),
            Some(json!({"result": {"status": "pending"}})),
            Some("json_check failed: result.status is \"pending\", expected \"ok\""),
        );
        check(
            json!(true),
            Some(json!({})),
            Some("json_check failed: result.status is missing, expected true; body: {}"),
        );
        check(
            json!(1),
            None,
            Some("json_check result.status: the response body is not JSON (or larger than 1048576 bytes)"),
        );
    }

    #[test]
    fn statuses() {
        let r = |start, end| StatusRange { start, end };
        let check = |ranges: &[StatusRange], status, expected| {
            assert_eq!(
                status_expected(ranges, status),
                expected,
                "{ranges:?} {status}"
            )
        };
        check(&[], 204, true);
        check(&[], 302, false);
        check(&[r(200, 200), r(404, 404)], 404, true);
        check(&[r(200, 200), r(404, 404)], 201, false);
        assert_eq!(describe_ranges(&[r(200, 201), r(404, 404)]), "200-201, 404");
    }

    #[test]
    fn outputs_are_bounded() {
        let response = |body: String| Response {
            status: 200,
            reason: "OK".into(),
            headers: Map::new(),
            body,
            body_truncated: false,
        };
        assert_eq!(
            response("{\"a\":1}".into()).output(),
            json!({"status": 200, "headers": {}, "body": {"a": 1}})
        );
        assert_eq!(
            response("plain".into()).output(),
            json!({"status": 200, "headers": {}, "body": "plain"})
        );
        let big = response("x".repeat(MAX_OUTPUT_BODY_CHARS + 10)).output();
        assert_eq!(
            big["body"].as_str().map(str::len),
            Some(MAX_OUTPUT_BODY_CHARS)
        );
        assert_eq!(big["body_truncated"], json!(true));
    }

    #[test]
    fn urls_join_the_connection_base() {
        let task = |url: &str| HttpTask {
            connection: Some("api".into()),
            method: "GET".into(),
            url: url.into(),
            headers: Default::default(),
            query: Default::default(),
            body: None,
            json: None,
            expect_status: vec![],
            json_check: None,
        };
        let conn = Connection::parse("api", "https://u:p@api.invalid/v2/", None).ok();
        let check = |url: &str, expected: &str| {
            assert_eq!(
                full_url(&task(url), conn.as_ref())
                    .map(|u| u.to_string())
                    .map_err(|e| e.to_string()),
                Ok(expected.to_owned())
            )
        };
        check("/refresh", "https://api.invalid/v2/refresh");
        check("https://other.invalid/x", "https://other.invalid/x");
    }

    #[test]
    fn a_bad_url_names_the_url_and_keeps_the_parse_error() {
        let task = HttpTask {
            connection: None,
            method: "GET".into(),
            url: "no scheme here".into(),
            headers: Default::default(),
            query: Default::default(),
            body: None,
            json: None,
            expect_status: vec![],
            json_check: None,
        };
        let err = full_url(&task, None).expect_err("not a URL");
        let HttpError::InvalidUrl { url, source } = &err else {
            panic!("expected InvalidUrl, got {err:?}");
        };
        assert_eq!(url, "no scheme here");
        assert_eq!(*source, url::ParseError::RelativeUrlWithoutBase);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            err.to_string(),
            "invalid URL \"no scheme here\": relative URL without a base"
        );
    }

    #[tokio::test]
    async fn a_bad_method_is_named_before_anything_is_sent() {
        let task = HttpTask {
            connection: None,
            method: "GE T".into(),
            url: "http://127.0.0.1:9/never".into(),
            headers: Default::default(),
            query: Default::default(),
            body: None,
            json: None,
            expect_status: vec![],
            json_check: None,
        };
        let Err(err) = send(&task, None, &[]).await else {
            panic!("a request with an invalid method was sent");
        };
        assert!(
            matches!(&err, HttpError::InvalidMethod { method } if method == "GE T"),
            "{err:?}"
        );
    }
}
