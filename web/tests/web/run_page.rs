//! The run page puts the root cause first: the tasks that failed themselves (not the
//! upstream_failed ones), each with its error's first line and a link to its page, and
//! lists the run's tasks in dependency order, not alphabetically. And the favicon.

use axum::http::StatusCode;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{RunType, Store, Transition, TryOutcome};
use nightshift_testkit::t;

use crate::common::{both_backends, claim_task, fixture, get, started_run, Auth};

both_backends!(
    run_page_names_the_failed_task_and_lists_tasks_in_dependency_order,
    favicon_is_served_to_anyone
);

/// Browsers ask for `/favicon.ico` on every page: it is served (no 404), signed in or not.
async fn favicon_is_served_to_anyone(store: Store) {
    let f = fixture(store).await;
    for path in ["/favicon.ico", "/static/favicon.svg"] {
        let reply = get(&f.app, path, Auth::None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("image/svg+xml"),
            "{path}"
        );
        assert!(reply.text().starts_with("<svg"), "{path}");
    }
}

const CHAIN: &str = r#"
schedule = "@daily"
start_date = "2026-01-01"
[tasks]
extract = { type = "noop" }
transform = { type = "noop", depends_on = ["extract"] }
# Fails in the test, for good.
load = { type = "noop", depends_on = ["transform"], retries = 0 }
report = { type = "noop", depends_on = ["load"] }
"#;

/// Moves `task_id` through a real try that ends in `end` (with `error`).
async fn run_try(store: &Store, run: i64, task_id: &str, end: TaskState, error: Option<&str>) {
    let now = t("2026-01-02T03:00:00Z");
    let (_, claimed) = claim_task(store, run, task_id, now).await;
    claimed
        .finish(TryOutcome {
            new_state: end,
            error: error.map(str::to_owned),
            exit_code: None,
            ..nightshift_testkit::success(now)
        })
        .await
        .expect("finish");
}

async fn run_page_names_the_failed_task_and_lists_tasks_in_dependency_order(store: Store) {
    let f = fixture(store).await;
    let dag = nightshift_testkit::seed_dag(&f.store, "dags/chain.toml", CHAIN).await;
    let now = t("2026-01-02T03:00:00Z");
    let run = started_run(&f.store, &dag, "manual_1", RunType::Manual, now, now).await;
    run_try(&f.store, run.id, "extract", TaskState::Success, None).await;
    run_try(&f.store, run.id, "transform", TaskState::Success, None).await;
    run_try(
        &f.store,
        run.id,
        "load",
        TaskState::Failed,
        Some("\nCOPY failed: disk full\n  at line 3 of load.sql"),
    )
    .await;
    let report = f.instance(run.id, "report").await;
    f.store
        .transition(
            &Transition::on(report.id, report.state, 0, TaskEvent::UpstreamFailed, now)
                .expect("legal"),
        )
        .await
        .expect("report upstream_failed");

    let reply = get(
        &f.app,
        "/dags/chain/runs/manual_1",
        Auth::Session(&f.viewer_session, false),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // minijinja escapes `/` in attributes.
    let text = reply.text().replace("&#x2f;", "/");
    let (panel, table) = text
        .split_once("<table")
        .expect("a root-cause panel before the task table");
    // The panel names load (the root cause) with its error's first line and its page,
    // and not report (only upstream_failed).
    let cause = panel.split_once("root-cause").expect("root-cause panel").1;
    assert!(
        cause.contains("href=\"/dags/chain/runs/manual_1/tasks/load\""),
        "{cause}"
    );
    assert!(cause.contains("COPY failed: disk full"), "{cause}");
    assert!(!cause.contains("at line 3"), "only the first line: {cause}");
    assert!(!cause.contains("report"), "{cause}");
    // Tasks in dependency order: extract, transform, load, report.
    let at = |needle: &str| {
        table
            .find(&format!("/tasks/{needle}\""))
            .unwrap_or_else(|| panic!("{needle} missing:\n{table}"))
    };
    assert!(at("extract") < at("transform"), "{table}");
    assert!(at("transform") < at("load"), "{table}");
    assert!(at("load") < at("report"), "{table}");
}
