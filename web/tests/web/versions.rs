//! Definition versions on the pages and in the API: the run page names the run's version
//! and shows the DAG file's diff since (escaped, classes only), the versions are listed at
//! `/api/v1/dags/{id}/versions`, and a clear runs the current version unless the
//! confirmation's checkbox (or the API's `keep_version`) keeps the run's.

use axum::http::{Method, StatusCode};
use chrono::Utc;
use nightshift_core::dag::Dag;
use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, NewDagVersion, RunType, Store};
use nightshift_testkit::claim_request;
use serde_json::json;

use crate::common::{both_backends, fixture, started_run, t, unescape, Auth, Fixture};

both_backends!(
    run_page_shows_its_version_and_the_diff_since,
    versions_are_listed_in_the_api,
    a_clear_keeps_the_runs_version_only_when_asked,
);

const V1: &str = "# first\n[tasks.t]\ntype = \"command\"\ncommand = \"echo <b>old</b>\"\n";
const V2: &str =
    "# second\n[tasks.t]\ntype = \"command\"\ncommand = \"echo <b>new</b> & more\"\nretries = 2\n";

/// Stores `toml` as DAG `v` with its version (text and definition), as the loader does.
async fn load(store: &Store, toml: &str) -> Dag {
    let dag = nightshift_testkit::seed_dag(store, "dags/v.toml", toml).await;
    store
        .record_dag_version(&NewDagVersion {
            dag_id: dag.id.clone(),
            source_hash: dag.source_hash.clone(),
            file_path: "dags/v.toml".to_owned(),
            source: toml.to_owned(),
            definition: serde_json::to_value(&dag).expect("definition"),
            loaded_at: Utc::now(),
        })
        .await
        .expect("record version");
    dag
}

/// DAG `v` at version 1 and its run `manual__v1`.
async fn first_version_run(f: &Fixture) -> (Dag, DagRun) {
    let v1 = load(&f.store, V1).await;
    let run = started_run(
        &f.store,
        &v1,
        "manual__v1",
        RunType::Manual,
        t("2026-01-05T00:00:00Z"),
        t("2026-01-05T00:00:01Z"),
    )
    .await;
    (v1, run)
}

/// DAG `v` at version 1 with a run made from it, then version 2 loaded.
async fn two_versions(f: &Fixture) -> (Dag, Dag, DagRun) {
    let (v1, run) = first_version_run(f).await;
    let v2 = load(&f.store, V2).await;
    (v1, v2, run)
}

async fn page(f: &Fixture, path: &str) -> String {
    let reply = f.get(path, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    reply.text()
}

async fn run_page_shows_its_version_and_the_diff_since(store: Store) {
    let f = fixture(store).await;
    let (v1, run) = first_version_run(&f).await;
    let path = "/dags/v/runs/manual__v1";
    // The run's version is the one loaded now: named, and no diff.
    let html = unescape(&page(&f, path).await);
    assert!(html.contains("v1 <a href="), "{html}");
    assert!(html.contains("(the version loaded now)"), "{html}");
    assert!(!html.contains("version-diff"), "{html}");

    load(&f.store, V2).await;
    let raw = page(&f, path).await;
    let html = unescape(&raw);
    assert_eq!(
        f.store
            .get_run(run.id)
            .await
            .expect("run")
            .expect("found")
            .definition_hash,
        v1.source_hash,
        "the run keeps its version"
    );
    assert!(html.contains("v2 is loaded now"), "{html}");
    assert!(
        html.contains(r#"<section class="card" id="version-diff">"#),
        "{html}"
    );
    assert!(html.contains("(v1 → v2)"), "{html}");
    for row in [
        r#"<tr class="hunk"><td class="ln"></td><td class="ln"></td><td class="code">@@ -1,4 +1,5 @@</td></tr>"#,
        r#"<tr class="del"><td class="ln">1</td><td class="ln"></td><td class="code">-# first</td></tr>"#,
        r#"<tr class="add"><td class="ln"></td><td class="ln">1</td><td class="code">+# second</td></tr>"#,
        r#"<tr class="same"><td class="ln">2</td><td class="ln">2</td><td class="code"> [tasks.t]</td></tr>"#,
        r#"<tr class="del"><td class="ln">4</td><td class="ln"></td><td class="code">-command = "echo <b>old</b>"</td></tr>"#,
        r#"<tr class="add"><td class="ln"></td><td class="ln">4</td><td class="code">+command = "echo <b>new</b> & more"</td></tr>"#,
        r#"<tr class="add"><td class="ln"></td><td class="ln">5</td><td class="code">+retries = 2</td></tr>"#,
    ] {
        assert!(html.contains(row), "the diff lacks {row}:\n{html}");
    }
    // The file's text is escaped, never markup; no inline style (CSP).
    assert!(!raw.contains("<b>"), "{raw}");
    assert!(raw.contains("echo &lt;b&gt;new&lt;"), "{raw}");
    assert!(!raw.contains("style="), "{raw}");
    // The live part (polled) carries the version line but not the diff.
    let live = unescape(&page(&f, &format!("{path}/live")).await);
    assert!(live.contains("v2 is loaded now"), "{live}");
    assert!(!live.contains("version-diff"), "{live}");
}

async fn versions_are_listed_in_the_api(store: Store) {
    let f = fixture(store).await;
    let (v1, v2, run) = two_versions(&f).await;
    let viewer = Auth::Bearer(&f.viewer);
    let reply = f.get("/api/v1/dags/v/versions", viewer).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["total_entries"], 2);
    let listed: Vec<(i64, String, bool)> = body["dag_versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            assert_eq!(v["dag_id"], "v");
            assert_eq!(v["fileloc"], "dags/v.toml");
            assert!(v["created_at"].is_string(), "{v}");
            (
                v["version_number"].as_i64().expect("number"),
                v["definition_hash"].as_str().expect("hash").to_owned(),
                v["is_current"].as_bool().expect("flag"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (2, v2.source_hash.clone(), true),
            (1, v1.source_hash.clone(), false)
        ]
    );
    // A run names its version.
    let reply = f
        .get(&format!("/api/v1/dags/v/dagRuns/{}", run.run_id), viewer)
        .await;
    assert_eq!(reply.json()["definition_hash"], v1.source_hash.as_str());
    f.get("/api/v1/dags/nope/versions", viewer)
        .await
        .problem(StatusCode::NOT_FOUND);
    let doc = f.get("/api/v1/openapi.json", viewer).await.json();
    assert!(
        doc["paths"]["/api/v1/dags/{dag_id}/versions"]["get"].is_object(),
        "versions missing from the OpenAPI document"
    );
    assert!(
        doc["components"]["schemas"]["ClearTaskInstances"]["properties"]["keep_version"]
            .is_object(),
        "{}",
        doc["components"]["schemas"]["ClearTaskInstances"]
    );
}

/// Fails the run's one instance, clears it (`clear` does), queues it and claims it: the
/// version the claimed try runs.
async fn cleared_try_version<F, Fut>(f: &Fixture, run: &DagRun, clear: F) -> Option<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ti = f.store.list_task_instances(run.id).await.expect("list");
    let ti = &ti[0];
    nightshift_testkit::force_state(&f.store, ti.id, TaskState::Failed).await;
    clear().await;
    let after = nightshift_testkit::instance(&f.store, ti.id).await;
    assert_eq!(after.state, TaskState::Pending);
    nightshift_testkit::force_state(&f.store, ti.id, TaskState::Queued).await;
    let claimed = f
        .store
        .claim(&claim_request("w", Utc::now()))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let version = claimed[0].dag_hash().map(str::to_owned);
    let attempts = f.store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(
        attempts.last().and_then(|a| a.definition_hash.clone()),
        version,
        "the attempt row records the version the try runs"
    );
    version
}

async fn a_clear_keeps_the_runs_version_only_when_asked(store: Store) {
    let f = &fixture(store).await;
    let (v1, v2, run) = two_versions(f).await;
    let run = &run;
    let run_path = &format!("/dags/v/runs/{}", run.run_id);
    let operator = Auth::Session(&f.operator_session, false);

    // The confirmation of a failed instance's clear offers the choice, unchecked.
    let ti = f.store.list_task_instances(run.id).await.expect("list");
    nightshift_testkit::force_state(&f.store, ti[0].id, TaskState::Failed).await;
    let ask = &format!("{run_path}/clear?task_id=t");
    let reply = f.get(ask, operator).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = unescape(&reply.text());
    assert!(
        html.contains(
            r#"<input type="checkbox" name="keep_version" value="on"> Keep the run's version"#
        ),
        "{html}"
    );
    let expect = |html: &str| {
        let marker = r#"name="expect" value=""#;
        let start = html.find(marker).expect("expect field") + marker.len();
        html[start..start + html[start..].find('"').expect("quote")].to_owned()
    };

    // UI, unchecked: the current version.
    let ran = cleared_try_version(f, run, move || async move {
        let html = unescape(&f.get(ask, operator).await.text());
        let form = format!("task_id=t&expect={}", expect(&html));
        let reply = f
            .post_as(&f.operator_session, &format!("{run_path}/clear"), &form)
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    })
    .await;
    assert_eq!(ran.as_deref(), Some(v2.source_hash.as_str()));

    // UI, checked: the run's version.
    let ran = cleared_try_version(f, run, move || async move {
        let html = unescape(&f.get(ask, operator).await.text());
        let form = format!("task_id=t&keep_version=on&expect={}", expect(&html));
        let reply = f
            .post_as(&f.operator_session, &format!("{run_path}/clear"), &form)
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    })
    .await;
    assert_eq!(ran.as_deref(), Some(v1.source_hash.as_str()));
    let audit = f.audit().await;
    let last = audit
        .iter()
        .filter(|a| a.action == "task.clear")
        .max_by_key(|a| a.id)
        .expect("audited");
    assert_eq!(last.details["keep_version"], true, "{last:?}");

    // API: the same choice, as `keep_version`.
    let api = "/api/v1/dags/v/clearTaskInstances";
    for (keep, expected) in [(true, &v1), (false, &v2)] {
        let ran = cleared_try_version(f, run, move || async move {
            let body = json!({"dag_run_id": run.run_id, "task_ids": ["t"], "dry_run": false,
                              "keep_version": keep});
            let reply = f
                .call(Method::POST, api, Auth::Bearer(&f.operator), &body)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        })
        .await;
        assert_eq!(
            ran.as_deref(),
            Some(expected.source_hash.as_str()),
            "keep {keep}"
        );
    }
}
