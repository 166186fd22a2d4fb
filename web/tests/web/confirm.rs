//! Every mutating UI action confirms first: its confirmation lists the exact task
//! instances it will change (from the action's own plan), confirming changes exactly
//! those, a list that went stale is refused on the same form with the new list, and a
//! mark keeps the try's recorded times and is in the audit log with who and what.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use nightshift_core::state::TaskState;
use nightshift_store::{Store, TaskInstance};

use crate::common::{both_backends, fixture, request, send, unescape, Auth, Fixture, DAG_ID};

both_backends!(
    retry_lists_what_it_clears_and_clears_exactly_that,
    a_stale_confirmation_is_refused_on_the_same_form,
    mark_success_lists_its_downstream_and_keeps_the_try_times,
    cancel_lists_the_unfinished_instances,
    retry_failed_instances_only_when_one_failed,
);

/// The value of the hidden field `name` in a confirmation.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in:\n{html}"))
        + marker.len();
    let end = start + html[start..].find('"').expect("closing quote");
    unescape(&html[start..end])
}

/// `(task, map index)` of the rows a confirmation lists, in order.
fn listed(html: &str) -> Vec<String> {
    let Some(tbody) = html.split("<tbody>").nth(1) else {
        return Vec::new();
    };
    let tbody = &tbody[..tbody.find("</tbody>").expect("tbody closes")];
    tbody
        .split("<tr>")
        .skip(1)
        .map(|row| {
            let link = &row[row.find("\">").expect("link") + 2..];
            unescape(&link[..link.find("</a>").expect("link closes")])
        })
        .collect()
}

async fn instances(f: &Fixture) -> Vec<TaskInstance> {
    let run = f.run(&f.run_id).await;
    f.store.list_task_instances(run.id).await.expect("list")
}

async fn set(f: &Fixture, task_id: &str, map_index: i32, state: TaskState) {
    let ti = instances(f)
        .await
        .into_iter()
        .find(|ti| ti.task_id == task_id && ti.map_index == map_index)
        .unwrap_or_else(|| panic!("{task_id}[{map_index}]"));
    nightshift_testkit::force_state(&f.store, ti.id, state).await;
}

/// The run as the scheduler leaves it after extract failed: its downstream upstream_failed.
async fn failed_downstream(f: &Fixture) {
    for (task, index) in [("fanout", 0), ("fanout", 1), ("load", -1)] {
        set(f, task, index, TaskState::UpstreamFailed).await;
    }
}

/// A GET as the operator, from htmx (`HX-Request`) when `htmx`.
async fn open(f: &Fixture, path: &str, htmx: bool) -> crate::common::Reply {
    let auth = Auth::Session(&f.operator_session, false);
    let mut req = request(Method::GET, path, auth, Body::empty(), "text/plain");
    if htmx {
        req.headers_mut()
            .insert("hx-request", HeaderValue::from_static("true"));
    }
    send(&f.app, req).await
}

/// Posts a confirmation's form back as the operator (the form's own fields).
async fn confirm(f: &Fixture, action: &str, html: &str, names: &[&str]) -> crate::common::Reply {
    let mut fields = vec![format!("csrf={}", f.operator_session.csrf)];
    for name in names {
        let value = hidden(html, name);
        let encoded: String = url_encode(&value);
        fields.push(format!("{name}={encoded}"));
    }
    let auth = Auth::Session(&f.operator_session, false);
    f.post_form(action, auth, &fields.join("&")).await
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn retry_lists_what_it_clears_and_clears_exactly_that(store: Store) {
    let f = fixture(store).await;
    failed_downstream(&f).await;
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let task_page = format!("{run}/tasks/extract");

    // The task page's Retry opens the confirmation (a GET: nothing changes yet).
    let page = open(&f, &task_page, false).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = unescape(&page.text());
    assert!(html.contains(&format!(r#"hx-get="{run}/clear""#)), "{html}");
    assert!(html.contains(r#"<div id="confirm"></div>"#));

    let ask = format!("{run}/clear?task_id=extract&downstream=on&back=%2Fx&region=task-live");
    let before = instances(&f).await;
    let reply = open(&f, &ask, false).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    assert!(
        html.contains("<html"),
        "without htmx the confirmation is a page"
    );
    assert_eq!(
        listed(&html),
        ["extract", "fanout [0]", "fanout [1]", "load"],
        "{html}"
    );
    assert!(html.contains("4 task instances"), "{html}");
    assert_eq!(
        instances(&f).await,
        before,
        "the confirmation changes nothing"
    );

    // From htmx: the same list as a box for the page, no page around it.
    let boxed = open(&f, &ask, true).await.text();
    assert!(
        boxed.starts_with(r#"<div id="confirm" class="overlay">"#),
        "{boxed}"
    );
    assert!(!boxed.contains("<html"));
    assert_eq!(listed(&boxed), listed(&html));
    assert!(boxed.contains(r##"hx-target="#task-live""##), "{boxed}");

    // Confirming clears exactly the listed instances and goes back.
    let names = ["task_id", "downstream", "back", "region", "expect"];
    let reply = confirm(&f, &format!("{run}/clear"), &html, &names).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location(), Some("/x"));
    let after = instances(&f).await;
    assert!(
        after.iter().all(|ti| ti.state == TaskState::Pending),
        "{after:?}"
    );
    let audit = f.audit().await;
    let entry = audit
        .iter()
        .find(|a| a.action == "task.clear")
        .expect("audited");
    assert_eq!(entry.actor, "otto");
    assert_eq!(entry.details["changes"].as_array().map(Vec::len), Some(4));

    // A viewer gets no confirmation.
    let viewer = Auth::Session(&f.viewer_session, false);
    assert_eq!(f.get(&ask, viewer).await.status, StatusCode::FORBIDDEN);
}

async fn a_stale_confirmation_is_refused_on_the_same_form(store: Store) {
    let f = fixture(store).await;
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let ask = format!("{run}/clear?task_id=extract&downstream=on&region=task-live");
    let html = open(&f, &ask, false).await.text();
    assert_eq!(listed(&html), ["extract"]);

    // Meanwhile the scheduler marks the downstream upstream_failed: the list is stale.
    failed_downstream(&f).await;
    let before = instances(&f).await;
    let names = ["task_id", "downstream", "back", "region", "expect"];
    let reply = confirm(&f, &format!("{run}/clear"), &html, &names).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    let again = reply.text();
    assert!(
        again.contains("changed since this list was made"),
        "{again}"
    );
    assert_eq!(
        listed(&again),
        ["extract", "fanout [0]", "fanout [1]", "load"],
        "the same form, with the new list"
    );
    assert_eq!(hidden(&again, "task_id"), "extract", "the input is kept");
    assert_eq!(instances(&f).await, before, "nothing changed");

    // From htmx the refusal is the box alone, swapped over the old one (out of band).
    let stale = hidden(&html, "expect");
    let form = format!(
        "csrf={}&task_id=extract&downstream=on&region=task-live&expect={}",
        f.operator_session.csrf,
        url_encode(&stale)
    );
    let auth = Auth::Session(&f.operator_session, false);
    let mut req = request(
        Method::POST,
        &format!("{run}/clear"),
        auth,
        Body::from(form),
        "application/x-www-form-urlencoded",
    );
    req.headers_mut()
        .insert("hx-request", HeaderValue::from_static("true"));
    let reply = send(&f.app, req).await;
    assert_eq!(reply.status, StatusCode::OK, "htmx swaps only a 2xx");
    assert_eq!(
        reply.headers.get("hx-reswap").map(|v| v.as_bytes()),
        Some(&b"none"[..])
    );
    assert!(reply.text().starts_with(r#"<div id="confirm""#));

    // The new list, confirmed, is applied.
    let reply = confirm(&f, &format!("{run}/clear"), &again, &names).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
}

async fn mark_success_lists_its_downstream_and_keeps_the_try_times(store: Store) {
    let f = fixture(store).await;
    failed_downstream(&f).await;
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let before = instances(&f).await;
    let extract = before
        .iter()
        .find(|ti| ti.task_id == "extract")
        .cloned()
        .expect("extract");
    assert!(extract.end_date.is_some());

    let task_page = unescape(
        &open(&f, &format!("{run}/tasks/extract"), false)
            .await
            .text(),
    );
    assert!(task_page.contains(&format!(r#"hx-get="{run}/tasks/extract/mark""#)));
    let ask = format!("{run}/tasks/extract/mark?state=success&map_index=-1");
    let html = open(&f, &ask, false).await.text();
    assert_eq!(
        listed(&html),
        ["extract", "fanout [0]", "fanout [1]", "load"],
        "marking success says it resets the upstream_failed downstream: {html}"
    );
    assert!(html.contains("Confirm: mark success"));
    let names = ["state", "map_index", "back", "expect"];
    let reply = confirm(&f, &format!("{run}/tasks/extract/mark"), &html, &names).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());

    let after = instances(&f).await;
    let states: Vec<(String, i32, TaskState)> = after
        .iter()
        .map(|ti| (ti.task_id.clone(), ti.map_index, ti.state))
        .collect();
    assert_eq!(
        states,
        [
            ("extract".to_owned(), -1, TaskState::Success),
            ("fanout".to_owned(), 0, TaskState::Pending),
            ("fanout".to_owned(), 1, TaskState::Pending),
            ("load".to_owned(), -1, TaskState::Pending),
        ]
    );
    let marked = &after[0];
    assert_eq!(
        (marked.start_date, marked.end_date),
        (extract.start_date, extract.end_date),
        "the try's recorded times stay"
    );
    let audit = f.audit().await;
    let entry = audit
        .iter()
        .find(|a| a.action == "task.mark_success")
        .expect("the mark is in the audit log");
    assert_eq!(entry.actor, "otto");
    assert_eq!(entry.task_id.as_deref(), Some("extract"));
    let changed = entry.details["changes"].as_array().expect("changes");
    assert_eq!(changed.len(), 4);
    assert_eq!(changed[0]["from"], "failed");
    assert_eq!(changed[0]["to"], "success");
}

async fn cancel_lists_the_unfinished_instances(store: Store) {
    let f = fixture(store).await;
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let html = open(&f, &format!("{run}/cancel"), false).await.text();
    assert_eq!(
        listed(&html),
        ["fanout [0]", "fanout [1]", "load"],
        "the failed extract is finished: {html}"
    );
    let reply = confirm(&f, &format!("{run}/cancel"), &html, &["back", "expect"]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let after = instances(&f).await;
    assert!(after[1..].iter().all(|ti| ti.state == TaskState::Skipped));
    // Cancelling again: the refusal is on the confirmation, with nothing listed.
    let reply = confirm(&f, &format!("{run}/cancel"), &html, &["back", "expect"]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let again = reply.text();
    assert!(
        again.contains("already failed") && again.contains("Nothing to change"),
        "{again}"
    );
}

async fn retry_failed_instances_only_when_one_failed(store: Store) {
    let f = fixture(store).await;
    let page = format!("/dags/{DAG_ID}/runs/{}/tasks/fanout", f.run_id);
    let html = open(&f, &page, false).await.text();
    assert!(!html.contains("Retry failed instances"), "none failed yet");
    set(&f, "fanout", 1, TaskState::Failed).await;
    let html = open(&f, &page, false).await.text();
    assert!(html.contains("Retry failed instances"), "{html}");
    let ask = format!(
        "/dags/{DAG_ID}/runs/{}/clear?task_id=fanout&only_failed=on&downstream=on",
        f.run_id
    );
    assert_eq!(listed(&open(&f, &ask, false).await.text()), ["fanout [1]"]);
}
