//! Live state: the run and task pages poll a fragment of themselves (`…/live`, rendered
//! from the same context and template part as the page) every 2 s while anything they
//! show is unfinished; the fragment shows a state change made meanwhile, and once the run
//! and its tasks are finished it comes without the poller, so polling stops. The task
//! page's part also brings the log box of a newer try than the one the page shows.

use axum::http::StatusCode;
use nightshift_core::state::{RunState, TaskEvent};
use nightshift_store::{RunType, Store, Transition};
use nightshift_testkit::t;

use crate::common::{both_backends, fixture, started_run, Auth, Fixture};

both_backends!(run_and_task_fragments_follow_the_state_and_stop_when_finished);

const PAIR: &str = r#"
schedule = "@daily"
start_date = "2026-01-01"
[tasks.first]
type = "noop"
[tasks.second]
type = "noop"
depends_on = ["first"]
"#;

const POLLER: &str = "hx-trigger=\"every 2s\"";

/// Marks a task of the run success, as a person would.
async fn mark_success(f: &Fixture, run: i64, task_id: &str) {
    let ti = f
        .store
        .find_task_instance(run, task_id, -1)
        .await
        .expect("find")
        .expect("instance");
    let now = t("2026-01-02T03:00:05Z");
    f.store
        .transition(
            &Transition::on(ti.id, ti.state, ti.try_number, TaskEvent::MarkSuccess, now)
                .expect("legal"),
        )
        .await
        .expect("mark success");
}

/// The fragment's text (with `/` unescaped) after checking it is a 200.
async fn fragment(f: &Fixture, path: &str) -> String {
    let reply = f.get(path, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    reply.text().replace("&#x2f;", "/")
}

/// The state badge in the task table's row of `task_id`.
fn row_state(html: &str, task_id: &str) -> String {
    let row = html
        .split("<tr>")
        .find(|row| row.contains(&format!("/tasks/{task_id}\"")))
        .unwrap_or_else(|| panic!("no row for {task_id}:\n{html}"));
    let badge = row
        .split_once("class=\"badge s-")
        .and_then(|(_, rest)| rest.split_once('"'))
        .unwrap_or_else(|| panic!("no badge for {task_id}: {row}"));
    badge.0.to_owned()
}

async fn run_and_task_fragments_follow_the_state_and_stop_when_finished(store: Store) {
    let f = fixture(store).await;
    let dag = nightshift_testkit::seed_dag(&f.store, "dags/pair.toml", PAIR).await;
    let now = t("2026-01-02T03:00:00Z");
    let run = started_run(&f.store, &dag, "manual_1", RunType::Manual, now, now).await;
    let run_live = "/dags/pair/runs/manual_1/live";
    let task_live = "/dags/pair/runs/manual_1/tasks/first/live";
    // Like their pages, the fragments need someone signed in (any role).
    for path in [run_live, task_live] {
        let reply = f.get(path, Auth::None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert!(reply
            .headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.starts_with("/login")));
    }

    // The page polls its live part, which polls itself while the run goes on.
    let page = fragment(&f, "/dags/pair/runs/manual_1").await;
    assert!(
        page.contains(&format!(
            "id=\"run-live\" data-live hx-get=\"{run_live}\" {POLLER}"
        )),
        "{page}"
    );
    // The grid and the DAG list poll themselves (swapping in their own part) too.
    let grid = fragment(&f, "/dags/pair").await;
    assert!(
        grid.contains("id=\"grid-live\" data-live hx-get=\"/dags/pair?offset=0&amp;runs=25\" hx-trigger=\"every 2s\" hx-select=\"#grid-live\""),
        "{grid}"
    );
    let graph = fragment(&f, "/dags/pair/graph").await;
    assert!(
        graph.contains("id=\"graph-live\" data-live hx-get=\"/dags/pair/graph?run_id=manual_1\" hx-trigger=\"every 2s\" hx-select=\"#graph-live\""),
        "{graph}"
    );
    let list = fragment(&f, "/dags").await;
    assert!(
        list.contains("id=\"dags-live\" data-live hx-get=\"/dags?filter=all&amp;offset=0\" hx-trigger=\"every 2s\""),
        "{list}"
    );
    let before = fragment(&f, run_live).await;
    assert!(before.starts_with("<div id=\"run-live\""), "{before}");
    assert!(before.contains(POLLER), "{before}");
    assert!(
        !before.contains("<html"),
        "a fragment, not a page: {before}"
    );
    assert_ne!(row_state(&before, "first"), "success", "{before}");
    assert!(before.contains("badge s-running\">running"), "{before}");

    // A state change made meanwhile shows in the next poll.
    mark_success(&f, run.id, "first").await;
    let after = fragment(&f, run_live).await;
    assert_eq!(row_state(&after, "first"), "success", "{after}");
    assert!(after.contains(POLLER), "second is unfinished: {after}");
    // The task page's part: its state, polling while its run goes on, with its attempts
    // swapped out of band.
    let task = fragment(&f, task_live).await;
    assert!(task.starts_with("<div id=\"task-live\""), "{task}");
    assert!(task.contains("badge s-success\">success"), "{task}");
    assert!(task.contains(POLLER), "the run is unfinished: {task}");
    assert!(
        task.contains("id=\"attempts\" class=\"card\" hx-swap-oob=\"true\""),
        "{task}"
    );

    // The live part keeps the log box on the instance's newest try: polled with the try
    // the page shows, it brings the log box of another (a retry's) and then asks with it.
    assert!(
        !task.contains("id=\"log\""),
        "no log box while the try is the same: {task}"
    );
    assert!(task.contains("/tasks/first/live?shown=0\""), "{task}");
    let moved = fragment(&f, &format!("{task_live}?shown=7")).await;
    assert!(
        moved.contains("<section id=\"log\" class=\"card\" hx-swap-oob=\"true\">"),
        "{moved}"
    );
    assert!(moved.contains("/tasks/first/live?shown=0\""), "{moved}");

    // Everything finished: the fragments come without the poller, so polling stops.
    mark_success(&f, run.id, "second").await;
    f.store
        .set_run_state(run.id, RunState::Running, RunState::Success, now)
        .await
        .expect("run ends");
    let grid = fragment(&f, "/dags/pair").await;
    assert!(grid.contains("id=\"grid-live\" data-live>"), "{grid}");
    let graph = fragment(&f, "/dags/pair/graph").await;
    assert!(graph.contains("id=\"graph-live\" data-live>"), "{graph}");
    for path in [run_live, task_live, "/dags/pair/runs/manual_1"] {
        let done = fragment(&f, path).await;
        assert!(!done.contains(POLLER), "{path} still polls: {done}");
        assert!(!done.contains("/live"), "{path} still polls: {done}");
        assert!(done.contains("badge s-success\">success"), "{path}: {done}");
    }
    let done = fragment(&f, run_live).await;
    assert_eq!(row_state(&done, "second"), "success", "{done}");
}
