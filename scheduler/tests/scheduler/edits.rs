//! A DAG file edited while one of its runs is in progress: removed tasks become
//! `removed` (a running one is stopped and its attempt closed), added tasks join the run,
//! and changed dependencies apply to the instances that have not started.

use std::time::Duration;

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{ClaimRequest, Store};

use crate::common::{add_dag, both_backends, drive, secs, started, states, succeed};

both_backends!(editing_the_file_mid_run_keeps_the_run_consistent);

const BEFORE: &str = r#"id = "edited"
[tasks]
a = { type = "noop" }
b = { type = "noop", depends_on = ["a"] }
c = { type = "noop", depends_on = ["b"] }
d = { type = "noop" }
e = { type = "noop", depends_on = ["a"] }
"#;

/// `c` and the running `d` are gone, `f` is new, and `b` now waits for `f`.
const AFTER: &str = r#"id = "edited"
[tasks]
a = { type = "noop" }
b = { type = "noop", depends_on = ["f"] }
e = { type = "noop", depends_on = ["a"] }
f = { type = "noop", depends_on = ["a"] }
"#;

async fn editing_the_file_mid_run_keeps_the_run_consistent(store: Store) {
    let dag = add_dag(&store, "edited", BEFORE, false).await;
    let (run, s, start) = started(&store, &dag).await;
    // A worker takes both roots; `a` succeeds, `d` is still running when the file changes.
    let mut claimed = store
        .claim(&ClaimRequest {
            limit: 10,
            lease: Duration::from_secs(3600),
            ..nightshift_testkit::claim_request("w1", start)
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "the roots a and d");
    let finish = || nightshift_testkit::success(start + secs(1));
    claimed.sort_by_key(|c| c.instance().task_id.clone());
    let (d, a) = (claimed.pop().expect("d"), claimed.pop().expect("a"));
    assert_eq!(
        (a.instance().task_id.as_str(), d.instance().task_id.as_str()),
        ("a", "d")
    );
    a.finish(finish()).await.expect("a succeeds");

    add_dag(&store, "edited", AFTER, false).await;
    let edited = start + secs(2);
    s.tick(edited).await.expect("tick");
    let now = states(&store, &run).await;
    assert_eq!(now["c"], TaskState::Removed, "{now:?}");
    assert_eq!(now["d"], TaskState::Removed, "{now:?}");
    assert_eq!(
        now["f"],
        TaskState::Queued,
        "the new task joins the run: {now:?}"
    );
    assert_eq!(now["e"], TaskState::Queued, "{now:?}");
    assert_eq!(now["b"], TaskState::Pending, "b now waits for f: {now:?}");
    // The removed running try is closed, saying why, and its worker's success loses.
    let attempts = store
        .list_attempts(d.instance().id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, TaskState::Removed);
    assert_eq!(attempts[0].end_date, Some(edited));
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("its task was removed from the DAG file while it ran")
    );
    assert!(d.finish(finish()).await.expect_err("stale").is_stale());

    let (state, states) = drive(&store, &s, &run, edited + secs(1), &succeed).await;
    assert_eq!(state, RunState::Success);
    let got: Vec<(&str, TaskState)> = states.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let (success, removed) = (TaskState::Success, TaskState::Removed);
    assert_eq!(
        got,
        [
            ("a", success),
            ("b", success),
            ("c", removed),
            ("d", removed),
            ("e", success),
            ("f", success),
        ]
    );
    // b started only after f ended.
    let instances = store.list_task_instances(run.id).await.expect("list");
    let get = |id: &str| instances.iter().find(|ti| ti.task_id == id).expect(id);
    assert!(get("b").start_date >= get("f").end_date);
}
