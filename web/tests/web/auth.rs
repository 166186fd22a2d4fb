//! Sign-in, sessions, CSRF, roles in the UI, and the first-start admin.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use nightshift_store::Store;
use nightshift_web::{ensure_admin, verify_password};
use serde_json::json;

use crate::common::{
    both_backends, fixture, request, send, Auth, Fixture, Reply, Session, DAG_ID, PASSWORD,
};

both_backends!(
    pages_redirect_to_login_and_static_is_public,
    login_sets_a_session_cookie_and_logout_ends_it,
    api_with_a_session_needs_the_csrf_header,
    ui_forms_check_csrf_and_roles,
    ensure_admin_creates_one_admin_once,
);

async fn pages_redirect_to_login_and_static_is_public(store: Store) {
    let f = fixture(store).await;
    let reply = f.get("/dags/nightly?offset=0", Auth::None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.location(),
        Some("/login?next=%2Fdags%2Fnightly%3Foffset%3D0")
    );
    let expired = Session {
        cookie: "not-a-session".to_owned(),
        csrf: String::new(),
    };
    let reply = f.get("/dags", Auth::Session(&expired, false)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    for path in ["/static/htmx.min.js", "/static/style.css", "/login"] {
        let reply = f.get(path, Auth::None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    assert!(f
        .get("/static/htmx.min.js", Auth::None)
        .await
        .text()
        .contains("htmx"));
}

/// The value of a `Set-Cookie` header for `name`.
fn set_cookie(reply: &crate::common::Reply, name: &str) -> Option<(String, String)> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap_or_default();
            (value.to_owned(), v.to_owned())
        })
}

async fn login(
    f: &crate::common::Fixture,
    user: &str,
    password: &str,
    with_csrf: bool,
) -> crate::common::Reply {
    let page = f.get("/login?next=/dags/nightly", Auth::None).await;
    let (csrf, attributes) = set_cookie(&page, "nightshift_login_csrf").expect("login csrf cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"));
    assert!(page.text().contains(&csrf));
    let field = if with_csrf {
        csrf.clone()
    } else {
        "wrong".to_owned()
    };
    let form = format!(
        "username={user}&password={}&csrf={field}&next=%2Fdags%2Fnightly",
        password.replace(' ', "+")
    );
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("nightshift_login_csrf={csrf}"))
        .body(Body::from(form))
        .expect("request");
    send(&f.app, req).await
}

async fn login_sets_a_session_cookie_and_logout_ends_it(store: Store) {
    let f = fixture(store).await;
    for (user, password, with_csrf, status) in [
        ("otto", "wrong password", true, StatusCode::UNAUTHORIZED),
        ("nobody", PASSWORD, true, StatusCode::UNAUTHORIZED),
        ("otto", PASSWORD, false, StatusCode::FORBIDDEN),
    ] {
        let reply = login(&f, user, password, with_csrf).await;
        assert_eq!(reply.status, status, "{user}, {password}, CSRF {with_csrf}");
    }

    let reply = login(&f, "otto", PASSWORD, true).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location(), Some("/dags/nightly"));
    let (secret, attributes) = set_cookie(&reply, "nightshift_session").expect("session cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"));
    assert!(!attributes.contains("Secure"), "not configured");
    let session = Session {
        cookie: secret,
        csrf: String::new(),
    };
    let page = f.get("/dags", Auth::Session(&session, false)).await;
    assert_eq!(page.status, StatusCode::OK);
    // The page carries the session's CSRF token for its forms.
    let text = page.text();
    let marker = "name=\"csrf\" value=\"";
    let start = text.find(marker).expect("csrf field") + marker.len();
    let csrf = text[start..start + 64].to_owned();
    let session = Session { csrf, ..session };

    let reply = f
        .post_form("/logout", Auth::Session(&session, false), "csrf=nope")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = f
        .post_form(
            "/logout",
            Auth::Session(&session, false),
            &format!("csrf={}", session.csrf),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let page = f.get("/dags", Auth::Session(&session, false)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the session ended");
}

async fn api_with_a_session_needs_the_csrf_header(store: Store) {
    let f = fixture(store).await;
    let path = format!("/api/v1/dags/{DAG_ID}");
    let reply = f.get(&path, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = json!({"is_paused": true});
    // (whose session, with the CSRF header, what the problem says or None for a 200)
    for (session, csrf, problem) in [
        (&f.operator_session, false, Some("CSRF")),
        (&f.operator_session, true, None),
        (&f.viewer_session, true, Some("needs the operator role")),
    ] {
        let reply = f
            .call(Method::PATCH, &path, Auth::Session(session, csrf), &body)
            .await;
        let Some(problem) = problem else {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            continue;
        };
        let detail = reply.problem(StatusCode::FORBIDDEN);
        assert!(detail.contains(problem), "{detail}");
    }
}

/// Posts `form` to `path` twice: the two replies.
async fn post_twice(f: &Fixture, path: &str, auth: Auth<'_>, form: &str) -> (Reply, Reply) {
    let first = f.post_form(path, auth, form).await;
    (first, f.post_form(path, auth, form).await)
}

/// Whether the fixture's DAG is paused.
async fn paused(f: &Fixture) -> bool {
    let dag = f.store.get_dag(DAG_ID).await.expect("get");
    dag.expect("the DAG").is_paused
}

async fn ui_forms_check_csrf_and_roles(store: Store) {
    let f = fixture(store).await;
    let op = Auth::Session(&f.operator_session, false);
    let viewer = Auth::Session(&f.viewer_session, false);
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let pause = format!("/dags/{DAG_ID}/pause");

    // No or wrong token: 403, nothing changes.
    let reply = f.post_form(&pause, op, "paused=true").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = f.post_form(&pause, op, "paused=true&csrf=x").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("CSRF"));
    assert!(!paused(&f).await);

    // A viewer with a valid token is still refused.
    let form = format!("paused=true&csrf={}", f.viewer_session.csrf);
    let reply = f.post_form(&pause, viewer, &form).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("operator"));

    // The operator pauses, retries the failed task, marks, triggers, cancels.
    let csrf = &f.operator_session.csrf;
    let form = format!("paused=true&back=%2Fdags&csrf={csrf}");
    let reply = f.post_form(&pause, op, &form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), Some("/dags"));
    assert!(paused(&f).await);

    let form = format!("task_id=extract&downstream=on&csrf={csrf}");
    let reply = f.post_form(&format!("{run}/clear"), op, &form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let run_row = f.run(&f.run_id).await;
    let ti = f.instance(run_row.id, "extract").await;
    assert_eq!(ti.state.as_str(), "pending");

    let mark = format!("{run}/tasks/extract/mark");
    let form = format!("state=success&map_index=-1&csrf={csrf}");
    let (first, again) = post_twice(&f, &mark, op, &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text());
    assert_eq!(
        again.status,
        StatusCode::SEE_OTHER,
        "marking success twice: the second finds nothing to change"
    );

    let form = format!("param.target=dev&run_id=by_hand&csrf={csrf}");
    let trigger = format!("/dags/{DAG_ID}/trigger");
    let reply = f.post_form(&trigger, op, &form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let triggered = f.run("by_hand").await;
    assert_eq!(triggered.conf, json!({"target": "dev"}));
    let form = format!("param.target=dev&run_id=..&csrf={csrf}");
    let reply = f.post_form(&trigger, op, &form).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().contains("id=\"run-id-error\""),
        "{}",
        reply.text()
    );

    let cancel = format!("/dags/{DAG_ID}/runs/by_hand/cancel");
    let (first, again) = post_twice(&f, &cancel, op, &format!("csrf={csrf}")).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text());
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "cancelling a finished run"
    );

    // Every action is in the audit log with the actor.
    let audit = f.audit().await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in [
        "dag.pause",
        "task.clear",
        "task.mark_success",
        "run.trigger",
        "run.cancel",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(audit.iter().all(|a| a.actor == "otto"));
}

async fn ensure_admin_creates_one_admin_once(store: Store) {
    let (name, password) = ensure_admin(&store)
        .await
        .expect("ensure")
        .expect("created");
    assert_eq!(name, "admin");
    assert!(password.len() >= 16);
    let user = store
        .get_user_by_name("admin")
        .await
        .expect("get")
        .expect("admin");
    assert_eq!(user.role.as_str(), "admin");
    assert!(verify_password(&user.password_hash, &password));
    assert!(!verify_password(&user.password_hash, "guess"));
    assert_eq!(ensure_admin(&store).await.expect("ensure"), None);
    // Keep `request` in use for the API-form tests' shape.
    let _ = request(Method::GET, "/", Auth::None, Body::empty(), "text/plain");
}
