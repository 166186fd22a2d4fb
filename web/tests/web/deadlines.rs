//! Missed deadlines in the API (`…/dagRuns/{run}/deadlines`, any role) and as the "late"
//! badge on the DAG list, the run page and the task page.

use axum::http::StatusCode;
use nightshift_store::{NewDeadlineMiss, Store};
use nightshift_testkit::t;

use crate::common::{both_backends, fixture, Auth, DAG_ID};

both_backends!(missed_deadlines_are_listed_and_shown_late);

async fn missed_deadlines_are_listed_and_shown_late(store: Store) {
    let f = fixture(store).await;
    let api = format!("/api/v1/dags/{DAG_ID}/dagRuns/{}/deadlines", f.run_id);
    let run_page = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let task_page = format!("{run_page}/tasks/extract");
    let late_badge = "<span class=\"badge late\"";

    // Never late: an empty list, no badge anywhere.
    let reply = f.get(&api, Auth::Bearer(&f.viewer)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["total_entries"], 0);
    for page in ["/dags", run_page.as_str(), task_page.as_str()] {
        let text = f
            .get(page, Auth::Session(&f.viewer_session, false))
            .await
            .text();
        assert!(!text.contains(late_badge), "{page}");
    }

    // The scheduler records a run's and a task's miss.
    let run = f.run(&f.run_id).await;
    for (task_id, deadline, fail) in [
        (Some("extract"), "within 2h", true),
        (None, "at 09:00 (UTC)", false),
    ] {
        let miss = NewDeadlineMiss {
            run: run.id,
            dag_id: DAG_ID.to_owned(),
            task_id: task_id.map(str::to_owned),
            deadline: deadline.to_owned(),
            due_at: t("2026-01-02T09:00:00Z"),
            failed: fail,
            now: t("2026-01-02T09:00:01Z"),
            callback: None,
        };
        let recorded = f.store.record_deadline_miss(&miss).await.expect("record");
        assert!(recorded.is_some());
        // Recorded once: a second scheduler's attempt writes nothing.
        let again = f.store.record_deadline_miss(&miss).await.expect("record");
        assert_eq!(again, None);
    }

    let reply = f.get(&api, Auth::Bearer(&f.viewer)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["total_entries"], 2);
    let misses = &body["deadline_misses"];
    assert_eq!(misses[0]["task_id"], serde_json::Value::Null);
    assert_eq!(misses[0]["deadline"], "at 09:00 (UTC)");
    assert_eq!(misses[0]["fail"], false);
    assert_eq!(misses[1]["task_id"], "extract");
    assert_eq!(misses[1]["fail"], true);
    assert!(misses[1]["due_at"]
        .as_str()
        .is_some_and(|d| d.starts_with("2026-01-02T09:00:00")));

    let run_text = f
        .get(&run_page, Auth::Session(&f.viewer_session, false))
        .await
        .text();
    assert!(run_text.contains(late_badge), "{run_text}");
    assert!(
        run_text
            .contains("the run missed its deadline at 09:00 (UTC) (due 2026-01-02 09:00:00 UTC)"),
        "{run_text}"
    );
    assert!(
        run_text.contains("task extract missed its deadline within 2h"),
        "{run_text}"
    );
    let task_text = f
        .get(&task_page, Auth::Session(&f.viewer_session, false))
        .await
        .text();
    assert!(task_text.contains(late_badge), "{task_text}");
    // The fixture's run is unfinished, so its DAG is late on the list.
    if !run.state.is_finished() {
        let list = f
            .get("/dags", Auth::Session(&f.viewer_session, false))
            .await
            .text();
        assert!(list.contains(late_badge), "{list}");
    }

    // Unknown runs are 404; no credentials, 401.
    let missing = format!("/api/v1/dags/{DAG_ID}/dagRuns/nope/deadlines");
    let reply = f.get(&missing, Auth::Bearer(&f.viewer)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = f.get(&api, Auth::None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
