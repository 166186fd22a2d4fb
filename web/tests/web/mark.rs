//! Marking task instances through the API: the dry run lists exactly what the action
//! then changes, and instances already in the target state are skipped, not a conflict.

use axum::http::{Method, StatusCode};
use nightshift_store::Store;
use serde_json::{json, Value};

use crate::common::{both_backends, fixture, Auth, DAG_ID};

both_backends!(dry_run_and_action_agree_when_some_are_already_marked);

/// `(task_id, map_index, state)` of each instance in a reply.
fn listed(reply: &Value) -> Vec<(String, i64, String)> {
    reply["task_instances"]
        .as_array()
        .expect("a list of task instances")
        .iter()
        .map(|ti| {
            (
                ti["task_id"].as_str().expect("task_id").to_owned(),
                ti["map_index"].as_i64().expect("map_index"),
                ti["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

async fn dry_run_and_action_agree_when_some_are_already_marked(store: Store) {
    let f = fixture(store).await;
    let operator = Auth::Bearer(&f.operator);
    let mark = format!("/api/v1/dags/{DAG_ID}/updateTaskInstancesState");
    let instances = format!("/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances", f.run_id);

    // fanout[0] is failed already; fanout[1] is still pending.
    let one = json!({"dag_run_id": f.run_id, "task_id": "fanout", "map_index": 0,
                     "new_state": "failed", "dry_run": false});
    let reply = f.call(Method::POST, &mark, operator, &one).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let before = f.get(&instances, operator).await.json();

    let all = |dry_run: bool| {
        json!({"dag_run_id": f.run_id, "task_id": "fanout", "new_state": "failed",
               "dry_run": dry_run})
    };
    let reply = f.call(Method::POST, &mark, operator, &all(true)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let preview = listed(&reply.json());
    assert_eq!(
        preview,
        [("fanout".to_owned(), 1, "pending".to_owned())],
        "the dry run skips the instance already failed"
    );
    assert_eq!(
        f.get(&instances, operator).await.json(),
        before,
        "a dry run changes nothing"
    );

    let reply = f.call(Method::POST, &mark, operator, &all(false)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "an instance already failed is skipped, not a conflict: {}",
        reply.text()
    );
    let marked = listed(&reply.json());
    let changed: Vec<(String, i64)> = marked.iter().map(|m| (m.0.clone(), m.1)).collect();
    let previewed: Vec<(String, i64)> = preview.iter().map(|p| (p.0.clone(), p.1)).collect();
    assert_eq!(
        changed, previewed,
        "the action changes what the dry run listed"
    );
    assert!(marked.iter().all(|m| m.2 == "failed"), "{marked:?}");

    // All failed now: the dry run and the action both list nothing.
    for dry_run in [true, false] {
        let reply = f.call(Method::POST, &mark, operator, &all(dry_run)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            reply.json()["task_instances"],
            json!([]),
            "dry_run {dry_run}"
        );
    }
}
