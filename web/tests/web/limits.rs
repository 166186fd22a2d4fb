//! What one request may put into a run or a name: run ids `.`/`..` and pool names
//! `.`/`..` (pages a URL path cannot reach), run ids past the length limit and confs past
//! the size limit are refused with a 400 that says why; the DAG search takes `_`, `%` and
//! `\` literally in the API and the UI.

use axum::http::{Method, StatusCode};
use chrono::Utc;
use nightshift_store::{DagUpsert, Store};
use serde_json::json;

use crate::common::{both_backends, call, fixture, Auth, DAG_ID};

both_backends!(
    run_ids_confs_and_pool_names_are_bounded,
    dag_search_matches_wildcards_literally,
);

async fn run_ids_confs_and_pool_names_are_bounded(store: Store) {
    let f = fixture(store).await;
    let operator = Auth::Bearer(&f.operator);
    let admin = Auth::Bearer(&f.admin);
    let runs = format!("/api/v1/dags/{DAG_ID}/dagRuns");
    let refused = |body: serde_json::Value, needle: &'static str| {
        let (app, runs) = (f.app.clone(), runs.clone());
        async move {
            let detail = call(&app, Method::POST, &runs, operator, &body)
                .await
                .problem(StatusCode::BAD_REQUEST);
            assert!(detail.contains(needle), "{body}: {detail}");
        }
    };

    refused(json!({"dag_run_id": "."}), "`.` and `..` are path segments").await;
    refused(
        json!({"dag_run_id": ".."}),
        "`.` and `..` are path segments",
    )
    .await;
    refused(
        json!({"dag_run_id": "r".repeat(251)}),
        "run id has 251 characters; at most 250 are allowed (the max_run_id_length setting)",
    )
    .await;
    let big = json!({"target": "x".repeat(64 * 1024)});
    refused(
        json!({"dag_run_id": "big", "conf": big}),
        "at most 65536 are allowed (the max_conf_bytes setting)",
    )
    .await;

    // At the limits, and ids that merely contain dots, are fine.
    for (i, run_id) in ["r".repeat(250), "...".to_owned(), ".hidden".to_owned()]
        .into_iter()
        .enumerate()
    {
        let body = json!({"dag_run_id": run_id, "conf": {"target": "x".repeat(60 * 1024)},
                          "logical_date": format!("2027-01-0{}T00:00:00Z", i + 1)});
        let reply = f.call(Method::POST, &runs, operator, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{run_id}: {}", reply.text());
    }

    for name in [".", ".."] {
        let detail = f
            .call(
                Method::POST,
                "/api/v1/pools",
                admin,
                &json!({"name": name, "slots": 1}),
            )
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains("path segments"), "{name}: {detail}");
    }
    let reply = f
        .call(
            Method::POST,
            "/api/v1/pools",
            admin,
            &json!({"name": "...", "slots": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

async fn dag_search_matches_wildcards_literally(store: Store) {
    let f = fixture(store.clone()).await;
    let viewer = Auth::Bearer(&f.viewer);
    for id in ["hello_commands", "helloXcommands", "hellocommands"] {
        store
            .upsert_dag(&DagUpsert {
                dag_id: id.to_owned(),
                file_path: format!("dags/{id}.toml"),
                definition: json!({}),
                source_hash: id.to_owned(),
                schedule: None,
                timezone: "UTC".to_owned(),
                description: None,
                owner: None,
                tags: Vec::new(),
                is_paused: false,
                now: Utc::now(),
            })
            .await
            .expect("upsert");
    }
    let api = f
        .get("/api/v1/dags?dag_id_pattern=hello_commands", viewer)
        .await
        .json();
    let ids: Vec<&str> = api["dags"]
        .as_array()
        .expect("dags")
        .iter()
        .filter_map(|d| d["dag_id"].as_str())
        .collect();
    assert_eq!(ids, ["hello_commands"]);

    let page = f
        .get(
            "/dags?q=hello_commands",
            Auth::Session(&f.viewer_session, false),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    let listed = |id: &str| html.contains(&format!("<strong>{id}</strong>"));
    assert!(listed("hello_commands"), "{html}");
    assert!(!listed("helloXcommands"), "`_` matched any character");
    assert!(!listed("hellocommands"), "`_` was dropped");
}
