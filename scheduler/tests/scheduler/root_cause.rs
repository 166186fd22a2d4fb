//! The run-failure alert names the root cause: in extract → transform → load → report
//! with `load` failing, the alert (delivered to a local HTTP receiver) names `load` with
//! its error and links straight to load's page, not `report` (only upstream_failed).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use nightshift_core::state::{RunState, TaskState};
use nightshift_scheduler::Scheduler;
use nightshift_store::{Store, TaskInstance};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::{add_dag, both_backends, config, drive, t, trigger, Outcome};

both_backends!(
    run_alert_names_the_task_that_failed,
    run_alert_lists_every_failed_task_with_its_link
);

/// A local receiver: each POSTed JSON body is forwarded.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(tx): State<mpsc::UnboundedSender<Value>>, Json(body): Json<Value>| async move {
                    let _ = tx.send(body);
                    "ok"
                },
            ),
        )
        .with_state(tx);
    (nightshift_testkit::serve(app).await, rx)
}

/// Ticks until the receiver has the run's alert.
async fn alert(s: &Scheduler, received: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    for _ in 0..40 {
        s.tick(t("2026-01-01T00:01:00Z")).await.expect("tick");
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(500), received.recv()).await
        {
            return message.expect("receiver alive");
        }
    }
    panic!("no alert delivered");
}

/// A run's outcome and the alert it sent.
struct Alerted {
    /// The run's link on the UI (`http://ui.test:8080`).
    run_link: String,
    state: RunState,
    states: BTreeMap<String, TaskState>,
    /// The alert's JSON body.
    body: Value,
}

impl Alerted {
    fn text(&self) -> &str {
        self.body["text"].as_str().expect("text")
    }
}

/// Runs the DAG `id` (these `[tasks…]` tables, and an `on_failure` alert to a local
/// receiver) to its end, the tasks in `failing` failing and the rest succeeding.
async fn run_to_alert(store: &Store, id: &str, tasks: &str, failing: &[&str]) -> Alerted {
    let (base, mut received) = receiver().await;
    let toml = format!("id = \"{id}\"\non_failure = {{ url = \"{base}/hook\" }}\n{tasks}");
    let dag = add_dag(store, id, &toml, false).await;
    let run = trigger(store, &dag, t("2026-01-01T00:00:00Z")).await;
    let mut cfg = config("s1");
    cfg.base_url = "http://ui.test:8080".into();
    let s = Scheduler::new(store.clone(), cfg);
    let decide = |ti: &TaskInstance| {
        if failing.contains(&ti.task_id.as_str()) {
            Outcome::Fail
        } else {
            Outcome::Succeed(None)
        }
    };
    let (state, states) = drive(store, &s, &run, t("2026-01-01T00:00:01Z"), &decide).await;
    let run_link = format!(
        "http://ui.test:8080/dags/{id}/runs/{}",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );
    Alerted {
        run_link,
        state,
        states,
        body: alert(&s, &mut received).await,
    }
}

async fn run_alert_names_the_task_that_failed(store: Store) {
    let tasks = "[tasks.extract]\ntype = \"noop\"\n\
                 [tasks.transform]\ntype = \"noop\"\ndepends_on = [\"extract\"]\n\
                 [tasks.load]\ntype = \"noop\"\ndepends_on = [\"transform\"]\n\
                 [tasks.report]\ntype = \"noop\"\ndepends_on = [\"load\"]\n";
    let alerted = run_to_alert(&store, "chain", tasks, &["load"]).await;
    assert_eq!(alerted.state, RunState::Failed);
    assert_eq!(alerted.states["report"], TaskState::UpstreamFailed);
    let (body, text) = (&alerted.body, alerted.text());
    let task_link = format!("{}/tasks/load?map_index=-1", alerted.run_link);
    assert!(text.contains("failed tasks: load"), "{text}");
    assert!(
        !text.contains("report"),
        "report was only upstream_failed: {text}"
    );
    assert!(text.contains("load: exit code 1"), "{text}");
    // Exactly one task failed: the alert's link is its page.
    assert_eq!(body["link"], task_link.as_str(), "{body}");
    assert!(text.ends_with(&task_link), "{text}");
    let failed = body["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["task_id"], "load");
    assert_eq!(failed[0]["error"], "exit code 1");
    assert_eq!(failed[0]["link"], task_link.as_str());
}

async fn run_alert_lists_every_failed_task_with_its_link(store: Store) {
    // Two independent branches fail; `join` (all_done) runs anyway, `after_b` is
    // upstream_failed; the alert names a and b in dependency order.
    let tasks = "[tasks.start]\ntype = \"noop\"\n\
                 [tasks.b]\ntype = \"noop\"\ndepends_on = [\"start\"]\n\
                 [tasks.a]\ntype = \"noop\"\ndepends_on = [\"b_side\"]\n\
                 [tasks.b_side]\ntype = \"noop\"\ndepends_on = [\"start\"]\n\
                 [tasks.after_b]\ntype = \"noop\"\ndepends_on = [\"b\"]\n";
    let alerted = run_to_alert(&store, "two", tasks, &["a", "b"]).await;
    assert_eq!(alerted.state, RunState::Failed);
    let (body, text, run_link) = (&alerted.body, alerted.text(), &alerted.run_link);
    // b comes before a in dependency order (a is one level deeper).
    assert!(text.contains("failed tasks: b, a"), "{text}");
    assert!(!text.contains("after_b"), "{text}");
    // Two failed: the alert's link is the run page, each task line carries its own.
    assert_eq!(body["link"], run_link.as_str(), "{body}");
    for task in ["a", "b"] {
        assert!(
            text.contains(&format!(
                "• {task}: exit code 1 {run_link}/tasks/{task}?map_index=-1"
            )),
            "{text}"
        );
    }
}
