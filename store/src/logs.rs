//! Task logs: lines per attempt, appended in batches while a try runs and read back
//! after a line id, so the UI can follow a running task.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::attempts::set_rendered;
use crate::{impl_from_row, in_async_tx, on_pool, LeaseKey, Store, StoreError};

/// Rows per INSERT statement: 5 parameters each stays far below both backends' limits.
pub(crate) const LOG_ROWS_PER_STATEMENT: usize = 500;

/// The `INSERT` of `rows` log lines of one try: `$1` the instance, `$2` the try, then
/// (ts, stream, line) per row.
pub(crate) fn insert_log_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO task_logs (task_instance, try_number, ts, stream, line) VALUES ");
    for i in 0..rows {
        let first = 3 + 3 * i;
        let sep = if i == 0 { "" } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(
            sql,
            "{sep}($1, $2, ${first}, ${}, ${})",
            first + 1,
            first + 2
        );
    }
    sql
}

/// Inserts `$lines` (`&[LogLine]`) into the log of one try on `$executor` (the caller's
/// transaction), in order, in statements of [`LOG_ROWS_PER_STATEMENT`] rows.
macro_rules! insert_log_lines {
    ($executor:expr, $ti_id:expr, $try_number:expr, $lines:expr) => {{
        let lines: &[$crate::LogLine] = $lines;
        for chunk in lines.chunks($crate::logs::LOG_ROWS_PER_STATEMENT) {
            let sql = $crate::logs::insert_log_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind($ti_id).bind($try_number);
            for line in chunk {
                query = query.bind(line.ts).bind(&line.stream).bind(&line.line);
            }
            query.execute($executor).await?;
        }
    }};
}
pub(crate) use insert_log_lines;

/// What a running try produced that is not stored yet: log lines and, once, its rendered
/// fields. The worker stores it in batches while the try runs
/// ([`crate::TryLease::store_progress`]) and the last part with the try's outcome
/// ([`crate::TryOutcome::progress`]), so a short try costs no write of its own for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TryProgress {
    /// Already masked.
    pub logs: Vec<LogLine>,
    /// The rendered templated fields, already masked.
    pub rendered: Option<serde_json::Value>,
}

impl TryProgress {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty() && self.rendered.is_none()
    }
}

/// One log line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub ts: DateTime<Utc>,
    /// Where it came from: `stdout`, `stderr`, or the worker's own messages.
    pub stream: String,
    pub line: String,
}

/// A stored log line; `id` increases in the order lines were appended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub ts: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

impl_from_row!(LogRow, |row| LogRow {
    id: row.try_get("id")?,
    ts: row.try_get("ts")?,
    stream: row.try_get("stream")?,
    line: row.try_get("line")?,
});

impl Store {
    /// Appends lines to the log of try `try_number` of instance `ti_id`, in order, in
    /// one transaction.
    pub async fn append_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        lines: &[LogLine],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        in_async_tx!(self, |tx| insert_log_lines!(
            &mut *tx, ti_id, try_number, lines
        ));
        Ok(())
    }

    /// Stores what a running try produced since the last call ([`TryProgress`]) in one
    /// transaction: its log lines, and its rendered fields if given. Returns false when
    /// the rendered fields were refused because the try is no longer running under `key`
    /// (its lines are stored all the same: a try's last words belong in its log).
    pub(crate) async fn store_progress(
        &self,
        key: &LeaseKey,
        progress: &TryProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if progress.is_empty() {
            return Ok(true);
        }
        let rendered = in_async_tx!(self, |tx| {
            let rendered = match &progress.rendered {
                Some(rendered) => set_rendered!(&mut *tx, key, rendered, now),
                None => true,
            };
            insert_log_lines!(&mut *tx, key.ti_id, key.try_number, &progress.logs);
            rendered
        });
        Ok(rendered)
    }

    /// Up to `limit` lines of one attempt with an id greater than `after_id` (0 for the
    /// start), oldest first.
    pub async fn read_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        const SQL: &str = "
            SELECT id, ts, stream, line FROM task_logs
            WHERE task_instance = $1 AND try_number = $2 AND id > $3
            ORDER BY id LIMIT $4";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .bind(try_number)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The last `limit` lines of one attempt, oldest first.
    pub async fn tail_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        const SQL: &str = "
            SELECT id, ts, stream, line FROM task_logs
            WHERE task_instance = $1 AND try_number = $2
            ORDER BY id DESC LIMIT $3";
        let mut rows: Vec<LogRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .bind(try_number)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.reverse();
        Ok(rows)
    }

    /// How many lines one attempt has (the worker enforces the per-attempt cap).
    pub async fn count_log_lines(&self, ti_id: i64, try_number: i32) -> Result<i64, StoreError> {
        const SQL: &str =
            "SELECT COUNT(*) FROM task_logs WHERE task_instance = $1 AND try_number = $2";
        let count = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(ti_id)
            .bind(try_number)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }
}
