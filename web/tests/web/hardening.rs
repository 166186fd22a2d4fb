//! Page and connection hardening: no inline script or event handler in any template (so
//! the Content-Security-Policy can forbid them), the security headers on every response,
//! 413 for an over-large body, and slow or idle connections closed by the server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use nightshift_store::Store;
use nightshift_web::{app, AppState, HttpLimits, WebSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::common::{both_backends, fixture, request, send, Auth, Reply, DAG_ID};

both_backends!(
    every_response_carries_the_security_headers,
    an_over_large_body_is_413,
);

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

/// Every tag of `html` (from `<` to the next `>`, spanning lines) with its line number.
fn tags(html: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut rest = html;
    let mut offset = 0;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let line = html[..offset + start].matches('\n').count() + 1;
        out.push((line, &rest[start..start + len + 1]));
        offset += start + len + 1;
        rest = &rest[start + len + 1..];
    }
    out
}

/// The attribute names in a tag that look like `on[a-z]+=` (event handlers) or
/// `style=` (inline styles, which `style-src 'self'` refuses too).
fn inline_attributes(tag: &str) -> Vec<String> {
    let lower = tag.to_ascii_lowercase();
    let mut found = Vec::new();
    for (i, _) in lower.match_indices(|c: char| c.is_ascii_whitespace()) {
        let name: String = lower[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
            .collect();
        let after = lower[i + 1 + name.len()..].trim_start();
        let is_handler = name.len() > 2
            && name.starts_with("on")
            && name[2..].chars().all(|c| c.is_ascii_lowercase());
        if (is_handler || name == "style") && after.starts_with('=') {
            found.push(name);
        }
    }
    found
}

#[test]
fn templates_have_no_inline_script_handler_or_style() {
    let mut problems = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(TEMPLATES).expect("templates folder") {
        let path = entry.expect("template entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("html") {
            continue;
        }
        files += 1;
        let html = std::fs::read_to_string(&path).expect("template text");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (line, tag) in tags(&html) {
            for attribute in inline_attributes(tag) {
                problems.push(format!("{name}:{line}: inline `{attribute}=` in {tag}"));
            }
            let lower = tag.to_ascii_lowercase();
            if lower.contains("javascript:") {
                problems.push(format!("{name}:{line}: javascript: URL in {tag}"));
            }
            if lower.starts_with("<script") {
                if !lower.contains(" src=") {
                    problems.push(format!("{name}:{line}: <script> without src"));
                }
                // The script's body: everything up to its closing tag must be empty.
                let at = html.find(tag).unwrap_or(0) + tag.len();
                let body = html[at..].split("</script>").next().unwrap_or_default();
                if !body.trim().is_empty() {
                    problems.push(format!("{name}:{line}: inline <script> body {body:?}"));
                }
            }
        }
    }
    assert!(files >= 10, "read only {files} templates from {TEMPLATES}");
    assert!(
        problems.is_empty(),
        "inline script or style:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_template_scan_finds_what_it_looks_for() {
    let html = "<p>\n<form method=post\n  onsubmit=\"return confirm('x')\">\n<div style=\"x\" data-confirm=\"on=1\">";
    let found: Vec<_> = tags(html)
        .into_iter()
        .flat_map(|(line, tag)| inline_attributes(tag).into_iter().map(move |a| (line, a)))
        .collect();
    assert_eq!(found, [(2, "onsubmit".to_owned()), (4, "style".to_owned())]);
}

/// The value of one directive of a Content-Security-Policy.
fn directive<'a>(csp: &'a str, name: &str) -> Option<&'a str> {
    csp.split(';').map(str::trim).find_map(|d| {
        let (key, value) = d.split_once(' ').unwrap_or((d, ""));
        (key == name).then_some(value.trim())
    })
}

fn assert_security_headers(path: &str, reply: &Reply) {
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path} ({}) lacks {name}", reply.status))
            .to_owned()
    };
    let csp = header("content-security-policy");
    for (name, value) in [
        ("script-src", "'self'"),
        ("default-src", "'self'"),
        ("frame-ancestors", "'none'"),
        ("object-src", "'none'"),
    ] {
        assert_eq!(directive(&csp, name), Some(value), "{path}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{path}: {csp}");
    assert_eq!(header("x-frame-options"), "DENY", "{path}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(header("referrer-policy"), "same-origin", "{path}");
}

async fn every_response_carries_the_security_headers(store: Store) {
    let f = fixture(store).await;
    let operator = Auth::Session(&f.operator_session, false);
    let bearer = Auth::Bearer(&f.operator);
    for (path, auth, status) in [
        ("/dags", operator, StatusCode::OK),
        (&*format!("/dags/{DAG_ID}"), operator, StatusCode::OK),
        ("/dags/missing", operator, StatusCode::NOT_FOUND),
        ("/dags", Auth::None, StatusCode::SEE_OTHER),
        ("/login", Auth::None, StatusCode::OK),
        ("/static/htmx.min.js", Auth::None, StatusCode::OK),
        ("/static/nightshift.js", Auth::None, StatusCode::OK),
        ("/static/style.css", Auth::None, StatusCode::OK),
        ("/health", Auth::None, StatusCode::OK),
        ("/api/v1/dags", bearer, StatusCode::OK),
        ("/api/v1/dags", Auth::None, StatusCode::UNAUTHORIZED),
        ("/no/such/page", Auth::None, StatusCode::NOT_FOUND),
    ] {
        let reply = f.get(path, auth).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert_security_headers(path, &reply);
    }
    // A form post (here a bad CSRF token) and an API error carry them too.
    let reply = crate::common::post_form(&f.app, "/admin/pools", operator, "name=x").await;
    assert_security_headers("POST /admin/pools", &reply);
    let reply = crate::common::call(
        &f.app,
        Method::POST,
        &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
        bearer,
        &serde_json::json!({"conf": 5}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_security_headers("POST dagRuns", &reply);
}

async fn an_over_large_body_is_413(store: Store) {
    let f = fixture(store).await;
    let ten_mb = 10 * 1024 * 1024;
    // JSON to the API: a problem document.
    let mut json = String::from("{\"conf\": {\"target\": \"");
    json.push_str(&"x".repeat(ten_mb));
    json.push_str("\"}}");
    let req = request(
        Method::POST,
        &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
        Auth::Bearer(&f.operator),
        Body::from(json),
        "application/json",
    );
    let reply = send(&f.app, req).await;
    let detail = reply.problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(detail.contains("too large"), "{detail}");
    // A form of the UI: the error page with the same status.
    let form = format!(
        "csrf={}&name=big&slots=1&description={}",
        f.admin_session.csrf,
        "x".repeat(ten_mb)
    );
    let sign_in = format!("username=a&password={}", "x".repeat(ten_mb));
    // The pool form, then the sign-in form.
    for (path, auth, form) in [
        ("/admin/pools", Auth::Session(&f.admin_session, false), form),
        ("/login", Auth::None, sign_in),
    ] {
        let reply = f.post_form(path, auth, &form).await;
        let status = reply.status;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            reply.text()
        );
    }
    // A body under the limit still works.
    let reply = crate::common::call(
        &f.app,
        Method::POST,
        &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
        Auth::Bearer(&f.operator),
        &serde_json::json!({"conf": {"target": "x".repeat(10_000)}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// Starts the real server (`nightshift_web::serve`) on a free port with `limits`.
async fn serve_with(store: Store, limits: HttpLimits, cancel: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let router = app(AppState {
        store,
        settings: WebSettings {
            limits,
            ..WebSettings::default()
        },
        metrics: None,
        login: Default::default(),
    });
    tokio::spawn(async move {
        nightshift_web::serve(listener, router, limits, cancel.cancelled_owned()).await
    });
    addr
}

/// Reads until the server closes the connection (or `within` passes): what was read,
/// and how long after `since` the connection ended (`None` if still open).
async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> (String, Option<Duration>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = since + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(since.elapsed()),
                )
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let temp = nightshift_testkit::sqlite_store().await;
    let store = temp.store.clone();
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(800),
        ..HttpLimits::default()
    };
    let cancel = CancellationToken::new();
    let addr = serve_with(store, limits, cancel.clone()).await;
    // Generous against a loaded machine, far below "minutes".
    let patience = Duration::from_secs(5);

    // 1. A connection that sends nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut silent, started, patience).await;
    assert!(
        closed.is_some(),
        "a silent connection is still open after {patience:?}"
    );

    // 2. Headers trickled a byte every 50 ms: still closed, the bytes don't keep it open.
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
            "a".repeat(500)
        );
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(patience, reader.read(&mut buf)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "trickled headers kept the connection open for {:?}",
        started.elapsed()
    );
    trickle.abort();

    // 3. Keep-alive: one request answered, then the idle connection is closed.
    let started = Instant::now();
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let (answer, closed) = read_until_closed(&mut idle, started, patience).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed.is_some(),
        "an idle keep-alive connection is still open after {patience:?}"
    );

    // 4. A body that never finishes: 408 once the request limit passes, then closed.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername=a",
    )
    .await
    .expect("send");
    let (answer, closed) = read_until_closed(&mut slow, started, patience).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}",
        started.elapsed()
    );
    assert!(closed.is_some(), "a stalled body keeps the connection open");

    // A healthy client is served as before.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let (answer, _) = read_until_closed(&mut ok, Instant::now(), patience).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("content-security-policy"), "{answer}");
    cancel.cancel();
}

#[test]
fn request_limits_default_to_sane_values() {
    let limits = HttpLimits::default();
    assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(limits.request_timeout, Duration::from_secs(60));
    assert_eq!(limits.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(WebSettings::default().limits, limits);
}
