//! Moves a try's log lines from its [`LogReceiver`] into the store in batches (every
//! [`FLUSH_EVERY`] or [`MAX_BATCH`] lines, whichever comes first), so the UI can follow a
//! running task while the database sees few, larger writes.

use std::sync::Arc;
use std::time::Duration;

use nightshift_core::template::mask_secrets;

use nightshift_store::Store;
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

/// Drains `rx` into the log of try `try_number` of instance `ti_id` until every writer
/// is dropped; returns how many lines were stored.
///
/// Every occurrence of one of `secrets` in a line is stored as `***`.
pub async fn drain(
    store: Store,
    ti_id: i64,
    try_number: i32,
    mut rx: LogReceiver,
    secrets: Arc<[String]>,
) -> u64 {
    let mut stored = 0u64;
    let mut buf: Vec<LogLine> = Vec::with_capacity(MAX_BATCH);
    loop {
        buf.clear();
        if rx.recv_batch(&mut buf, MAX_BATCH).await == 0 {
            return stored;
        }
        let deadline = Instant::now() + FLUSH_EVERY;
        let mut closed = false;
        while buf.len() < MAX_BATCH {
            let room = MAX_BATCH - buf.len();
            match tokio::time::timeout_at(deadline, rx.recv_batch(&mut buf, room)).await {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        stored += write(&store, ti_id, try_number, &buf, &secrets).await;
        if closed {
            return stored;
        }
    }
}

async fn write(
    store: &Store,
    ti_id: i64,
    try_number: i32,
    lines: &[LogLine],
    secrets: &[String],
) -> u64 {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let rows: Vec<nightshift_store::LogLine> = lines
        .iter()
        .map(|l| nightshift_store::LogLine {
            ts: l.at,
            stream: l.stream.as_str().to_owned(),
            line: mask_secrets(&l.text, &secrets),
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WRITE_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.append_logs(ti_id, try_number, &rows).await {
            Ok(()) => return rows.len() as u64,
            Err(error) if tokio::time::Instant::now() + backoff <= deadline => {
                tracing::warn!(%error, ti_id, try_number, retry_in = ?backoff, "cannot store log lines; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                tracing::warn!(%error, ti_id, try_number, lines = rows.len(), "cannot store log lines; dropping them");
                return 0;
            }
        }
    }
}
