//! The REST API: every endpoint's success and error cases, roles, pagination.

use axum::http::{Method, StatusCode};
use nightshift_core::state::TaskState;
use nightshift_store::{ComponentHeartbeat, ComponentKind, Store};
use serde_json::json;

use crate::common::{both_backends, fixture, get, request, send, Auth, DAG_ID};

both_backends!(
    health_is_public_and_reports_the_scheduler,
    dags_list_get_details_and_pause,
    runs_list_trigger_get_and_cancel,
    task_instances_tries_and_logs,
    clear_and_mark_task_instances,
    pools_crud_for_admins_only,
    users_admin_only,
    event_logs_import_errors_version_and_openapi,
    health_is_503_without_a_database,
    tries_of_mapped_and_unknown_task_instances,
    users_patch_passwords_and_self_protection,
    request_bodies_are_held_to_their_schemas,
    event_logs_filter_and_page,
    mark_dry_run_lists_the_downstream_it_resets,
);

async fn health_is_public_and_reports_the_scheduler(store: Store) {
    let f = fixture(store).await;
    let reply = f.get("/health", Auth::None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["metadatabase"]["status"], "healthy");
    assert_eq!(body["scheduler"]["status"], "unhealthy");
    assert!(body["scheduler"]["latest_scheduler_heartbeat"].is_null());
    assert!(reply.headers.contains_key("x-request-id"));

    f.store
        .heartbeat_component(&ComponentHeartbeat {
            id: "scheduler-1".to_owned(),
            kind: ComponentKind::Scheduler,
            hostname: "h".to_owned(),
            pid: 1,
            now: chrono::Utc::now(),
        })
        .await
        .expect("heartbeat");
    let body = f.get("/health", Auth::None).await.json();
    assert_eq!(body["scheduler"]["status"], "healthy");
    assert!(body["scheduler"]["latest_scheduler_heartbeat"].is_string());
}

async fn dags_list_get_details_and_pause(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);

    // Unauthenticated and wrong tokens.
    let detail = f
        .get("/api/v1/dags", Auth::None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("authentication required"));
    f.get("/api/v1/dags", Auth::Bearer("nope"))
        .await
        .problem(StatusCode::UNAUTHORIZED);

    let body = f.get("/api/v1/dags", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    let dag = &body["dags"][0];
    assert_eq!(dag["dag_id"], DAG_ID);
    assert_eq!(dag["is_paused"], false);
    assert_eq!(dag["schedule_interval"]["value"], "0 3 * * *");
    assert_eq!(dag["tags"][0]["name"], "nightly");
    let body = f.get("/api/v1/dags?failing=true", viewer).await.json();
    assert_eq!(
        body["total_entries"], 0,
        "the latest run is still running: {body}"
    );
    let run = f.run(&f.run_id).await;
    f.store
        .set_run_state(
            run.id,
            run.state,
            nightshift_core::state::RunState::Failed,
            chrono::Utc::now(),
        )
        .await
        .expect("fail the run");
    let body = f.get("/api/v1/dags?failing=true", viewer).await.json();
    assert_eq!(body["total_entries"], 1, "the latest run failed: {body}");
    let body = f.get("/api/v1/dags?limit=1&offset=1", viewer).await.json();
    assert_eq!(
        (
            body["total_entries"].as_i64(),
            body["dags"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
    f.get("/api/v1/dags?limit=-1", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    let body = f
        .get(&format!("/api/v1/dags/{DAG_ID}"), viewer)
        .await
        .json();
    assert_eq!(body["timezone"], "Asia/Tokyo");
    let detail = f
        .get("/api/v1/dags/missing", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(detail.contains("missing"), "{detail}");
    let body = f
        .get(&format!("/api/v1/dags/{DAG_ID}/details"), viewer)
        .await
        .json();
    assert!(body["definition"]["tasks"]["extract"].is_object());
    assert_eq!(body["import_errors"], json!([]));

    let path = format!("/api/v1/dags/{DAG_ID}");
    let detail = f
        .call(Method::PATCH, &path, viewer, &json!({"is_paused": true}))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("operator"), "{detail}");
    let reply = f
        .call(Method::PATCH, &path, operator, &json!({"is_paused": true}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["is_paused"], true);
    f.call(Method::PATCH, &path, operator, &json!({"is_paused": "yes"}))
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.call(
        Method::PATCH,
        "/api/v1/dags/missing",
        operator,
        &json!({"is_paused": true}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    let audit = f
        .get("/api/v1/eventLogs?event=dag.pause", viewer)
        .await
        .json();
    assert_eq!(audit["total_entries"], 1);
    assert_eq!(audit["event_logs"][0]["owner"], "otto");
    assert_eq!(audit["event_logs"][0]["dag_id"], DAG_ID);
}

async fn runs_list_trigger_get_and_cancel(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let runs = format!("/api/v1/dags/{DAG_ID}/dagRuns");

    let body = f.get(&runs, viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["dag_runs"][0]["dag_run_id"], f.run_id);
    assert_eq!(body["dag_runs"][0]["state"], "running");
    assert_eq!(body["dag_runs"][0]["logical_date"], "2026-01-01T18:00:00Z");
    f.get("/api/v1/dags/missing/dagRuns", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{runs}?state=bogus"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    // Trigger: roles, conf validation, duplicates.
    let trigger = json!({"dag_run_id": "manual_1", "conf": {"target": "staging"},
                         "logical_date": "2026-02-01T00:00:00Z"});
    f.call(Method::POST, &runs, viewer, &trigger)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = f.call(Method::POST, &runs, operator, &trigger).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let run = reply.json();
    assert_eq!(
        (run["dag_run_id"].as_str(), run["state"].as_str()),
        (Some("manual_1"), Some("queued"))
    );
    assert_eq!(run["conf"]["target"], "staging");
    assert_eq!(run["run_type"], "manual");
    f.call(Method::POST, &runs, operator, &trigger)
        .await
        .problem(StatusCode::CONFLICT);
    let detail = f
        .call(Method::POST, &runs, operator, &json!({"conf": [1, 2]}))
        .await
        .problem(StatusCode::BAD_REQUEST);
    assert!(detail.contains("conf"), "{detail}");
    let req = crate::common::request(
        Method::POST,
        &runs,
        operator,
        axum::body::Body::from("{\"conf\": {"),
        "application/json",
    );
    crate::common::send(&f.app, req)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.call(
        Method::POST,
        "/api/v1/dags/missing/dagRuns",
        operator,
        &json!({}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // Pagination and filters.
    let body = f.get(&format!("{runs}?limit=1"), viewer).await.json();
    assert_eq!(body["total_entries"], 2);
    assert_eq!(
        body["dag_runs"][0]["dag_run_id"], "manual_1",
        "newest first"
    );
    let body = f
        .get(&format!("{runs}?limit=1&offset=1"), viewer)
        .await
        .json();
    assert_eq!(body["dag_runs"][0]["dag_run_id"], f.run_id);
    let body = f
        .get(&format!("{runs}?state=queued,success"), viewer)
        .await
        .json();
    assert_eq!(body["total_entries"], 1);
    let body = f
        .get(
            &format!("{runs}?logical_date_lte=2026-01-15T00:00:00Z"),
            viewer,
        )
        .await
        .json();
    assert_eq!(body["total_entries"], 1);
    let body = f.get("/api/v1/dags/~/dagRuns", viewer).await.json();
    assert_eq!(body["total_entries"], 2);

    // Get and cancel.
    let one = format!("{runs}/manual_1");
    assert_eq!(
        f.get(&one, viewer).await.json()["conf"]["target"],
        "staging"
    );
    f.get(&format!("{runs}/nope"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.call(Method::PATCH, &one, operator, &json!({"state": "success"}))
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.call(Method::PATCH, &one, viewer, &json!({"state": "failed"}))
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = f
        .call(Method::PATCH, &one, operator, &json!({"state": "failed"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["state"], "failed");
    f.call(Method::PATCH, &one, operator, &json!({"state": "failed"}))
        .await
        .problem(StatusCode::CONFLICT);
}

async fn task_instances_tries_and_logs(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let base = format!("/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances", f.run_id);

    let body = f.get(&base, viewer).await.json();
    assert_eq!(
        body["total_entries"], 4,
        "extract, fanout[0..1] after expansion or fanout, load: {body}"
    );
    let body = f.get(&format!("{base}?state=failed"), viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    let ti = &body["task_instances"][0];
    assert_eq!(
        (ti["task_id"].as_str(), ti["try_number"].as_i64()),
        (Some("extract"), Some(1))
    );
    assert_eq!(ti["dag_run_id"], f.run_id.as_str());
    assert_eq!(ti["operator"], "command");
    let body = f
        .get(&format!("{base}?limit=2&offset=1"), viewer)
        .await
        .json();
    assert_eq!(body["task_instances"].as_array().map(Vec::len), Some(2));
    f.get(&format!("{base}?state=nope"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.get(
        &format!("/api/v1/dags/{DAG_ID}/dagRuns/nope/taskInstances"),
        viewer,
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    let one = f.get(&format!("{base}/extract"), viewer).await.json();
    assert_eq!(one["state"], "failed");
    assert_eq!(one["hostname"], "host-1");
    f.get(&format!("{base}/extract?map_index=7"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{base}/nope"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);

    let tries = f.get(&format!("{base}/extract/tries"), viewer).await.json();
    assert_eq!(tries["total_entries"], 1);
    let attempt = &tries["task_instances"][0];
    assert_eq!(attempt["exit_code"], 3);
    assert_eq!(attempt["error"], "command exited with code 3");
    assert_eq!(attempt["worker"], "worker-1");

    // Logs: whole, paged with the continuation token, tail, errors.
    let log = f
        .get(&format!("{base}/extract/logs/1"), viewer)
        .await
        .json();
    assert_eq!(log["lines"].as_array().map(Vec::len), Some(5));
    assert!(log["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("extract line 0\n")));
    assert_eq!(log["finished"], true);
    let first = f
        .get(&format!("{base}/extract/logs/1?limit=2"), viewer)
        .await
        .json();
    assert_eq!(first["lines"].as_array().map(Vec::len), Some(2));
    let token = first["continuation_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let rest = f
        .get(&format!("{base}/extract/logs/1?offset={token}"), viewer)
        .await
        .json();
    assert_eq!(rest["lines"][0]["line"], "extract line 2");
    assert_eq!(rest["lines"].as_array().map(Vec::len), Some(3));
    let tail = f
        .get(&format!("{base}/extract/logs/1?tail=1"), viewer)
        .await
        .json();
    assert_eq!(tail["content"], "extract line 4");
    assert_eq!(tail["lines"][0]["stream"], "stderr");
    f.get(&format!("{base}/extract/logs/2"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{base}/extract/logs/1?offset=abc"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.get(&format!("{base}/extract/logs/x"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
}

async fn clear_and_mark_task_instances(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let clear = format!("/api/v1/dags/{DAG_ID}/clearTaskInstances");
    let mark = format!("/api/v1/dags/{DAG_ID}/updateTaskInstancesState");
    let ti = format!(
        "/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances/extract",
        f.run_id
    );

    let body = json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "only_failed": true});
    f.call(Method::POST, &clear, viewer, &body)
        .await
        .problem(StatusCode::FORBIDDEN);
    // Dry run by default: lists, changes nothing.
    let reply = f.call(Method::POST, &clear, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["task_instances"][0]["task_id"], "extract");
    assert_eq!(f.get(&ti, viewer).await.json()["state"], "failed");
    f.call(
        Method::POST,
        &clear,
        operator,
        &json!({"dag_run_id": f.run_id, "task_ids": ["nope"], "dry_run": false}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    f.call(
        Method::POST,
        &clear,
        operator,
        &json!({"dag_run_id": "nope", "dry_run": false}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    f.call(
        Method::POST,
        &clear,
        operator,
        &json!({"task_ids": ["extract"]}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);

    let body = json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "dry_run": false,
                      "include_downstream": true});
    let reply = f.call(Method::POST, &clear, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(!reply.json()["task_instances"]
        .as_array()
        .expect("list")
        .is_empty());
    assert_eq!(f.get(&ti, viewer).await.json()["state"], "pending");
    // Clearing a pending instance again is an illegal transition: a 4xx, not a 500.
    let body = json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "dry_run": false});
    let reply = f.call(Method::POST, &clear, operator, &body).await;
    assert!(
        reply.status.is_success() || reply.status.is_client_error(),
        "{}",
        reply.text()
    );

    // Mark success, then again: already success is skipped (as in Airflow), not an error.
    let body = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success", "dry_run": false});
    let reply = f.call(Method::POST, &mark, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["task_instances"][0]["state"], "success");
    let reply = f.call(Method::POST, &mark, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["task_instances"], json!([]));
    let dry = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success"});
    let reply = f.call(Method::POST, &mark, operator, &dry).await;
    assert_eq!(reply.json()["task_instances"], json!([]));
    let bad = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "running", "dry_run": false});
    f.call(Method::POST, &mark, operator, &bad)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.call(Method::POST, &mark, viewer, &body)
        .await
        .problem(StatusCode::FORBIDDEN);
    let events = f.get("/api/v1/eventLogs?owner=otto", viewer).await.json();
    let names: Vec<&str> = events["event_logs"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        names.contains(&"task.clear") && names.contains(&"task.mark_success"),
        "{names:?}"
    );
}

/// The API's mark preview is the whole plan the UI confirms: marking the failed `extract`
/// success also resets its upstream_failed downstream, so both the dry run and the action
/// list those instances after the marked one.
async fn mark_dry_run_lists_the_downstream_it_resets(store: Store) {
    let f = fixture(store).await;
    let run = f.run(&f.run_id).await;
    let downstream: Vec<_> = f
        .store
        .list_task_instances(run.id)
        .await
        .expect("list")
        .into_iter()
        .filter(|ti| ti.task_id != "extract")
        .collect();
    assert!(!downstream.is_empty());
    for ti in &downstream {
        nightshift_testkit::force_state(&f.store, ti.id, TaskState::UpstreamFailed).await;
    }
    let mark = format!("/api/v1/dags/{DAG_ID}/updateTaskInstancesState");
    let listed = |reply: &crate::common::Reply| -> Vec<(String, String)> {
        let items = reply.json()["task_instances"].as_array().cloned();
        let items = items.expect("a list");
        let pair = |ti: &serde_json::Value| (ti["task_id"].to_string(), ti["state"].to_string());
        items.iter().map(pair).collect()
    };
    let operator = Auth::Bearer(&f.operator);
    let dry = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success"});
    let preview = f.call(Method::POST, &mark, operator, &dry).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text());
    let preview = listed(&preview);
    assert_eq!(preview.len(), 1 + downstream.len(), "{preview:?}");
    assert_eq!(preview[0], ("\"extract\"".into(), "\"failed\"".into()));
    assert!(preview[1..].iter().all(|(_, s)| s == "\"upstream_failed\""));

    let body = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success",
                      "dry_run": false});
    let done = f.call(Method::POST, &mark, operator, &body).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let done = listed(&done);
    let names = |l: &[(String, String)]| l.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&done),
        names(&preview),
        "the action changes what the preview listed"
    );
    assert_eq!(done[0].1, "\"success\"");
    assert!(
        done[1..].iter().all(|(_, s)| s == "\"pending\""),
        "{done:?}"
    );
    let after = f.store.list_task_instances(run.id).await.expect("list");
    for ti in after.iter().filter(|ti| ti.task_id != "extract") {
        assert_eq!(
            ti.state,
            TaskState::Pending,
            "{} {}",
            ti.task_id,
            ti.map_index
        );
    }
}

async fn pools_crud_for_admins_only(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);

    let body = f.get("/api/v1/pools", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["pools"][0]["name"], "default_pool");
    assert_eq!(body["pools"][0]["open_slots"], 128);

    let new = json!({"name": "warehouse", "slots": 4, "description": "dwh"});
    f.call(Method::POST, "/api/v1/pools", operator, &new)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = f.call(Method::POST, "/api/v1/pools", admin, &new).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["slots"], 4);
    f.call(Method::POST, "/api/v1/pools", admin, &new)
        .await
        .problem(StatusCode::CONFLICT);
    f.call(
        Method::POST,
        "/api/v1/pools",
        admin,
        &json!({"name": "x", "slots": -1}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    f.call(Method::POST, "/api/v1/pools", admin, &json!({"name": "x"}))
        .await
        .problem(StatusCode::BAD_REQUEST);

    let reply = f
        .call(
            Method::PATCH,
            "/api/v1/pools/warehouse",
            admin,
            &json!({"slots": 8}),
        )
        .await;
    assert_eq!(reply.json()["slots"], 8);
    assert_eq!(reply.json()["description"], "dwh");
    f.call(
        Method::PATCH,
        "/api/v1/pools/nope",
        admin,
        &json!({"slots": 8}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    f.call(
        Method::PATCH,
        "/api/v1/pools/warehouse",
        admin,
        &json!({"slots": -2}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    assert_eq!(
        f.get("/api/v1/pools/warehouse", viewer).await.json()["slots"],
        8
    );
    assert_eq!(
        f.get("/api/v1/pools?limit=1&offset=1", viewer).await.json()["pools"][0]["name"],
        "warehouse"
    );

    f.call(
        Method::DELETE,
        "/api/v1/pools/default_pool",
        admin,
        &json!(null),
    )
    .await
    .problem(StatusCode::CONFLICT);
    f.call(
        Method::DELETE,
        "/api/v1/pools/warehouse",
        operator,
        &json!(null),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let reply = f
        .call(
            Method::DELETE,
            "/api/v1/pools/warehouse",
            admin,
            &json!(null),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    f.get("/api/v1/pools/warehouse", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.call(
        Method::DELETE,
        "/api/v1/pools/warehouse",
        admin,
        &json!(null),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

async fn users_admin_only(store: Store) {
    let f = fixture(store).await;
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);
    f.get("/api/v1/users", operator)
        .await
        .problem(StatusCode::FORBIDDEN);
    let body = f.get("/api/v1/users", admin).await.json();
    assert_eq!(body["total_entries"], 3);
    let new = json!({"username": "nina", "password": "long enough pw", "role": "viewer"});
    f.call(Method::POST, "/api/v1/users", operator, &new)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = f.call(Method::POST, "/api/v1/users", admin, &new).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["role"], "viewer");
    f.call(Method::POST, "/api/v1/users", admin, &new)
        .await
        .problem(StatusCode::CONFLICT);
    f.call(
        Method::POST,
        "/api/v1/users",
        admin,
        &json!({"username": "x", "password": "long enough", "role": "god"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    f.call(
        Method::POST,
        "/api/v1/users",
        admin,
        &json!({"username": "x", "password": "short", "role": "viewer"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    let reply = f
        .call(
            Method::PATCH,
            "/api/v1/users/nina",
            admin,
            &json!({"role": "operator", "disabled": true}),
        )
        .await;
    assert_eq!(
        (
            reply.json()["role"].as_str(),
            reply.json()["disabled"].as_bool()
        ),
        (Some("operator"), Some(true))
    );
    f.call(
        Method::PATCH,
        "/api/v1/users/nobody",
        admin,
        &json!({"role": "viewer"}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

async fn event_logs_import_errors_version_and_openapi(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    f.store
        .replace_import_errors(
            &[(
                "dags/broken.toml".to_owned(),
                "line 3: unknown key `shedule`".to_owned(),
            )],
            chrono::Utc::now(),
        )
        .await
        .expect("import errors");
    let body = f.get("/api/v1/importErrors", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["import_errors"][0]["filename"], "dags/broken.toml");
    assert!(body["import_errors"][0]["stack_trace"]
        .as_str()
        .is_some_and(|s| s.contains("shedule")));

    let body = f.get("/api/v1/eventLogs", viewer).await.json();
    assert_eq!(body["total_entries"], 0);
    f.get("/api/v1/eventLogs?limit=x", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    let body = f.get("/api/v1/version", viewer).await.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let doc = f.get("/api/v1/openapi.json", viewer).await.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/dags",
        "/api/v1/dags/{dag_id}/dagRuns",
        "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
        "/api/v1/dags/{dag_id}/clearTaskInstances",
        "/api/v1/pools/{pool_name}",
        "/health",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    f.get("/api/v1/openapi.json", Auth::None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    f.get("/api/v1/no/such/thing", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
}

async fn health_is_503_without_a_database(store: Store) {
    let f = fixture(store).await;
    f.store.close().await;
    let reply = f.get("/health", Auth::None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = reply.json();
    assert_eq!(body["metadatabase"]["status"], "unhealthy");
    assert_eq!(body["scheduler"]["status"], "unhealthy");
    // Anything else needs the database to check credentials: a plain 500, no details.
    let detail = f
        .get("/api/v1/dags", Auth::Bearer(&f.viewer))
        .await
        .problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(detail.contains("x-request-id"), "{detail}");
    assert!(!detail.to_lowercase().contains("pool"), "{detail}");
}

async fn tries_of_mapped_and_unknown_task_instances(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let base = format!("/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances", f.run_id);
    let ti = f.get(&format!("{base}/load/tries"), viewer).await.json();
    assert_eq!(
        (
            ti["total_entries"].as_i64(),
            ti["task_instances"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0)),
        "a task that has not run has no tries"
    );
    f.get(&format!("{base}/nope/tries"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{base}/extract/tries?map_index=0"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{base}/extract/tries?map_index=x"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.get(
        &format!("/api/v1/dags/{DAG_ID}/dagRuns/nope/taskInstances/extract/tries"),
        viewer,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    f.get(
        &format!(
            "/api/v1/dags/missing/dagRuns/{}/taskInstances/extract/tries",
            f.run_id
        ),
        viewer,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // Log paging past the end: no lines, the same token back.
    let log = f
        .get(&format!("{base}/extract/logs/1?offset=999999"), viewer)
        .await
        .json();
    assert_eq!(log["lines"], json!([]));
    assert_eq!(log["continuation_token"], "999999");
    let log = f
        .get(&format!("{base}/extract/logs/1?tail=2&offset=abc"), viewer)
        .await
        .json();
    assert_eq!(
        log["content"], "extract line 3\nextract line 4",
        "tail ignores offset"
    );
    f.get(&format!("{base}/extract/logs/0"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    f.get(&format!("{base}/extract/logs/1?limit=-1"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
}

async fn users_patch_passwords_and_self_protection(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);

    f.call(
        Method::PATCH,
        "/api/v1/users/vera",
        operator,
        &json!({"role": "admin"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    f.get("/api/v1/users", viewer)
        .await
        .problem(StatusCode::FORBIDDEN);

    let reply = f
        .call(
            Method::PATCH,
            "/api/v1/users/vera",
            admin,
            &json!({"password": "a brand new one", "keep_tokens": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["role"], "viewer", "only the password changed");
    let vera = f.user("vera").await;
    assert!(nightshift_web::verify_password(
        &vera.password_hash,
        "a brand new one"
    ));

    for (body, status, needle) in [
        (
            json!({"password": "short"}),
            StatusCode::BAD_REQUEST,
            "at least 8",
        ),
        (
            json!({"password": "éééé"}),
            StatusCode::BAD_REQUEST,
            "has 4",
        ),
        (json!({"role": "root"}), StatusCode::BAD_REQUEST, "root"),
        (
            json!({"disabled": "yes"}),
            StatusCode::BAD_REQUEST,
            "disabled",
        ),
        (
            json!({"nickname": "v"}),
            StatusCode::BAD_REQUEST,
            "nickname",
        ),
    ] {
        let detail = f
            .call(Method::PATCH, "/api/v1/users/vera", admin, &body)
            .await
            .problem(status);
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    // A bad field changes nothing, even next to a good one.
    f.call(
        Method::PATCH,
        "/api/v1/users/vera",
        admin,
        &json!({"role": "admin", "password": "short"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    let vera = f.user("vera").await;
    assert_eq!(vera.role.as_str(), "viewer");

    for body in [json!({"role": "operator"}), json!({"disabled": true})] {
        let detail = f
            .call(Method::PATCH, "/api/v1/users/ada", admin, &body)
            .await
            .problem(StatusCode::CONFLICT);
        assert!(detail.contains("another admin"), "{detail}");
    }
    let reply = f
        .call(
            Method::PATCH,
            "/api/v1/users/ada",
            admin,
            &json!({"role": "admin", "disabled": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "staying an admin is fine");

    // A disabled user's token stops working at once, and (kept) works again when enabled.
    f.call(
        Method::PATCH,
        "/api/v1/users/vera",
        admin,
        &json!({"disabled": true, "keep_tokens": true}),
    )
    .await
    .json();
    f.get("/api/v1/version", viewer)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    f.call(
        Method::PATCH,
        "/api/v1/users/vera",
        admin,
        &json!({"disabled": false}),
    )
    .await
    .json();
    assert_eq!(
        f.get("/api/v1/version", viewer).await.status,
        StatusCode::OK
    );

    // New users follow the same name rules as the command line.
    for (name, needle) in [
        ("", "1 to 64 characters"),
        ("two words", "no spaces"),
        ("bell\u{7}", "control"),
        // Look-alikes of `admin` (a zero-width space, a Cyrillic `а`) and other scripts.
        ("admin\u{200b}", "only ASCII letters"),
        ("\u{430}dmin", "only ASCII letters"),
        ("名前", "only ASCII letters"),
    ] {
        let body = json!({"username": name, "password": "long enough pw", "role": "viewer"});
        let detail = f
            .call(Method::POST, "/api/v1/users", admin, &body)
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(needle), "{name:?}: {detail}");
    }
    let body =
        json!({"username": "on-call.bot@example", "password": "ééééééééé", "role": "operator"});
    let reply = f.call(Method::POST, "/api/v1/users", admin, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let events = f
        .get("/api/v1/eventLogs?event=user.update", viewer)
        .await
        .json();
    assert_eq!(events["total_entries"], 4, "{events}");
    assert!(
        !events.to_string().contains("brand new"),
        "no passwords in the audit log"
    );
}

async fn request_bodies_are_held_to_their_schemas(store: Store) {
    let f = fixture(store).await;
    let admin = Auth::Bearer(&f.admin);
    let operator = Auth::Bearer(&f.operator);
    let raw = |method: Method, path: &str, body: &str, content_type: &str| {
        let req = request(
            method,
            path,
            admin,
            axum::body::Body::from(body.to_owned()),
            content_type,
        );
        send(&f.app, req)
    };

    // Integral floats are integers (JSON Schema says so); other floats are not.
    let reply = f
        .call(
            Method::POST,
            "/api/v1/pools",
            admin,
            &json!({"name": "floaty", "slots": 5.0}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["slots"], 5);
    let reply = f
        .call(
            Method::PATCH,
            "/api/v1/pools/floaty",
            admin,
            &json!({"slots": 7.0, "description": null}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["slots"], 7);
    for slots in [json!(5.5), json!(1e10), json!(-1), json!("5"), json!(true)] {
        f.call(
            Method::PATCH,
            "/api/v1/pools/floaty",
            admin,
            &json!({ "slots": slots }),
        )
        .await
        .problem(StatusCode::BAD_REQUEST);
    }
    let mark = format!("/api/v1/dags/{DAG_ID}/updateTaskInstancesState");
    let body = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success",
                      "map_index": -1.0});
    let reply = f.call(Method::POST, &mark, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // Only a JSON object is a body: not an array of the fields, not a scalar.
    for body in [r#"[3, "desc"]"#, "[]", "5", "null", r#""slots""#] {
        let detail = raw(
            Method::PATCH,
            "/api/v1/pools/floaty",
            body,
            "application/json",
        )
        .await
        .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains("a JSON object"), "{body}: {detail}");
    }
    let detail = raw(
        Method::PATCH,
        "/api/v1/pools/floaty",
        r#"{"slots": 1}"#,
        "text/plain",
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    assert!(detail.contains("application/json"), "{detail}");

    // Unknown fields are refused (the document says additionalProperties: false), as are
    // missing required ones.
    for (method, path, body, needle) in [
        (
            Method::PATCH,
            "/api/v1/pools/floaty",
            json!({"slot": 2}),
            "slot",
        ),
        (
            Method::POST,
            "/api/v1/pools",
            json!({"name": "a", "slots": 1, "extra": 1}),
            "extra",
        ),
        (Method::POST, "/api/v1/pools", json!({"slots": 1}), "name"),
        (
            Method::PATCH,
            &format!("/api/v1/dags/{DAG_ID}"),
            json!({"is_paused": true, "paused": true}),
            "paused",
        ),
        (
            Method::POST,
            &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
            json!({"run_id": "x"}),
            "run_id",
        ),
        (
            Method::POST,
            &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
            json!({"dag_run_id": "has space"}),
            "has space",
        ),
        (
            Method::POST,
            &format!("/api/v1/dags/{DAG_ID}/dagRuns"),
            json!({"dag_run_id": ""}),
            "not be empty",
        ),
        (
            Method::POST,
            &format!("/api/v1/dags/{DAG_ID}/clearTaskInstances"),
            json!({"dag_run_id": f.run_id, "include_downstreams": true}),
            "include_downstreams",
        ),
        (
            Method::POST,
            "/api/v1/pools",
            json!({"name": "white space", "slots": 1}),
            "no spaces",
        ),
    ] {
        let detail = f
            .call(method.clone(), path, admin, &body)
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(needle), "{method} {path} {body}: {detail}");
    }

    // The document says the same.
    let doc = nightshift_web::openapi();
    let doc = serde_json::to_value(&doc).expect("document as JSON");
    for schema in [
        "NewPool",
        "PoolPatch",
        "DagPatch",
        "TriggerDagRun",
        "UpdateDagRunState",
        "ClearTaskInstances",
        "UpdateTaskInstancesState",
        "NewUserBody",
        "UserPatch",
    ] {
        let schema = &doc["components"]["schemas"][schema];
        assert_eq!(schema["type"], "object", "{schema}");
        assert_eq!(schema["additionalProperties"], false, "{schema}");
    }
    let new_pool = &doc["components"]["schemas"]["NewPool"];
    assert_eq!(new_pool["properties"]["slots"]["type"], "integer");
    assert_eq!(new_pool["properties"]["slots"]["minimum"], 0);
    assert_eq!(new_pool["required"], json!(["name", "slots"]));
}

async fn event_logs_filter_and_page(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);
    for paused in [true, false, true] {
        f.call(
            Method::PATCH,
            &format!("/api/v1/dags/{DAG_ID}"),
            operator,
            &json!({ "is_paused": paused }),
        )
        .await
        .json();
    }
    f.call(
        Method::POST,
        "/api/v1/pools",
        admin,
        &json!({"name": "dwh", "slots": 2}),
    )
    .await
    .json();

    let all = f.get("/api/v1/eventLogs", viewer).await.json();
    assert_eq!(all["total_entries"], 4);
    let events: Vec<&str> = all["event_logs"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        events,
        ["pool.create", "dag.pause", "dag.unpause", "dag.pause"],
        "newest first"
    );
    let newest = &all["event_logs"][0];
    assert_eq!(newest["owner"], "ada");
    assert!(newest["dag_id"].is_null());
    assert_eq!(newest["extra"]["pool"], "dwh");
    assert!(newest["when"].is_string());

    let check = |query: &'static str, total: i64, shown: usize| {
        let app = f.app.clone();
        async move {
            let body = get(&app, &format!("/api/v1/eventLogs?{query}"), viewer)
                .await
                .json();
            assert_eq!(body["total_entries"], total, "{query}: {body}");
            assert_eq!(
                body["event_logs"].as_array().map(Vec::len),
                Some(shown),
                "{query}: {body}"
            );
        }
    };
    check("dag_id=nightly", 3, 3).await;
    check("dag_id=other", 0, 0).await;
    check("owner=otto", 3, 3).await;
    check("owner=otto&event=dag.unpause", 1, 1).await;
    check("event=pool.create&dag_id=nightly", 0, 0).await;
    check("limit=2", 4, 2).await;
    check("limit=2&offset=3", 4, 1).await;
    check("offset=10", 4, 0).await;
    f.get("/api/v1/eventLogs?offset=-1", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.get("/api/v1/eventLogs", Auth::None)
        .await
        .problem(StatusCode::UNAUTHORIZED);

    // Import errors page the same way.
    f.store
        .replace_import_errors(
            &[
                ("dags/a.toml".to_owned(), "bad".to_owned()),
                ("dags/b.toml".to_owned(), "worse".to_owned()),
            ],
            chrono::Utc::now(),
        )
        .await
        .expect("import errors");
    let body = f
        .get("/api/v1/importErrors?limit=1&offset=1", viewer)
        .await
        .json();
    assert_eq!(body["total_entries"], 2);
    assert_eq!(body["import_errors"].as_array().map(Vec::len), Some(1));
    f.get("/api/v1/importErrors?limit=2147483648", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
}
