//! An HTML smoke test per page: status 200 and the text an on-call person looks for.

use axum::http::StatusCode;
use nightshift_store::Store;

use crate::common::{both_backends, fixture, Auth, DAG_ID};

both_backends!(every_page_renders, task_page_shows_the_failure_and_its_log);

async fn page(f: &crate::common::Fixture, path: &str, expected: &[&str]) -> String {
    let reply = f.get(path, Auth::Session(&f.operator_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    let text = reply.text();
    for needle in expected {
        assert!(text.contains(needle), "{path} lacks {needle:?}:\n{text}");
    }
    text
}

async fn every_page_renders(store: Store) {
    let f = fixture(store).await;
    f.store
        .replace_import_errors(
            &[("dags/broken.toml".to_owned(), "bad cron".to_owned())],
            chrono::Utc::now(),
        )
        .await
        .expect("import errors");
    let run = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    // Each page, and the texts an on-call person looks for on it.
    let pages: [(String, &[&str]); 12] = [
        (
            "/dags".into(),
            &[
                DAG_ID,
                "0 3 * * *",
                "failed to load",
                "broken.toml",
                "s-running",
                "Pause",
            ],
        ),
        ("/dags?filter=active&q=NIGHT".into(), &[DAG_ID]),
        ("/dags?filter=failing".into(), &["No DAGs match"]),
        ("/dags?filter=paused".into(), &["No DAGs match"]),
        (
            format!("/dags/{DAG_ID}"),
            &["extract", "fanout", "load", "s-failed", "Trigger", "JST"],
        ),
        (
            format!("/dags/{DAG_ID}/graph"),
            &["<svg", "extract", "s-failed"],
        ),
        (
            format!("/dags/{DAG_ID}/graph?run_id={}", f.run_id),
            &["<path class=\"edge\""],
        ),
        (
            run.clone(),
            &["Retry failed tasks", "extract", "2026-01-02 03:00:00 JST"],
        ),
        (format!("{run}/tasks/fanout"), &["[0]", "[1]", "pick one"]),
        (
            format!("/dags/{DAG_ID}/trigger"),
            &[r#"name="param.target" value="prod""#, "Trigger run"],
        ),
        ("/audit".into(), &["Audit log"]),
        ("/admin".into(), &["default_pool", "Your API tokens"]),
    ];
    for (path, expected) in &pages {
        page(&f, path, expected).await;
    }
    // A viewer sees no action buttons.
    let reply = f.get(&run, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text().contains("Retry failed tasks"));
    // Unknown things are 404 pages.
    let reply = f
        .get("/dags/missing", Auth::Session(&f.viewer_session, false))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.text().contains("not found"));
    // The error page names the error in its title (it had none before typed contexts).
    assert!(
        reply
            .text()
            .contains("<title>404 Not Found · nightshift</title>"),
        "{}",
        reply.text()
    );
}

async fn task_page_shows_the_failure_and_its_log(store: Store) {
    let f = fixture(store).await;
    // The alert link: one click to the page with the error and the log.
    let path = format!("/dags/{DAG_ID}/runs/{}/tasks/extract", f.run_id);
    let text = page(
        &f,
        &path,
        &[
            "command exited with code 3",
            "extract line 0",
            "extract line 4",
            "worker-1",
            "Retry",
            "+ downstream",
            "Mark success",
        ],
    )
    .await;
    // The log of a finished try is not polled (the page's state part is: the run goes on).
    assert!(
        !text.replace("&#x2f;", "/").contains("/log?"),
        "a finished try is not polled"
    );
    let fragment = page(
        &f,
        &format!("{path}/log?try=1&after=0"),
        &["extract line 2"],
    )
    .await;
    assert!(!fragment.contains("<html"));
    let reply = f
        .get(
            &format!("{path}?map_index=3"),
            Auth::Session(&f.viewer_session, false),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
