//! The trigger's conf checked against the DAG's typed `params`: the API refuses a wrong
//! type or an unknown key with a 400 naming the param; the UI's form has one typed input
//! per param and shows every error (bad value, invalid or taken run id) inline on the same
//! form with what was entered kept; recent confs prefill the form.

use axum::http::{Method, StatusCode};
use nightshift_store::{DagRun, Store};
use serde_json::json;

use crate::common::{both_backends, fixture, unescape, Auth, Fixture};

both_backends!(
    the_api_refuses_a_conf_that_does_not_match_the_params,
    the_form_shows_typed_inputs_and_keeps_what_was_entered,
);

const TYPED: &str = r#"
description = "Typed params"

[params]
limit = { type = "integer", default = 100, description = "Rows to load at most" }
env = { type = "string", default = "dev", enum = ["dev", "prod"] }
full = false
day = 2026-03-01
flags = { type = "json", default = { a = 1 } }

[tasks.load]
type = "noop"
"#;

/// The run `run_id` of the DAG `typed`.
async fn typed_run(f: &Fixture, run_id: &str) -> Option<DagRun> {
    f.store
        .get_run_by_run_id("typed", run_id)
        .await
        .expect("get run")
}

async fn typed(store: Store) -> Fixture {
    let f = fixture(store).await;
    nightshift_testkit::seed_dag(&f.store, "dags/typed.toml", TYPED).await;
    f
}

async fn the_api_refuses_a_conf_that_does_not_match_the_params(store: Store) {
    let f = typed(store).await;
    let operator = Auth::Bearer(&f.operator);
    let runs = "/api/v1/dags/typed/dagRuns";
    let cases = [
        (
            json!({"limit": "five"}),
            "\"limit\": expected an integer, got \"five\"",
        ),
        (json!({"limt": 5}), "\"limt\": unknown param"),
        (
            json!({"env": "staging"}),
            "\"env\": expected one of \"dev\", \"prod\"",
        ),
        (json!({"full": "yes"}), "\"full\": expected true or false"),
        (json!({"day": "tomorrow"}), "\"day\": expected a date"),
    ];
    for (conf, needle) in cases {
        let detail = f
            .call(Method::POST, runs, operator, &json!({ "conf": conf }))
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(needle), "{conf}: {detail}");
    }
    let conf = json!({"limit": 5, "env": "prod", "flags": [1, 2]});
    let reply = f
        .call(
            Method::POST,
            runs,
            operator,
            &json!({"dag_run_id": "ok", "conf": conf}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        typed_run(&f, "ok").await.expect("run ok").conf,
        conf,
        "the conf is stored as given"
    );
}

async fn the_form_shows_typed_inputs_and_keeps_what_was_entered(store: Store) {
    let f = typed(store).await;
    let session = f.operator_session.clone();
    let auth = Auth::Session(&session, false);
    let form_path = "/dags/typed/trigger";

    let page = unescape(&f.get(form_path, auth).await.text());
    for needle in [
        r#"type="number" id="param-limit" name="param.limit" value="100""#,
        "Rows to load at most",
        r#"<option value="dev" selected>dev</option>"#,
        r#"type="checkbox" id="param-full" name="param.full""#,
        r#"type="date" id="param-day" name="param.day" value="2026-03-01""#,
        r#"name="param.flags""#,
    ] {
        assert!(page.contains(needle), "{needle} in:\n{page}");
    }
    assert!(
        !page.contains("name=\"conf\""),
        "no JSON box for a DAG with params"
    );

    // A wrong value: 400, the same form with the error beside the input and the values kept.
    let fields = "run_id=by_hand&param.limit=five&param.env=prod&param.day=2026-04-02\
                  &param.flags=%7B%22b%22%3A2%7D&param.full=true";
    let reply = f.post_as(&session, form_path, fields).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let page = unescape(&reply.text());
    for needle in [
        r#"<form class="card trigger" method="post" action="/dags/typed/trigger""#,
        r#"id="param-limit-error">expected an integer, got "five""#,
        r#"name="param.limit" value="five""#,
        r#"name="run_id" value="by_hand""#,
        r#"<option value="prod" selected>"#,
        r#"name="param.day" value="2026-04-02""#,
        "checked",
        r#"{"b":2}</textarea>"#,
    ] {
        assert!(page.contains(needle), "{needle} in:\n{page}");
    }
    assert!(
        typed_run(&f, "by_hand").await.is_none(),
        "nothing triggered"
    );

    // An invalid run id: inline too.
    let reply = f
        .post_as(&session, form_path, "run_id=..&param.limit=5")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let page = unescape(&reply.text());
    assert!(page.contains(r#"id="run-id-error""#), "{page}");
    assert!(page.contains(r#"name="param.limit" value="5""#), "{page}");

    // Good values trigger; the same run id again is a 409 on the same form.
    let good = "run_id=by_hand&param.limit=5&param.env=prod&param.day=2026-04-02\
                &param.flags=%5B1%5D";
    let reply = f.post_as(&session, form_path, good).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let run = typed_run(&f, "by_hand").await.expect("run by_hand");
    assert_eq!(
        run.conf,
        json!({"limit": 5, "env": "prod", "day": "2026-04-02", "flags": [1], "full": false})
    );
    let reply = f.post_as(&session, form_path, good).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let page = unescape(&reply.text());
    assert!(page.contains(r#"id="run-id-error""#), "{page}");
    assert!(page.contains(r#"name="run_id" value="by_hand""#), "{page}");
    assert!(page.contains(r#"name="param.limit" value="5""#), "{page}");

    // The run's conf is offered again; its link prefills the form.
    let page = unescape(&f.get(form_path, auth).await.text());
    let href = "/dags/typed/trigger?conf=";
    let at = page
        .find(href)
        .unwrap_or_else(|| panic!("a recent conf in:\n{page}"));
    let link = &page[at..];
    let link = &link[..link.find('"').expect("end of the link")];
    let prefilled = unescape(&f.get(link, auth).await.text());
    assert!(
        prefilled.contains(r#"name="param.limit" value="5""#),
        "{prefilled}"
    );
    assert!(
        prefilled.contains(r#"<option value="prod" selected>"#),
        "{prefilled}"
    );
}
