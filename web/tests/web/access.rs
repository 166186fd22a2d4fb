//! Who may call what. Every operation of the OpenAPI document (checked against a table
//! of the role each needs, so a new operation cannot be added without saying who may
//! call it) is called with no credentials, a wrong token, and as each role with a bearer
//! token and with a browser session; every form of the UI (found by reading the pages an
//! admin sees) is posted as each role, with and without its CSRF token.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use nightshift_store::{Pool, Store};
use serde_json::Value;

use crate::common::{both_backends, request, send, unescape, Auth, Fixture, Reply, DAG_ID};

both_backends!(
    every_api_operation_checks_credentials_and_roles,
    every_ui_form_checks_roles_and_csrf,
);

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// Anyone, signed in or not.
    Nobody,
    Viewer,
    Operator,
    Admin,
}

impl Need {
    fn name(self) -> &'static str {
        match self {
            Need::Nobody => "nobody",
            Need::Viewer => "viewer",
            Need::Operator => "operator",
            Need::Admin => "admin",
        }
    }
}

/// One API operation: method, path as in the OpenAPI document, the role it needs, a
/// valid body for a write (`{run}` is the fixture's run id, `{who}` names the caller
/// uniquely), and path parameters that differ from the defaults in [`fill`].
struct Operation {
    method: &'static str,
    path: &'static str,
    need: Need,
    body: &'static str,
    params: &'static [(&'static str, &'static str)],
    /// Appended to the filled path (a query an operation requires).
    query: &'static str,
}

const fn op(method: &'static str, path: &'static str, need: Need) -> Operation {
    Operation {
        method,
        path,
        need,
        body: "",
        params: &[],
        query: "",
    }
}

const fn write(
    method: &'static str,
    path: &'static str,
    need: Need,
    body: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        need,
        body,
        params: &[],
        query: "",
    }
}

/// Every operation of the API, in an order where each write finds what it needs (the
/// pool `p_{who}` is created before it is deleted).
const OPERATIONS: &[Operation] = &[
    op("get", "/health", Need::Nobody),
    op("get", "/api/v1/dags", Need::Viewer),
    op("get", "/api/v1/dags/{dag_id}", Need::Viewer),
    write(
        "patch",
        "/api/v1/dags/{dag_id}",
        Need::Operator,
        r#"{"is_paused": false}"#,
    ),
    op("get", "/api/v1/dags/{dag_id}/details", Need::Viewer),
    op("get", "/api/v1/dags/{dag_id}/versions", Need::Viewer),
    op("get", "/api/v1/dags/{dag_id}/dagRuns", Need::Viewer),
    write(
        "post",
        "/api/v1/dags/{dag_id}/dagRuns",
        Need::Operator,
        r#"{"dag_run_id": "t_{who}", "conf": {"target": "{who}"}}"#,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}",
        Need::Viewer,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines",
        Need::Viewer,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        Need::Viewer,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        Need::Viewer,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
        Need::Viewer,
    ),
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
        Need::Viewer,
    ),
    Operation {
        method: "get",
        path: "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}/search",
        need: Need::Viewer,
        body: "",
        params: &[],
        query: "?q=line",
    },
    op(
        "get",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}/download",
        Need::Viewer,
    ),
    write(
        "post",
        "/api/v1/dags/{dag_id}/clearTaskInstances",
        Need::Operator,
        r#"{"dag_run_id": "{run}", "task_ids": ["extract"]}"#,
    ),
    write(
        "post",
        "/api/v1/dags/{dag_id}/updateTaskInstancesState",
        Need::Operator,
        r#"{"dag_run_id": "{run}", "task_id": "extract", "new_state": "success"}"#,
    ),
    // The fixture's task is no approval: an operator's decision is a 409 (the role
    // sufficed); web/tests/web/approval.rs decides real ones.
    write(
        "post",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/approve",
        Need::Operator,
        r#"{"comment": "by {who}"}"#,
    ),
    write(
        "post",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/reject",
        Need::Operator,
        r#"{"comment": "by {who}"}"#,
    ),
    // Cancels the run: 200 the first time, 409 after.
    write(
        "patch",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}",
        Need::Operator,
        r#"{"state": "failed"}"#,
    ),
    op("get", "/api/v1/pools", Need::Viewer),
    write(
        "post",
        "/api/v1/pools",
        Need::Admin,
        r#"{"name": "p_{who}", "slots": 2, "description": "made by {who}"}"#,
    ),
    op("get", "/api/v1/pools/{pool_name}", Need::Viewer),
    write(
        "patch",
        "/api/v1/pools/{pool_name}",
        Need::Admin,
        r#"{"slots": 3}"#,
    ),
    Operation {
        method: "delete",
        path: "/api/v1/pools/{pool_name}",
        need: Need::Admin,
        body: "",
        params: &[("pool_name", "p_{who}")],
        query: "",
    },
    op("get", "/api/v1/users", Need::Admin),
    write(
        "post",
        "/api/v1/users",
        Need::Admin,
        r#"{"username": "u_{who}", "password": "long enough pw", "role": "viewer"}"#,
    ),
    write(
        "patch",
        "/api/v1/users/{username}",
        Need::Admin,
        r#"{"role": "viewer"}"#,
    ),
    op("get", "/api/v1/eventLogs", Need::Viewer),
    op("get", "/api/v1/importErrors", Need::Viewer),
    op("get", "/api/v1/version", Need::Viewer),
];

/// Routes beside the document's operations: the document itself and `/metrics`.
const UNDOCUMENTED: &[Operation] = &[
    op("get", "/api/v1/openapi.json", Need::Viewer),
    op("get", "/metrics", Need::Viewer),
];

/// `template` with its `{…}` parameters filled in.
fn fill(template: &str, f: &Fixture, who: &str, params: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    for (name, value) in [
        ("dag_id", DAG_ID),
        ("dag_run_id", f.run_id.as_str()),
        ("run", f.run_id.as_str()),
        ("task_id", "extract"),
        ("task_try_number", "1"),
        ("pool_name", "scratch"),
        ("username", "vera"),
        ("who", who),
    ] {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

async fn call_raw(f: &Fixture, method: &str, path: &str, auth: Auth<'_>, body: &str) -> Reply {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let body = Body::from(body.to_owned());
    send(
        &f.app,
        request(method, path, auth, body, "application/json"),
    )
    .await
}

/// The fixture, with a pool `scratch` to act on.
async fn fixture_with_scratch_pool(store: Store) -> Fixture {
    let f = crate::common::fixture(store).await;
    let pool = Pool {
        name: "scratch".to_owned(),
        slots: 1,
        description: String::new(),
    };
    f.store.upsert_pool(&pool).await.expect("pool");
    f
}

/// The statuses the document lists for an operation.
fn documented(doc: &Value, op: &Operation) -> BTreeSet<u16> {
    doc["paths"][op.path][op.method]["responses"]
        .as_object()
        .map(|responses| responses.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

async fn every_api_operation_checks_credentials_and_roles(store: Store) {
    let f = fixture_with_scratch_pool(store).await;
    let doc = f
        .get("/api/v1/openapi.json", Auth::Bearer(&f.viewer))
        .await
        .json();

    // The table and the document list the same operations.
    let in_doc: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "put", "post", "patch", "delete"].contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let in_table: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|op| (op.method.to_owned(), op.path.to_owned()))
        .collect();
    assert_eq!(
        in_table.len(),
        OPERATIONS.len(),
        "an operation is in the table twice"
    );
    let missing: Vec<_> = in_doc.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "operations in the OpenAPI document but not in this test's table (say which role \
         each needs): {missing:?}"
    );
    let stale: Vec<_> = in_table.difference(&in_doc).collect();
    assert!(
        stale.is_empty(),
        "operations in the table but not in the document: {stale:?}"
    );
    for op in OPERATIONS {
        if op.method != "get" {
            assert!(
                op.need >= Need::Operator,
                "{} {} changes state, so it needs at least the operator role",
                op.method,
                op.path
            );
        }
    }

    let callers = [
        (Need::Viewer, "viewer", f.viewer.as_str(), &f.viewer_session),
        (
            Need::Operator,
            "operator",
            f.operator.as_str(),
            &f.operator_session,
        ),
        (Need::Admin, "admin", f.admin.as_str(), &f.admin_session),
    ];
    for op in OPERATIONS.iter().chain(UNDOCUMENTED) {
        let is_documented = OPERATIONS.iter().any(|o| std::ptr::eq(o, op));
        let writes = op.method != "get";
        let listed = documented(&doc, op);
        let check_documented = |status: StatusCode, context: &str| {
            if is_documented {
                assert!(
                    listed.contains(&status.as_u16()),
                    "{} {} answered {status} {context}, which the document does not list \
                     ({listed:?})",
                    op.method,
                    op.path
                );
            }
        };

        // No credentials, and a token nobody was given.
        let path = fill(op.path, &f, "anonymous", op.params) + op.query;
        let body = fill(op.body, &f, "anonymous", op.params);
        for (auth, what) in [
            (Auth::None, "without credentials"),
            (Auth::Bearer("not-a-token"), "with an unknown token"),
        ] {
            let reply = call_raw(&f, op.method, &path, auth, &body).await;
            if op.need == Need::Nobody {
                assert_eq!(reply.status, StatusCode::OK, "{path} {what}");
                continue;
            }
            let context = format!("{} {path} {what}", op.method);
            let detail = reply.problem(StatusCode::UNAUTHORIZED);
            assert!(
                detail.contains("authentication required"),
                "{context}: {detail}"
            );
            assert!(
                reply.headers.contains_key(header::WWW_AUTHENTICATE),
                "{context}"
            );
            check_documented(reply.status, what);
        }
        if op.need == Need::Nobody {
            continue;
        }

        for (role, role_name, token, session) in callers {
            for (auth, how) in [
                (Auth::Bearer(token), "bearer"),
                (Auth::Session(session, true), "session"),
            ] {
                let who = format!("{role_name}_{how}");
                let path = fill(op.path, &f, &who, op.params) + op.query;
                let context = format!("{} {path} as {who}", op.method);
                if role < op.need {
                    // Refused before the body is read: even a malformed one gets the 403.
                    let reply = call_raw(&f, op.method, &path, auth, "[not json").await;
                    let detail = reply.problem(StatusCode::FORBIDDEN);
                    assert!(
                        detail.contains(&format!("needs the {} role", op.need.name())),
                        "{context}: {detail}"
                    );
                    check_documented(reply.status, &context);
                    continue;
                }
                let body = fill(op.body, &f, &who, op.params);
                let reply = call_raw(&f, op.method, &path, auth, &body).await;
                let ok = if writes {
                    // A repeated cancel is a conflict, which still means the role sufficed.
                    reply.status.is_success() || reply.status == StatusCode::CONFLICT
                } else {
                    reply.status == StatusCode::OK
                };
                assert!(ok, "{context}: {} {}", reply.status, reply.text());
                check_documented(reply.status, &context);
            }
            // A session must send its CSRF token with a write, whatever its role.
            if writes {
                let who = format!("{role_name}_nocsrf");
                let path = fill(op.path, &f, &who, op.params) + op.query;
                let body = fill(op.body, &f, &who, op.params);
                let reply =
                    call_raw(&f, op.method, &path, Auth::Session(session, false), &body).await;
                let detail = reply.problem(StatusCode::FORBIDDEN);
                assert!(detail.contains("CSRF"), "{} {path}: {detail}", op.method);
            }
        }
    }

    // What the admins' writes left behind (a pool they made, they deleted again), and that
    // the refused writes left nothing.
    for who in ["admin_bearer", "admin_session"] {
        let (user, pool, run) = left_behind(&f, who).await;
        assert!(
            user && !pool && run,
            "{who}: user {user}, pool {pool}, run {run}"
        );
    }
    for who in ["viewer_bearer", "operator_bearer", "viewer_session"] {
        assert!(!left_behind(&f, who).await.1, "{who}: no pool");
    }
    assert!(
        !left_behind(&f, "viewer_bearer").await.2,
        "viewer_bearer: no run"
    );
}

/// Whether the writes as `who` left a user `u_{who}`, a pool `p_{who}` and a run `t_{who}`.
async fn left_behind(f: &Fixture, who: &str) -> (bool, bool, bool) {
    let store = &f.store;
    let user = store.get_user_by_name(&format!("u_{who}")).await;
    let pool = store.get_pool(&format!("p_{who}")).await;
    let run = store.get_run_by_run_id(DAG_ID, &format!("t_{who}")).await;
    (
        user.expect("get user").is_some(),
        pool.expect("get pool").is_some(),
        run.expect("get run").is_some(),
    )
}

/// Every form of the UI: the path it posts to (`{x}` matches one path segment) and the
/// role it needs (viewer: anyone signed in).
const FORMS: &[(&str, Need)] = &[
    ("/dags/{dag_id}/pause", Need::Operator),
    ("/dags/{dag_id}/trigger", Need::Operator),
    ("/dags/{dag_id}/runs/{run_id}/cancel", Need::Operator),
    ("/dags/{dag_id}/runs/{run_id}/clear", Need::Operator),
    (
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
        Need::Operator,
    ),
    ("/admin/pools", Need::Admin),
    ("/admin/pools/{name}", Need::Admin),
    ("/admin/pools/{name}/delete", Need::Admin),
    ("/admin/users", Need::Admin),
    ("/admin/users/{username}/role", Need::Admin),
    ("/admin/users/{username}/disabled", Need::Admin),
    ("/admin/users/{username}/password", Need::Admin),
    ("/admin/tokens", Need::Viewer),
    ("/admin/tokens/{id}/delete", Need::Viewer),
    ("/logout", Need::Viewer),
];

/// Pages only some roles may open.
const GUARDED_PAGES: &[(&str, Need)] = &[
    ("/dags/nightly/trigger", Need::Operator),
    (
        "/dags/nightly/runs/scheduled__2026-01-01/clear?task_id=extract",
        Need::Operator,
    ),
    (
        "/dags/nightly/runs/scheduled__2026-01-01/tasks/extract/mark?state=failed",
        Need::Operator,
    ),
    (
        "/dags/nightly/runs/scheduled__2026-01-01/cancel",
        Need::Operator,
    ),
    ("/admin/pools", Need::Admin),
    ("/admin/users", Need::Admin),
];

fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// The `action` of every `<form method="post">` in `html`.
fn post_actions(html: &str) -> Vec<String> {
    html.split("<form")
        .skip(1)
        .filter_map(|form| {
            let tag = &form[..form.find('>')?];
            if !tag.contains(r#"method="post""#) {
                return None;
            }
            let start = tag.find(r#"action=""#)? + r#"action=""#.len();
            let end = start + tag[start..].find('"')?;
            Some(
                tag[start..end]
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

async fn every_ui_form_checks_roles_and_csrf(store: Store) {
    let f = fixture_with_scratch_pool(store).await;
    let admin = f.admin_session.clone();
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let pages = [
        "/dags".to_owned(),
        format!("/dags/{DAG_ID}"),
        format!("/dags/{DAG_ID}/graph"),
        format!("/dags/{DAG_ID}/trigger"),
        run.clone(),
        format!("{run}/tasks/extract"),
        format!("{run}/tasks/fanout"),
        // The confirmations of clear, mark and cancel hold their posting forms.
        format!("{run}/clear?task_id=extract"),
        format!("{run}/tasks/extract/mark?state=success&map_index=-1"),
        format!("{run}/cancel"),
        "/audit".to_owned(),
        "/admin".to_owned(),
        "/admin/pools".to_owned(),
        "/admin/users".to_owned(),
    ];
    // One concrete path for each form in the table, found on the pages.
    let mut found: Vec<Option<String>> = vec![None; FORMS.len()];
    for page in &pages {
        let reply = f.get(page, Auth::Session(&admin, false)).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}: {}", reply.text());
        for action in post_actions(&unescape(&reply.text())) {
            let Some(i) = FORMS.iter().position(|(t, _)| matches(t, &action)) else {
                panic!(
                    "{page} has a form posting to {action}, which this test's table does \
                     not list: say which role it needs"
                );
            };
            found[i].get_or_insert(action);
        }
    }
    for ((template, _), action) in FORMS.iter().zip(&found) {
        assert!(action.is_some(), "no page shows a form for {template}");
    }

    let callers = [
        (Need::Viewer, &f.viewer_session),
        (Need::Operator, &f.operator_session),
        (Need::Admin, &admin),
    ];
    let audit_before = f
        .store
        .count_audit(&Default::default())
        .await
        .expect("count");
    for ((template, need), action) in FORMS.iter().zip(&found) {
        let action = action.as_deref().expect("found");
        // Signed out: to the login page, nothing done.
        let reply = f.post_form(action, Auth::None, "").await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{action}");
        assert!(reply.location().is_some_and(|l| l.starts_with("/login")));
        for (role, session) in callers {
            let reply = if role < *need {
                // Refused before the form is read: a valid token and no fields still 403.
                let form = format!("csrf={}", session.csrf);
                let reply = f
                    .post_form(action, Auth::Session(session, false), &form)
                    .await;
                assert!(
                    reply
                        .text()
                        .contains(&format!("needs the {} role", need.name())),
                    "{template} as {role:?}: {}",
                    reply.text()
                );
                reply
            } else {
                let reply = f.post_form(action, Auth::Session(session, false), "").await;
                assert!(reply.text().contains("CSRF"), "{template} as {role:?}");
                reply
            };
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{template} as {role:?}: {}",
                reply.text()
            );
        }
    }
    assert_eq!(
        f.store
            .count_audit(&Default::default())
            .await
            .expect("count"),
        audit_before,
        "a refused form changed something"
    );

    for (page, need) in GUARDED_PAGES {
        for (role, session) in callers {
            let reply = f.get(page, Auth::Session(session, false)).await;
            let expected = if role < *need {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!(reply.status, expected, "{page} as {role:?}");
        }
    }
    // Only admins see the links to the admin pages.
    for (role, session) in callers {
        let text = unescape(&f.get("/dags", Auth::Session(session, false)).await.text());
        assert_eq!(
            text.contains(r#"href="/admin/users""#),
            role == Need::Admin,
            "{role:?}"
        );
        assert_eq!(
            text.contains(r#"href="/admin/pools""#),
            role == Need::Admin,
            "{role:?}"
        );
    }
}
