//! Keeping a running try's lease: extend it every `interval`, on its own task, for as
//! long as the try runs, and report the lease lost when the store says the try is no
//! longer ours (reaped, cleared, marked) or when no heartbeat got through for a whole
//! lease.

use std::time::Duration;

use nightshift_store::TryLease;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A try's lease, kept on its own task while the try runs. Dropping it (a panic in the
/// try) stops the heartbeats, so a dead try's lease is never extended.
pub(crate) struct Heartbeat {
    /// `None` once its answer was taken.
    task: Option<JoinHandle<String>>,
}

impl Heartbeat {
    /// Starts keeping `holder`'s lease (see [`keep_lease`]); when it is lost, `cancel`
    /// (the try's own token) fires as well.
    pub fn start(
        holder: TryLease,
        lease: Duration,
        interval: Duration,
        started: Instant,
        cancel: CancellationToken,
    ) -> Heartbeat {
        let task = tokio::spawn(
            async move {
                let why = keep_lease(&holder, lease, interval, started).await;
                tracing::warn!(reason = %why, "lease lost; stopping the try without reporting it");
                cancel.cancel();
                why
            }
            .in_current_span(),
        );
        Heartbeat { task: Some(task) }
    }

    /// Resolves with the reason once the lease is lost; never, if the heartbeat task
    /// ended abnormally (the lease then runs out, and the scheduler reaps the try).
    pub async fn lost(&mut self) -> String {
        if let Some(task) = self.task.as_mut() {
            let joined = task.await;
            self.task = None;
            match joined {
                Ok(why) => return why,
                Err(error) => tracing::warn!(%error, "heartbeat task ended abnormally"),
            }
        }
        std::future::pending().await
    }

    /// Stops the heartbeats as the try ends; the reason if the lease was lost meanwhile.
    pub async fn stop(mut self) -> Option<String> {
        let task = self.task.take()?;
        task.abort();
        match task.await {
            Ok(why) => Some(why),
            Err(error) => {
                if !error.is_cancelled() {
                    tracing::warn!(%error, "heartbeat task ended abnormally");
                }
                None
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Extends `holder`'s lease to `lease` from now every `interval` until the lease is
/// lost; returns why (for the log). `started` is when the lease was last written (just
/// before the claim).
///
/// The store writes the lease's end in the database's clock, so this worker's wall clock
/// plays no part; only durations measured here (a monotonic clock) do.
///
/// Self-fencing: the lease in the database runs out `lease` after the last heartbeat that
/// got through was *sent*. The try is given up one `interval` before that moment, whether
/// or not the database answers, so that by the time a scheduler may reap it and start
/// the next try, this one has stopped. A heartbeat that hangs (a half-open connection)
/// is abandoned at that deadline too.
async fn keep_lease(
    holder: &TryLease,
    lease: Duration,
    interval: Duration,
    started: Instant,
) -> String {
    let margin = interval.min(lease / 2);
    let mut fence_at = started + lease - margin;
    let mut last_error: Option<String> = None;
    loop {
        let next = (Instant::now() + interval).min(fence_at);
        tokio::time::sleep_until(next).await;
        if Instant::now() >= fence_at {
            return no_heartbeat(lease, last_error.as_deref());
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(fence_at, holder.heartbeat(lease)).await {
            Ok(Ok(())) => {
                fence_at = sent + lease - margin;
                last_error = None;
            }
            Ok(Err(error)) if error.is_stale() => {
                return format!("the try is no longer leased to this worker ({error})");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, ti_id = holder.ti_id(), try_number = holder.try_number(), "heartbeat failed; retrying");
                last_error = Some(error.to_string());
            }
            Err(_elapsed) => return no_heartbeat(lease, last_error.as_deref()),
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
