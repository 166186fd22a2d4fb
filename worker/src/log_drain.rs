//! Moves a try's log lines from its [`LogReceiver`] into the store in batches (every
//! [`FLUSH_EVERY`] or [`MAX_BATCH`] lines, whichever comes first), so the UI can follow a
//! running task while the database sees few, larger writes. The try's rendered fields
//! travel with the first batch after they are known.
//!
//! When the log closes (the try is over), the batch being gathered is not written: it is
//! returned, and the worker stores it in the same transaction as the try's outcome. A
//! try that ends within [`FLUSH_EVERY`] therefore costs no log write of its own.

use std::time::Duration;

use chrono::Utc;
use nightshift_store::{TryLease, TryProgress};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::log::{LogLine, LogReceiver};

/// How long lines wait to be batched before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The most lines one write carries.
pub const MAX_BATCH: usize = 500;
/// How long a batch is retried before its lines are dropped (with a warning): long enough
/// to ride out a database restart, short enough that a log does not hold a try forever
/// while the database is away.
const WRITE_PATIENCE: Duration = Duration::from_secs(60);

/// Drains `rx` into the log of the try `lease` holds until every writer is dropped, and stores
/// `rendered` (once it comes) with the next batch. Returns the last batch, unwritten, for
/// the caller to store with the try's outcome (or with [`store`] when there is none).
///
/// Lines arrive masked: the try's [`LogWriter`](crate::log::LogWriter) masks secrets
/// before it cuts a line (see [`LogChannel::with_secrets`](crate::log::LogChannel::with_secrets)).
pub async fn drain(
    lease: TryLease,
    mut rx: LogReceiver,
    mut rendered: oneshot::Receiver<Value>,
) -> TryProgress {
    let mut waiting_for_rendered = true;
    let mut buf: Vec<LogLine> = Vec::with_capacity(MAX_BATCH);
    let mut batch = TryProgress::default();
    loop {
        // Wait for something to write: lines, or the rendered fields.
        if batch.is_empty() {
            tokio::select! {
                received = rx.recv_batch(&mut buf, MAX_BATCH) => {
                    if received == 0 {
                        take_rendered(&mut batch, &mut rendered, waiting_for_rendered);
                        return batch;
                    }
                }
                fields = &mut rendered, if waiting_for_rendered => {
                    waiting_for_rendered = false;
                    batch.rendered = fields.ok();
                }
            }
        }
        // Gather more for up to FLUSH_EVERY.
        let deadline = Instant::now() + FLUSH_EVERY;
        let mut closed = false;
        while buf.len() < MAX_BATCH {
            let room = MAX_BATCH - buf.len();
            tokio::select! {
                received = rx.recv_batch(&mut buf, room) => {
                    if received == 0 {
                        closed = true;
                        break;
                    }
                }
                fields = &mut rendered, if waiting_for_rendered => {
                    waiting_for_rendered = false;
                    batch.rendered = fields.ok();
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        batch
            .logs
            .extend(buf.drain(..).map(|l| nightshift_store::LogLine {
                ts: l.at,
                stream: l.stream.as_str().to_owned(),
                line: l.text,
            }));
        if closed {
            take_rendered(&mut batch, &mut rendered, waiting_for_rendered);
            return batch;
        }
        if !batch.is_empty() {
            store_progress(&lease, &batch).await;
            batch = TryProgress::default();
        }
    }
}

/// The log closed: the rendered fields, when they were sent but not received yet (the
/// closing and the fields can be ready in the same `select!`, which picks either), go with
/// the last batch, so a finished try always has them.
fn take_rendered(batch: &mut TryProgress, rendered: &mut oneshot::Receiver<Value>, waiting: bool) {
    if waiting {
        if let Ok(fields) = rendered.try_recv() {
            batch.rendered = Some(fields);
        }
    }
}

/// Stores `progress` (lines and rendered fields) of the try `lease` holds, retrying while the
/// database is away for up to a minute; then the lines are dropped with a warning.
pub async fn store_progress(lease: &TryLease, progress: &TryProgress) {
    let deadline = Instant::now() + WRITE_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        match lease.store_progress(progress, Utc::now()).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::debug!(
                    ti_id = lease.ti_id(),
                    "rendered fields not stored: the try is no longer ours"
                );
                return;
            }
            Err(error) if Instant::now() + backoff <= deadline => {
                tracing::warn!(%error, ti_id = lease.ti_id(), try_number = lease.try_number(), retry_in = ?backoff, "cannot store log lines; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                tracing::warn!(%error, ti_id = lease.ti_id(), try_number = lease.try_number(), lines = progress.logs.len(), "cannot store log lines; dropping them");
                return;
            }
        }
    }
}
