//! Draining the queue of external jobs to stop (`external_stops`, filled by the store
//! when a try that owned a job was given up without its worker): each worker, beside its
//! claims, takes a few at a time, stops each through its kind's cancel API
//! (`kind::stop`) and writes what happened into the given-up try's log. A stop that
//! fails is tried again by a later claim, at most [`MAX_CLAIMS`] times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nightshift_store::{ExternalStop, LogLine, Store};
use tokio_util::sync::CancellationToken;

use crate::kind::external::{ConnectionLookup, ExternalJob, Stopped};
use crate::kind::stop::stop_given_up;

/// Stops taken at once.
const BATCH: i64 = 10;
/// How long a worker holds a stop it took before another may try it.
const LEASE: Duration = Duration::from_secs(60);
/// Claims of one stop before it is given up on.
pub const MAX_CLAIMS: i32 = 5;

/// Drains the queue every `interval` until `stop` fires.
pub(crate) async fn drain_loop(
    store: Store,
    env: BTreeMap<String, String>,
    installation: String,
    connections: ConnectionLookup,
    interval: Duration,
    stop: CancellationToken,
) {
    let job = ExternalJob::detached(env)
        .with_installation(&installation)
        .with_connections(connections);
    let job = Arc::new(job);
    loop {
        if let Err(error) = drain_once(&store, &job).await {
            tracing::warn!(%error, "cannot read the external jobs to stop");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Takes and settles one batch of stops; how many were taken.
pub async fn drain_once(
    store: &Store,
    job: &ExternalJob,
) -> Result<usize, nightshift_store::StoreError> {
    let stops = store.claim_external_stops(BATCH, LEASE).await?;
    let taken = stops.len();
    for s in stops {
        settle(store, job, &s).await;
    }
    Ok(taken)
}

async fn settle(store: &Store, job: &ExternalJob, s: &ExternalStop) {
    let result = stop_given_up(&s.kind, &s.external_id, job, &s.reason).await;
    let (text, settled) = match result {
        Ok(Stopped::Stopped(what)) => (format!("{}: {what}", s.reason), true),
        Ok(Stopped::AlreadyOver(what)) => (format!("{}: {what}", s.reason), true),
        Err(error) if s.claims >= MAX_CLAIMS => (
            format!(
                "{}: cannot stop {} job {} after {} attempts, giving up: {error}",
                s.reason, s.kind, s.external_id, s.claims
            ),
            true,
        ),
        Err(error) => (
            format!(
                "{}: cannot stop {} job {} yet (attempt {} of {MAX_CLAIMS}): {error}",
                s.reason, s.kind, s.external_id, s.claims
            ),
            false,
        ),
    };
    tracing::info!(ti_id = s.ti_id, try_number = s.try_number, kind = %s.kind, external_id = %s.external_id, result = %text, "external job of a given-up try");
    let line = LogLine {
        ts: Utc::now(),
        stream: "system".to_owned(),
        line: text.clone(),
    };
    if let Err(error) = store.append_logs(s.ti_id, s.try_number, &[line]).await {
        tracing::warn!(%error, "cannot write the stop into the try's log");
    }
    if let Err(error) = store.finish_external_stop(s.id, &text, settled).await {
        tracing::warn!(%error, "cannot record the stop; another worker will try it again");
    }
}
