//! Keeping a running try's lease: extend it every `interval` until told to stop, and
//! report the lease lost when the store says the try is no longer ours (reaped, cleared,
//! marked) or when no heartbeat got through for a whole lease.

use std::time::Duration;

use chrono::Utc;
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

/// Extends `key`'s lease to `now + lease` every `interval` until `stop` fires or the
/// lease is lost. `started` is when the lease was last known good (the claim).
pub async fn keep_lease(
    store: &Store,
    key: &LeaseKey,
    lease: Duration,
    interval: Duration,
    started: Instant,
    stop: &CancellationToken,
) -> LeaseEnd {
    let mut last_ok = started;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return LeaseEnd::Stopped,
            () = tokio::time::sleep(interval) => {}
        }
        let expires_at = chrono::TimeDelta::from_std(lease)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        match store.heartbeat(key, expires_at).await {
            Ok(()) => last_ok = Instant::now(),
            Err(error) if error.is_stale() => {
                return LeaseEnd::Lost(format!(
                    "the try is no longer leased to this worker ({error})"
                ));
            }
            Err(error) if last_ok.elapsed() >= lease => {
                return LeaseEnd::Lost(format!(
                    "no heartbeat got through for {} (last error: {error})",
                    humantime::format_duration(lease)
                ));
            }
            Err(error) => {
                tracing::warn!(%error, ti_id = key.ti_id, try_number = key.try_number, "heartbeat failed; retrying");
            }
        }
    }
}
