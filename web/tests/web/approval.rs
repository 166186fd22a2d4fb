//! The approval form and routes: an `approval` instance awaiting input shows its message
//! (escaped) and, to operators, the form; a viewer can decide neither in the UI nor
//! through the API (403, and nothing changes); an operator's approval in the UI and a
//! rejection through the API are recorded (state, output, error, audit entry); a second
//! decision is a conflict.

use axum::http::{Method, StatusCode};
use chrono::Utc;
use nightshift_core::approval::request_output;
use nightshift_core::state::TaskState;
use nightshift_store::{RunType, Store, TaskInstance, TryOutcome};
use serde_json::json;

use crate::common::{both_backends, claim_task, started_run, t, unescape, Auth, Fixture};

both_backends!(
    viewers_cannot_decide_and_operators_approve_in_the_ui,
    a_rejection_through_the_api_fails_the_task_with_its_comment,
);

const GATE: &str = r#"
[tasks.ask]
type = "approval"
message = "Load <b>42</b> rows?"

[tasks.after]
type = "noop"
depends_on = ["ask"]
"#;

/// The DAG `gate` with a run whose `ask` asked (as its worker records it): awaiting input.
async fn awaiting(f: &Fixture) -> TaskInstance {
    let dag = nightshift_testkit::seed_dag(&f.store, "dags/gate.toml", GATE).await;
    let now = Utc::now();
    let run = started_run(
        &f.store,
        &dag,
        "r1",
        RunType::Manual,
        t("2026-01-02T00:00:00Z"),
        now,
    )
    .await;
    let (ti_id, running) = claim_task(&f.store, run.id, "ask", now).await;
    running
        .finish(TryOutcome {
            new_state: TaskState::AwaitingInput,
            exit_code: None,
            output: Some(request_output("Load <b>42</b> rows?", now, None)),
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("the try asks");
    let ti = nightshift_testkit::instance(&f.store, ti_id).await;
    assert_eq!(ti.state, TaskState::AwaitingInput);
    assert_eq!(ti.lease_owner, None);
    ti
}

const PAGE: &str = "/dags/gate/runs/r1/tasks/ask";
const FORM: &str = "/dags/gate/runs/r1/tasks/ask/approval";
const API: &str = "/api/v1/dags/gate/dagRuns/r1/taskInstances/ask";

async fn viewers_cannot_decide_and_operators_approve_in_the_ui(store: Store) {
    let f = crate::common::fixture(store).await;
    let ti = awaiting(&f).await;

    // The message is shown escaped; the form only to those who may decide.
    let page = f.get(PAGE, Auth::Session(&f.operator_session, false)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("Load &lt;b&gt;42&lt;&#x2f;b&gt; rows?"),
        "{html}"
    );
    assert!(!html.contains("<b>42</b>"), "the message is escaped");
    assert!(
        unescape(&html).contains(&format!("action=\"{FORM}\"")),
        "{html}"
    );
    assert!(
        html.contains("name=\"decision\" value=\"approve\""),
        "{html}"
    );
    let page = f.get(PAGE, Auth::Session(&f.viewer_session, false)).await;
    let html = page.text();
    assert!(!html.contains("name=\"decision\""), "no form for a viewer");
    assert!(
        html.contains("An operator or admin approves or rejects it"),
        "{html}"
    );

    // A viewer is refused on every path, and nothing changes.
    let reply = f
        .post_as(&f.viewer_session, FORM, "decision=approve&map_index=-1")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for action in ["approve", "reject"] {
        let path = format!("{API}/{action}");
        let reply = f
            .call(Method::POST, &path, Auth::Bearer(&f.viewer), &json!({}))
            .await;
        let detail = reply.problem(StatusCode::FORBIDDEN);
        assert!(detail.contains("needs the operator role"), "{detail}");
        let reply = f
            .call(
                Method::POST,
                &path,
                Auth::Session(&f.viewer_session, true),
                &json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let unchanged = nightshift_testkit::instance(&f.store, ti.id).await;
    assert_eq!(unchanged.state, TaskState::AwaitingInput);
    assert!(f.audit().await.iter().all(|a| a.action != "task.approve"));

    // The operator approves in the UI.
    let reply = f
        .post_as(
            &f.operator_session,
            FORM,
            "decision=approve&comment=looks+%3Cfine%3E&map_index=-1",
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location(), Some(PAGE));
    let done = nightshift_testkit::instance(&f.store, ti.id).await;
    assert_eq!(done.state, TaskState::Success);
    assert!(done.end_date.is_some());
    let output = done.output.clone().expect("output");
    assert_eq!(output["message"], "Load <b>42</b> rows?");
    assert_eq!(output["decision"], "approved");
    assert_eq!(output["approved"], true);
    assert_eq!(output["by"], "otto");
    assert_eq!(output["comment"], "looks <fine>");
    let attempts = f.store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, TaskState::Success);
    assert!(attempts[0].end_date.is_some());
    assert_eq!(attempts[0].error, None);
    let audit = f.audit().await;
    let entry = audit
        .iter()
        .find(|a| a.action == "task.approve")
        .expect("audited");
    assert_eq!(entry.actor, "otto");
    assert_eq!(
        (
            entry.dag_id.as_deref(),
            entry.run_id.as_deref(),
            entry.task_id.as_deref()
        ),
        (Some("gate"), Some("r1"), Some("ask"))
    );
    assert_eq!(entry.details["comment"], "looks <fine>");
    // The log ends with the decision; the page shows it, escaped.
    let log = f.store.read_logs(ti.id, 1, 0, 100).await.expect("log");
    let last = log.last().map(|l| l.line.clone()).unwrap_or_default();
    assert!(last.starts_with("approved by otto at "), "{last}");
    let html = f
        .get(PAGE, Auth::Session(&f.viewer_session, false))
        .await
        .text();
    assert!(html.contains("<strong>approved</strong> by otto"), "{html}");
    assert!(html.contains("looks &lt;fine&gt;"), "{html}");

    // The downstream may run now: its trigger rule is met.
    let dag = crate::common::load_dag_named(&f.store, "gate").await;
    let instances = f.store.list_task_instances(done.run).await.expect("tis");
    let evaluation = nightshift_core::plan::evaluate_run(
        &dag,
        &nightshift_store::instance_views(&instances),
        Utc::now(),
    );
    let after = instances
        .iter()
        .find(|i| i.task_id == "after")
        .expect("after");
    assert!(
        evaluation.actions.iter().any(|a| matches!(a,
            nightshift_core::plan::Action::Transition { id, event: nightshift_core::state::TaskEvent::Schedule, .. } if *id == after.id)),
        "{evaluation:?}"
    );

    // A second decision loses.
    let reply = f
        .call(
            Method::POST,
            &format!("{API}/reject"),
            Auth::Bearer(&f.operator),
            &json!({}),
        )
        .await;
    let detail = reply.problem(StatusCode::CONFLICT);
    assert!(
        detail.contains("does not await input: it is success"),
        "{detail}"
    );
}

async fn a_rejection_through_the_api_fails_the_task_with_its_comment(store: Store) {
    let f = crate::common::fixture(store).await;
    let ti = awaiting(&f).await;
    let reply = f
        .call(
            Method::POST,
            &format!("{API}/reject"),
            Auth::Bearer(&f.operator),
            // An integral number written as a float is an integer to JSON Schema.
            &json!({ "comment": "numbers look off", "map_index": -1.0 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["state"], "failed");
    assert_eq!(body["task_id"], "ask");
    let attempts = f.store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts[0].state, TaskState::Failed);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("rejected by otto: numbers look off")
    );
    let done = nightshift_testkit::instance(&f.store, ti.id).await;
    assert_eq!(done.output.expect("output")["decision"], "rejected");
    let html = f
        .get(PAGE, Auth::Session(&f.viewer_session, false))
        .await
        .text();
    assert!(
        html.contains("rejected by otto: numbers look off"),
        "{html}"
    );
    let audit = f.audit().await;
    assert!(
        audit
            .iter()
            .any(|a| a.action == "task.reject" && a.actor == "otto"),
        "{audit:?}"
    );
    // A comment past the limit is refused, naming the limit.
    let long = "x".repeat(2001);
    let reply = f
        .call(
            Method::POST,
            &format!("{API}/approve"),
            Auth::Bearer(&f.operator),
            &json!({ "comment": long }),
        )
        .await;
    let detail = reply.problem(StatusCode::BAD_REQUEST);
    assert!(detail.contains("2000 characters"), "{detail}");
}
