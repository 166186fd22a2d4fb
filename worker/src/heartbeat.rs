//! Keeping a running try's lease: extend it every `interval` until told to stop, and
//! report the lease lost when the store says the try is no longer ours (reaped, cleared,
//! marked) or when no heartbeat got through for a whole lease.

use std::time::Duration;

use nightshift_store::{LeaseKey, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a lease loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnd {
    /// `stop` fired: the try is finishing normally.
    Stopped,
    /// The try is no longer ours; the reason is for the log.
    Lost(String),
}

/// Extends `key`'s lease to `lease` from now every `interval` until `stop` fires or the
/// lease is lost. `started` is when the lease was last written (just before the claim).
///
/// The store writes the lease's end in the database's clock, so this worker's wall clock
/// plays no part; only durations measured here (a monotonic clock) do.
///
/// Self-fencing: the lease in the database runs out `lease` after the last heartbeat that
/// got through was *sent*. The try is given up one `interval` before that moment, whether
/// or not the database answers, so that by the time a scheduler may reap it and start
/// the next try, this one has stopped. A heartbeat that hangs (a half-open connection)
/// is abandoned at that deadline too.
pub async fn keep_lease(
    store: &Store,
    key: &LeaseKey,
    lease: Duration,
    interval: Duration,
    started: Instant,
    stop: &CancellationToken,
) -> LeaseEnd {
    let margin = interval.min(lease / 2);
    let mut fence_at = started + lease - margin;
    let mut last_error: Option<String> = None;
    loop {
        let next = (Instant::now() + interval).min(fence_at);
        tokio::select! {
            biased;
            () = stop.cancelled() => return LeaseEnd::Stopped,
            () = tokio::time::sleep_until(next) => {}
        }
        if Instant::now() >= fence_at {
            return LeaseEnd::Lost(no_heartbeat(lease, last_error.as_deref()));
        }
        let sent = Instant::now();
        let beat = tokio::select! {
            biased;
            () = stop.cancelled() => return LeaseEnd::Stopped,
            beat = tokio::time::timeout_at(fence_at, store.heartbeat(key, lease)) => beat,
        };
        match beat {
            Ok(Ok(())) => {
                fence_at = sent + lease - margin;
                last_error = None;
            }
            Ok(Err(error)) if error.is_stale() => {
                return LeaseEnd::Lost(format!(
                    "the try is no longer leased to this worker ({error})"
                ));
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, ti_id = key.ti_id, try_number = key.try_number, "heartbeat failed; retrying");
                last_error = Some(error.to_string());
            }
            Err(_elapsed) => {
                return LeaseEnd::Lost(no_heartbeat(lease, last_error.as_deref()));
            }
        }
    }
}

fn no_heartbeat(lease: Duration, last_error: Option<&str>) -> String {
    let mut why = format!(
        "no heartbeat got through in time to keep the {} lease",
        humantime::format_duration(lease)
    );
    if let Some(error) = last_error {
        why.push_str(&format!(" (last error: {error})"));
    }
    why
}
