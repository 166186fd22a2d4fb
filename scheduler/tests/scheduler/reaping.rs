//! Expired leases: reaped into up_for_retry while tries are left, then failed; the reaped
//! worker can no longer finish its try.

use std::time::Duration;

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{ClaimRequest, RunningTry, Store};

use crate::common::{add_dag, both_backends, secs, started};

both_backends!(expired_lease_is_retried_then_failed);

async fn claim_one(store: &Store, worker: &str, now: chrono::DateTime<chrono::Utc>) -> RunningTry {
    let mut claimed = store
        .claim(&ClaimRequest {
            limit: 10,
            lease: Duration::from_secs(30),
            ..nightshift_testkit::claim_request(worker, now)
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

/// The worker's heartbeats stop: its last one leaves no lease, which runs out (in the
/// database's clock, the one leases are compared in) a moment later.
async fn lose(claimed: &RunningTry) {
    claimed
        .heartbeat(Duration::ZERO)
        .await
        .expect("last heartbeat");
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn expired_lease_is_retried_then_failed(store: Store) {
    let dag = add_dag(
        &store,
        "zombie",
        "id = \"zombie\"\n[tasks.a]\ntype = \"noop\"\nretries = 1\nretry_delay = \"2m\"\n",
        false,
    )
    .await;
    let (run, s, start) = started(&store, &dag).await;
    let first = claim_one(&store, "killed", start).await;
    // Within the lease nothing happens, whatever the scheduler's clock says.
    let report = s.tick(start + secs(20)).await.expect("tick");
    assert_eq!(report.reaped, 0);
    let report = s.tick(start + secs(3600)).await.expect("tick");
    assert_eq!(report.reaped, 0);
    lose(&first).await;
    let reaped_at = start + secs(31);
    let report = s.tick(reaped_at).await.expect("tick");
    assert_eq!(report.reaped, 1);
    let ti = store
        .get_task_instance(first.instance().id)
        .await
        .expect("get")
        .expect("ti");
    assert_eq!(ti.state, TaskState::UpForRetry);
    let retry_at = ti.next_retry_at.expect("next_retry_at");
    assert_eq!(retry_at, reaped_at + secs(120));
    assert_eq!(ti.lease_owner, None);
    let attempts = store.list_attempts(ti.id).await.expect("attempts");
    assert_eq!(attempts[0].state, TaskState::UpForRetry);
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("killed"),
        "{attempts:?}"
    );
    // The killed worker comes back: its success is stale.
    let late = first
        .finish(nightshift_testkit::success(reaped_at + secs(1)))
        .await;
    assert!(late.expect_err("stale").is_stale());
    // Second (last) try, lost the same way: failed, and so is the run.
    s.tick(retry_at).await.expect("tick");
    let second = claim_one(&store, "lost", retry_at).await;
    assert_eq!(second.instance().try_number, 2);
    lose(&second).await;
    let report = s.tick(retry_at + secs(31)).await.expect("tick");
    assert_eq!(report.reaped, 1);
    let ti = nightshift_testkit::instance(&store, ti.id).await;
    assert_eq!(ti.state, TaskState::Failed);
    assert_eq!(ti.next_retry_at, None);
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Failed);
}
