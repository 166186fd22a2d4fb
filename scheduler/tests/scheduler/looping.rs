//! The loop itself: `Scheduler::run` woken by state changes finishes a chain in real time
//! and stops when cancelled, giving its runs back.

use std::time::Duration;

use chrono::Utc;
use nightshift_core::state::RunState;
use nightshift_scheduler::Scheduler;
use nightshift_store::{Store, Wake};
use tokio_util::sync::CancellationToken;

use crate::common::{add_dag, both_backends, config, succeed, trigger, work};

both_backends!(run_loop_finishes_a_chain_and_stops_on_cancel);

async fn run_loop_finishes_a_chain_and_stops_on_cancel(store: Store) {
    let dag = add_dag(
        &store,
        "loop",
        "id = \"loop\"\n[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n",
        false,
    )
    .await;
    let run = trigger(&store, &dag, Utc::now()).await;
    let mut cfg = config("looper");
    // Long polls: progress must come from wake-ups.
    cfg.poll_interval = Duration::from_secs(30);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(Scheduler::new(store.clone(), cfg).run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "run did not finish");
        let done = work(&store, "w1", Utc::now(), &succeed).await;
        if !done.is_empty() {
            store.wake(Wake::Scheduler).await;
        }
        let current = nightshift_testkit::dag_run(&store, run.id).await;
        if current.state == RunState::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops when cancelled")
        .expect("no panic");
    assert!(stopped.is_ok());
    let run = nightshift_testkit::dag_run(&store, run.id).await;
    assert_eq!(run.state, RunState::Success);
}
