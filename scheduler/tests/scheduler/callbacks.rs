//! Callbacks end to end: a failing run enqueues its DAG's on_failure and a task's
//! on_failure, and the scheduler delivers them to a local HTTP server (an HTTP callback
//! and a Slack-style webhook whose URL comes from a template over `env`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use nightshift_core::state::RunState;
use nightshift_scheduler::Scheduler;
use nightshift_store::{CallbackEvent, CallbackKind, CallbackState, Store, TaskInstance};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::{add_dag, both_backends, config, drive, t, trigger, Outcome};

both_backends!(failed_run_sends_its_callbacks);

/// A local server: every POST to `/{name}` is forwarded as `(name, body)`.
async fn hook_server() -> (String, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/{name}",
            post(
                |State(tx): State<mpsc::UnboundedSender<(String, Value)>>,
                 Path(name): Path<String>,
                 Json(body): Json<Value>| async move {
                    let _ = tx.send((name, body));
                    "ok"
                },
            ),
        )
        .with_state(tx);
    (nightshift_testkit::serve(app).await, rx)
}

async fn failed_run_sends_its_callbacks(store: Store) {
    let (base, mut received) = hook_server().await;
    let toml = format!(
        "id = \"cb\"\non_failure = {{ url = \"{base}/run\" }}\n\
         [tasks.boom]\ntype = \"noop\"\non_failure = {{ slack_webhook = \"{{{{ env.HOOK }}}}\" }}\n"
    );
    let dag = add_dag(&store, "cb", &toml, false).await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let mut cfg = config("s1");
    cfg.base_url = "http://ui.test:8080".into();
    cfg.template_env
        .insert("HOOK".into(), format!("{base}/slack"));
    let s = Scheduler::new(store.clone(), cfg);
    let fail = |_: &TaskInstance| Outcome::Fail;
    // The worker enqueues the task's callback when it fails the try, as the real one does.
    let (state, _) = drive(&store, &s, &run, t("2026-01-01T00:00:01Z"), &fail).await;
    assert_eq!(state, RunState::Failed);
    let run_cb = store.list_callbacks(Some("cb"), 10).await.expect("list");
    assert_eq!(run_cb.len(), 1, "{run_cb:?}");
    assert_eq!(
        (run_cb[0].kind, run_cb[0].event),
        (CallbackKind::DagRun, CallbackEvent::Failure)
    );
    // A task callback, as the worker writes it on a final failure.
    store
        .enqueue_callback(&nightshift_store::NewCallback {
            kind: CallbackKind::Task,
            event: CallbackEvent::Failure,
            dag_id: "cb".into(),
            run_id: run.run_id.clone(),
            task_id: Some("boom".into()),
            map_index: -1,
            try_number: 1,
            callback: dag.tasks["boom"].on_failure.clone().expect("task callback"),
            payload: serde_json::json!({"state": "failed", "error": "exit code 1"}),
            now: t("2026-01-01T00:01:00Z"),
        })
        .await
        .expect("enqueue");
    // A tick's background sender delivers both (a tick while the previous sender is
    // still busy leaves the new request to a later tick, so keep ticking).
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..40 {
        if got.len() == 2 {
            break;
        }
        s.tick(t("2026-01-01T00:01:00Z")).await.expect("tick");
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(500), received.recv()).await
        {
            let (name, body) = message.expect("server alive");
            got.insert(name, body);
        }
    }
    assert_eq!(got.len(), 2, "callbacks delivered: {got:?}");
    let run_link = format!(
        "http://ui.test:8080/dags/cb/runs/{}",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );
    let run_body = &got["run"];
    let text = run_body["text"].as_str().expect("text");
    assert!(text.contains("failed tasks: boom"), "{text}");
    assert!(text.contains(&run_link), "{text}");
    assert_eq!(run_body["dag_id"], "cb");
    assert_eq!(run_body["state"], "failed");
    let slack = got["slack"]["text"].as_str().expect("slack text");
    assert!(slack.contains("task boom"), "{slack}");
    assert!(slack.contains("exit code 1"), "{slack}");
    assert!(
        slack.contains(&format!("{run_link}/tasks/boom?map_index=-1")),
        "{slack}"
    );
    // Both are recorded as sent.
    for _ in 0..100 {
        let all = store.list_callbacks(Some("cb"), 10).await.expect("list");
        if all.iter().all(|c| c.state == CallbackState::Sent) {
            assert!(all.iter().all(|c| c.attempts == 1 && c.sent_at.is_some()));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("callbacks not marked sent");
}
