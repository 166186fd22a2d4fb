//! A `require` task's page links to the run it waits for: from its external id while a
//! look is under way, and from its attempt row once the try waits without a slot.

use axum::http::StatusCode;
use nightshift_core::state::TaskState;
use nightshift_store::{RunType, Store, TryOutcome};

use crate::common::{both_backends, claim_task, fixture, started_run, t, Auth};

both_backends!(task_page_links_to_the_required_run);

async fn task_page_links_to_the_required_run(store: Store) {
    let f = fixture(store).await;
    let dag = nightshift_testkit::seed_dag(
        &f.store,
        "dags/marts.toml",
        "[tasks.wait_extract]\ntype = \"require\"\ndag = \"nightly\"\n",
    )
    .await;
    let now = t("2026-01-02T04:00:00Z");
    let run = started_run(
        &f.store,
        &dag,
        "manual__marts",
        RunType::Manual,
        t("2026-01-01T18:00:00Z"),
        now,
    )
    .await;
    let (_, claimed) = claim_task(&f.store, run.id, "wait_extract", now).await;
    let required = format!("nightly/{}", f.run_id);
    claimed
        .set_external_id(&required, "require", now)
        .await
        .expect("record the required run");
    let path = "/dags/marts/runs/manual__marts/tasks/wait_extract";
    // The fixture's run id needs no percent-encoding in a path.
    let link = format!(
        "<dt>Required run</dt><dd><a href=\"/dags/nightly/runs/{0}\">nightly / {0}</a></dd>",
        f.run_id
    );
    let page = |reply: crate::common::Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.text().replace("&#x2f;", "/")
    };
    let shown = page(f.get(path, Auth::Session(&f.viewer_session, false)).await);
    assert!(shown.contains(&link), "{link}\n{shown}");

    // The wait gives its slot back: the instance's copy is cleared, the attempt keeps it.
    let waiting = claimed
        .finish(TryOutcome {
            new_state: TaskState::UpForReschedule,
            error: None,
            exit_code: None,
            output: None,
            next_retry_at: Some(t("2026-01-02T04:01:00Z")),
            now,
            callback: None,
            progress: Default::default(),
        })
        .await
        .expect("reschedule");
    assert_eq!(waiting.external_id, None);
    let shown = page(f.get(path, Auth::Session(&f.viewer_session, false)).await);
    assert!(shown.contains(&link), "{link}\n{shown}");

    // Other kinds never show it.
    let extract = format!("/dags/nightly/runs/{}/tasks/extract", f.run_id);
    let shown = page(
        f.get(&extract, Auth::Session(&f.viewer_session, false))
            .await,
    );
    assert!(!shown.contains("Required run"), "{shown}");
}
