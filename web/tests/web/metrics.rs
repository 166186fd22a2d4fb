//! `/metrics`: Prometheus text behind auth, with the gauges read from the database.

use axum::http::{header, StatusCode};
use nightshift_store::Store;

use crate::common::{both_backends, fixture, Auth};

both_backends!(metrics_need_auth_and_show_database_gauges);

/// The value of the sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn metrics_need_auth_and_show_database_gauges(store: Store) {
    let f = fixture(store).await;
    let reply = f.get("/metrics", Auth::None).await;
    reply.problem(StatusCode::UNAUTHORIZED);

    for auth in [
        Auth::Bearer(&f.viewer),
        Auth::Session(&f.viewer_session, false),
    ] {
        let reply = f.get("/metrics", auth).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(reply
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
        let text = reply.text();
        // The fixture's run has one failed task and its downstream still pending. Other
        // tests share the process-wide recorder, so only check what this fixture decides
        // for sure: every in-flight state is present, and the pool gauges exist.
        for state in [
            "pending",
            "scheduled",
            "queued",
            "running",
            "up_for_retry",
            "up_for_reschedule",
        ] {
            let series = format!("nightshift_task_instances{{state=\"{state}\"}}");
            assert!(
                sample(&text, &series).is_some(),
                "{series} missing:\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE nightshift_task_instances gauge"),
            "{text}"
        );
        assert!(
            sample(&text, "nightshift_pool_slots{pool=\"default_pool\"}").is_some(),
            "{text}"
        );
        assert!(
            sample(&text, "nightshift_db_pool_max_connections").is_some_and(|n| n >= 1.0),
            "{text}"
        );
    }
}
