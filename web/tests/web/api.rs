//! The REST API: every endpoint's success and error cases, roles, pagination.

use axum::http::{Method, StatusCode};
use nightshift_store::{ComponentHeartbeat, ComponentKind, Store};
use serde_json::json;

use crate::common::{both_backends, call, fixture, get, Auth, DAG_ID};

both_backends!(
    health_is_public_and_reports_the_scheduler,
    dags_list_get_details_and_pause,
    runs_list_trigger_get_and_cancel,
    task_instances_tries_and_logs,
    clear_and_mark_task_instances,
    pools_crud_for_admins_only,
    users_admin_only,
    event_logs_import_errors_version_and_openapi,
);

async fn health_is_public_and_reports_the_scheduler(store: Store) {
    let f = fixture(store).await;
    let reply = get(&f.app, "/health", Auth::None).await;
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
    let body = get(&f.app, "/health", Auth::None).await.json();
    assert_eq!(body["scheduler"]["status"], "healthy");
    assert!(body["scheduler"]["latest_scheduler_heartbeat"].is_string());
}

async fn dags_list_get_details_and_pause(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);

    // Unauthenticated and wrong tokens.
    let detail = get(&f.app, "/api/v1/dags", Auth::None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("authentication required"));
    get(&f.app, "/api/v1/dags", Auth::Bearer("nope"))
        .await
        .problem(StatusCode::UNAUTHORIZED);

    let body = get(&f.app, "/api/v1/dags", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    let dag = &body["dags"][0];
    assert_eq!(dag["dag_id"], DAG_ID);
    assert_eq!(dag["is_paused"], false);
    assert_eq!(dag["schedule_interval"]["value"], "0 3 * * *");
    assert_eq!(dag["tags"][0]["name"], "nightly");
    let body = get(&f.app, "/api/v1/dags?failing=true", viewer)
        .await
        .json();
    assert_eq!(
        body["total_entries"], 0,
        "the latest run is still running: {body}"
    );
    let run = f
        .store
        .get_run_by_run_id(DAG_ID, &f.run_id)
        .await
        .expect("get")
        .expect("run");
    f.store
        .set_run_state(
            run.id,
            run.state,
            nightshift_core::state::RunState::Failed,
            chrono::Utc::now(),
        )
        .await
        .expect("fail the run");
    let body = get(&f.app, "/api/v1/dags?failing=true", viewer)
        .await
        .json();
    assert_eq!(body["total_entries"], 1, "the latest run failed: {body}");
    let body = get(&f.app, "/api/v1/dags?limit=1&offset=1", viewer)
        .await
        .json();
    assert_eq!(
        (
            body["total_entries"].as_i64(),
            body["dags"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
    get(&f.app, "/api/v1/dags?limit=-1", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    let body = get(&f.app, &format!("/api/v1/dags/{DAG_ID}"), viewer)
        .await
        .json();
    assert_eq!(body["timezone"], "Asia/Tokyo");
    let detail = get(&f.app, "/api/v1/dags/missing", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(detail.contains("missing"), "{detail}");
    let body = get(&f.app, &format!("/api/v1/dags/{DAG_ID}/details"), viewer)
        .await
        .json();
    assert!(body["definition"]["tasks"]["extract"].is_object());
    assert_eq!(body["import_errors"], json!([]));

    let path = format!("/api/v1/dags/{DAG_ID}");
    let detail = call(
        &f.app,
        Method::PATCH,
        &path,
        viewer,
        &json!({"is_paused": true}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("operator"), "{detail}");
    let reply = call(
        &f.app,
        Method::PATCH,
        &path,
        operator,
        &json!({"is_paused": true}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["is_paused"], true);
    call(
        &f.app,
        Method::PATCH,
        &path,
        operator,
        &json!({"is_paused": "yes"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    call(
        &f.app,
        Method::PATCH,
        "/api/v1/dags/missing",
        operator,
        &json!({"is_paused": true}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    let audit = get(&f.app, "/api/v1/eventLogs?event=dag.pause", viewer)
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

    let body = get(&f.app, &runs, viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["dag_runs"][0]["dag_run_id"], f.run_id);
    assert_eq!(body["dag_runs"][0]["state"], "running");
    assert_eq!(body["dag_runs"][0]["logical_date"], "2026-01-01T18:00:00Z");
    get(&f.app, "/api/v1/dags/missing/dagRuns", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    get(&f.app, &format!("{runs}?state=bogus"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    // Trigger: roles, conf validation, duplicates.
    let trigger = json!({"dag_run_id": "manual_1", "conf": {"target": "staging"},
                         "logical_date": "2026-02-01T00:00:00Z"});
    call(&f.app, Method::POST, &runs, viewer, &trigger)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = call(&f.app, Method::POST, &runs, operator, &trigger).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let run = reply.json();
    assert_eq!(
        (run["dag_run_id"].as_str(), run["state"].as_str()),
        (Some("manual_1"), Some("queued"))
    );
    assert_eq!(run["conf"]["target"], "staging");
    assert_eq!(run["run_type"], "manual");
    call(&f.app, Method::POST, &runs, operator, &trigger)
        .await
        .problem(StatusCode::CONFLICT);
    let detail = call(
        &f.app,
        Method::POST,
        &runs,
        operator,
        &json!({"conf": [1, 2]}),
    )
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
    call(
        &f.app,
        Method::POST,
        "/api/v1/dags/missing/dagRuns",
        operator,
        &json!({}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // Pagination and filters.
    let body = get(&f.app, &format!("{runs}?limit=1"), viewer).await.json();
    assert_eq!(body["total_entries"], 2);
    assert_eq!(
        body["dag_runs"][0]["dag_run_id"], "manual_1",
        "newest first"
    );
    let body = get(&f.app, &format!("{runs}?limit=1&offset=1"), viewer)
        .await
        .json();
    assert_eq!(body["dag_runs"][0]["dag_run_id"], f.run_id);
    let body = get(&f.app, &format!("{runs}?state=queued,success"), viewer)
        .await
        .json();
    assert_eq!(body["total_entries"], 1);
    let body = get(
        &f.app,
        &format!("{runs}?logical_date_lte=2026-01-15T00:00:00Z"),
        viewer,
    )
    .await
    .json();
    assert_eq!(body["total_entries"], 1);
    let body = get(&f.app, "/api/v1/dags/~/dagRuns", viewer).await.json();
    assert_eq!(body["total_entries"], 2);

    // Get and cancel.
    let one = format!("{runs}/manual_1");
    assert_eq!(
        get(&f.app, &one, viewer).await.json()["conf"]["target"],
        "staging"
    );
    get(&f.app, &format!("{runs}/nope"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    call(
        &f.app,
        Method::PATCH,
        &one,
        operator,
        &json!({"state": "success"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    call(
        &f.app,
        Method::PATCH,
        &one,
        viewer,
        &json!({"state": "failed"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let reply = call(
        &f.app,
        Method::PATCH,
        &one,
        operator,
        &json!({"state": "failed"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["state"], "failed");
    call(
        &f.app,
        Method::PATCH,
        &one,
        operator,
        &json!({"state": "failed"}),
    )
    .await
    .problem(StatusCode::CONFLICT);
}

async fn task_instances_tries_and_logs(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let base = format!("/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances", f.run_id);

    let body = get(&f.app, &base, viewer).await.json();
    assert_eq!(
        body["total_entries"], 4,
        "extract, fanout[0..1] after expansion or fanout, load: {body}"
    );
    let body = get(&f.app, &format!("{base}?state=failed"), viewer)
        .await
        .json();
    assert_eq!(body["total_entries"], 1);
    let ti = &body["task_instances"][0];
    assert_eq!(
        (ti["task_id"].as_str(), ti["try_number"].as_i64()),
        (Some("extract"), Some(1))
    );
    assert_eq!(ti["dag_run_id"], f.run_id.as_str());
    assert_eq!(ti["operator"], "command");
    let body = get(&f.app, &format!("{base}?limit=2&offset=1"), viewer)
        .await
        .json();
    assert_eq!(body["task_instances"].as_array().map(Vec::len), Some(2));
    get(&f.app, &format!("{base}?state=nope"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    get(
        &f.app,
        &format!("/api/v1/dags/{DAG_ID}/dagRuns/nope/taskInstances"),
        viewer,
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    let one = get(&f.app, &format!("{base}/extract"), viewer).await.json();
    assert_eq!(one["state"], "failed");
    assert_eq!(one["hostname"], "host-1");
    get(&f.app, &format!("{base}/extract?map_index=7"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    get(&f.app, &format!("{base}/nope"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);

    let tries = get(&f.app, &format!("{base}/extract/tries"), viewer)
        .await
        .json();
    assert_eq!(tries["total_entries"], 1);
    let attempt = &tries["task_instances"][0];
    assert_eq!(attempt["exit_code"], 3);
    assert_eq!(attempt["error"], "command exited with code 3");
    assert_eq!(attempt["worker"], "worker-1");

    // Logs: whole, paged with the continuation token, tail, errors.
    let log = get(&f.app, &format!("{base}/extract/logs/1"), viewer)
        .await
        .json();
    assert_eq!(log["lines"].as_array().map(Vec::len), Some(5));
    assert!(log["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("extract line 0\n")));
    assert_eq!(log["finished"], true);
    let first = get(&f.app, &format!("{base}/extract/logs/1?limit=2"), viewer)
        .await
        .json();
    assert_eq!(first["lines"].as_array().map(Vec::len), Some(2));
    let token = first["continuation_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let rest = get(
        &f.app,
        &format!("{base}/extract/logs/1?offset={token}"),
        viewer,
    )
    .await
    .json();
    assert_eq!(rest["lines"][0]["line"], "extract line 2");
    assert_eq!(rest["lines"].as_array().map(Vec::len), Some(3));
    let tail = get(&f.app, &format!("{base}/extract/logs/1?tail=1"), viewer)
        .await
        .json();
    assert_eq!(tail["content"], "extract line 4");
    assert_eq!(tail["lines"][0]["stream"], "stderr");
    get(&f.app, &format!("{base}/extract/logs/2"), viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    get(&f.app, &format!("{base}/extract/logs/1?offset=abc"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    get(&f.app, &format!("{base}/extract/logs/x"), viewer)
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
    call(&f.app, Method::POST, &clear, viewer, &body)
        .await
        .problem(StatusCode::FORBIDDEN);
    // Dry run by default: lists, changes nothing.
    let reply = call(&f.app, Method::POST, &clear, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["task_instances"][0]["task_id"], "extract");
    assert_eq!(get(&f.app, &ti, viewer).await.json()["state"], "failed");
    call(
        &f.app,
        Method::POST,
        &clear,
        operator,
        &json!({"dag_run_id": f.run_id, "task_ids": ["nope"], "dry_run": false}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    call(
        &f.app,
        Method::POST,
        &clear,
        operator,
        &json!({"dag_run_id": "nope", "dry_run": false}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    call(
        &f.app,
        Method::POST,
        &clear,
        operator,
        &json!({"task_ids": ["extract"]}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);

    let body = json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "dry_run": false,
                      "include_downstream": true});
    let reply = call(&f.app, Method::POST, &clear, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(!reply.json()["task_instances"]
        .as_array()
        .expect("list")
        .is_empty());
    assert_eq!(get(&f.app, &ti, viewer).await.json()["state"], "pending");
    // Clearing a pending instance again is an illegal transition: a 4xx, not a 500.
    let body = json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "dry_run": false});
    let reply = call(&f.app, Method::POST, &clear, operator, &body).await;
    assert!(
        reply.status.is_success() || reply.status.is_client_error(),
        "{}",
        reply.text()
    );

    // Mark success, then again: illegal (already success) is a 409.
    let body = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success", "dry_run": false});
    let reply = call(&f.app, Method::POST, &mark, operator, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["task_instances"][0]["state"], "success");
    call(&f.app, Method::POST, &mark, operator, &body)
        .await
        .problem(StatusCode::CONFLICT);
    let dry = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "success"});
    let reply = call(&f.app, Method::POST, &mark, operator, &dry).await;
    assert_eq!(reply.json()["task_instances"], json!([]));
    let bad = json!({"dag_run_id": f.run_id, "task_id": "extract", "new_state": "running", "dry_run": false});
    call(&f.app, Method::POST, &mark, operator, &bad)
        .await
        .problem(StatusCode::BAD_REQUEST);
    call(&f.app, Method::POST, &mark, viewer, &body)
        .await
        .problem(StatusCode::FORBIDDEN);
    let events = get(&f.app, "/api/v1/eventLogs?owner=otto", viewer)
        .await
        .json();
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

async fn pools_crud_for_admins_only(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);

    let body = get(&f.app, "/api/v1/pools", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["pools"][0]["name"], "default_pool");
    assert_eq!(body["pools"][0]["open_slots"], 128);

    let new = json!({"name": "warehouse", "slots": 4, "description": "dwh"});
    call(&f.app, Method::POST, "/api/v1/pools", operator, &new)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = call(&f.app, Method::POST, "/api/v1/pools", admin, &new).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["slots"], 4);
    call(&f.app, Method::POST, "/api/v1/pools", admin, &new)
        .await
        .problem(StatusCode::CONFLICT);
    call(
        &f.app,
        Method::POST,
        "/api/v1/pools",
        admin,
        &json!({"name": "x", "slots": -1}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    call(
        &f.app,
        Method::POST,
        "/api/v1/pools",
        admin,
        &json!({"name": "x"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);

    let reply = call(
        &f.app,
        Method::PATCH,
        "/api/v1/pools/warehouse",
        admin,
        &json!({"slots": 8}),
    )
    .await;
    assert_eq!(reply.json()["slots"], 8);
    assert_eq!(reply.json()["description"], "dwh");
    call(
        &f.app,
        Method::PATCH,
        "/api/v1/pools/nope",
        admin,
        &json!({"slots": 8}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    call(
        &f.app,
        Method::PATCH,
        "/api/v1/pools/warehouse",
        admin,
        &json!({"slots": -2}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&f.app, "/api/v1/pools/warehouse", viewer).await.json()["slots"],
        8
    );
    assert_eq!(
        get(&f.app, "/api/v1/pools?limit=1&offset=1", viewer)
            .await
            .json()["pools"][0]["name"],
        "warehouse"
    );

    call(
        &f.app,
        Method::DELETE,
        "/api/v1/pools/default_pool",
        admin,
        &json!(null),
    )
    .await
    .problem(StatusCode::CONFLICT);
    call(
        &f.app,
        Method::DELETE,
        "/api/v1/pools/warehouse",
        operator,
        &json!(null),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let reply = call(
        &f.app,
        Method::DELETE,
        "/api/v1/pools/warehouse",
        admin,
        &json!(null),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    get(&f.app, "/api/v1/pools/warehouse", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    call(
        &f.app,
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
    get(&f.app, "/api/v1/users", operator)
        .await
        .problem(StatusCode::FORBIDDEN);
    let body = get(&f.app, "/api/v1/users", admin).await.json();
    assert_eq!(body["total_entries"], 3);
    let new = json!({"username": "nina", "password": "long enough pw", "role": "viewer"});
    call(&f.app, Method::POST, "/api/v1/users", operator, &new)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = call(&f.app, Method::POST, "/api/v1/users", admin, &new).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["role"], "viewer");
    call(&f.app, Method::POST, "/api/v1/users", admin, &new)
        .await
        .problem(StatusCode::CONFLICT);
    call(
        &f.app,
        Method::POST,
        "/api/v1/users",
        admin,
        &json!({"username": "x", "password": "long enough", "role": "god"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    call(
        &f.app,
        Method::POST,
        "/api/v1/users",
        admin,
        &json!({"username": "x", "password": "short", "role": "viewer"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    let reply = call(
        &f.app,
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
    call(
        &f.app,
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
    let body = get(&f.app, "/api/v1/importErrors", viewer).await.json();
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["import_errors"][0]["filename"], "dags/broken.toml");
    assert!(body["import_errors"][0]["stack_trace"]
        .as_str()
        .is_some_and(|s| s.contains("shedule")));

    let body = get(&f.app, "/api/v1/eventLogs", viewer).await.json();
    assert_eq!(body["total_entries"], 0);
    get(&f.app, "/api/v1/eventLogs?limit=x", viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    let body = get(&f.app, "/api/v1/version", viewer).await.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let doc = get(&f.app, "/api/v1/openapi.json", viewer).await.json();
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
    get(&f.app, "/api/v1/openapi.json", Auth::None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    get(&f.app, "/api/v1/no/such/thing", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
}
