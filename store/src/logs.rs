//! Task logs: the lines of each try, numbered 1, 2, 3, ... in the order the worker
//! received them (`line_no`, across stdout, stderr and nightshift's own lines). They
//! are appended in batches while a try runs and read back by line number: after a line
//! (to follow a running task, or to download the whole log a page at a time), before a
//! line (to page back from the end), or matching a search.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::attempts::set_rendered;
use crate::{impl_from_row, in_async_tx, on_pool, LeaseKey, Store, StoreError};

/// The streams a log line can come from: a task's stdout and stderr, the worker's own
/// lines, the scheduler's. PostgreSQL checks them too (migration 0010); SQLite relies on
/// this list (a trigger per row doubled the cost of storing a log there).
pub(crate) const LOG_STREAMS: &[&str] = &["stdout", "stderr", "system", "scheduler"];

/// Rows per INSERT statement: 3 parameters each (and 4 per statement) stays far below
/// both backends' limits.
const LOG_ROWS_PER_STATEMENT: usize = 500;

/// The statement inserting `rows` lines of one try (`$1` the instance, `$2` the try, then
/// ts, stream and text of each line), numbered after the try's last stored line.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "WITH last (n) AS (SELECT COALESCE(MAX(line_no), 0) FROM task_logs \
                           WHERE task_instance = $1 AND try_number = $2), \
              new (k, ts, stream, line) AS (VALUES ",
    );
    for k in 0..rows {
        let first = 3 + 3 * k;
        let sep = if k == 0 { "" } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(
            sql,
            "{sep}({}, ${first}, ${}, ${})",
            k + 1,
            first + 1,
            first + 2
        );
    }
    sql.push_str(
        ") INSERT INTO task_logs (task_instance, try_number, line_no, ts, stream, line) \
         SELECT $1, $2, last.n + new.k, new.ts, new.stream, new.line FROM last, new",
    );
    sql
}

/// Appends `lines` to the log of try `try_number` of instance `ti_id` on `conn` (the
/// caller's transaction), numbered after the try's last stored line, in order, in
/// statements of [`LOG_ROWS_PER_STATEMENT`] rows. A try has one writer at a time (its
/// worker; the scheduler only for try 0), so reading the last number in the statement
/// that inserts after it is enough; two writers would collide on the unique
/// `(task_instance, try_number, line_no)` and one would fail, never interleave.
pub(crate) async fn insert_lines<C>(
    conn: &mut C,
    ti_id: i64,
    try_number: i32,
    lines: &[LogLine],
) -> Result<(), StoreError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
    for<'q> i64: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> i32: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
{
    if let Some(line) = lines
        .iter()
        .find(|l| !LOG_STREAMS.contains(&l.stream.as_str()))
    {
        return Err(StoreError::Invalid {
            what: "log line",
            reason: format!(
                "unknown stream {:?} (one of {})",
                line.stream,
                LOG_STREAMS.join(", ")
            ),
        });
    }
    for chunk in lines.chunks(LOG_ROWS_PER_STATEMENT) {
        let sql = insert_sql(chunk.len());
        let mut query = sqlx::query::<C::Database>(&sql)
            .bind(ti_id)
            .bind(try_number);
        for line in chunk {
            query = query
                .bind(line.ts)
                .bind(line.stream.as_str())
                .bind(line.line.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

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

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRow {
    /// Increases in the order lines were appended, across all logs.
    pub id: i64,
    /// 1, 2, 3, ... within the try, in the order the worker received the lines.
    pub line_no: i64,
    pub ts: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

impl_from_row!(LogRow, |row| LogRow {
    id: row.try_get("id")?,
    line_no: row.try_get("line_no")?,
    ts: row.try_get("ts")?,
    stream: row.try_get("stream")?,
    line: row.try_get("line")?,
});

/// `%term%` for a `LIKE … ESCAPE '\'` on a lowercased column: LIKE's wildcards and the
/// escape character itself match literally (`50%` finds "50%", `a_b` finds "a_b").
fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

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
        in_async_tx!(self, |tx| insert_lines(&mut *tx, ti_id, try_number, lines)
            .await?);
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
                Some(rendered) => {
                    let done = set_rendered(key, rendered, now)
                        .build()
                        .execute(&mut *tx)
                        .await?;
                    done.rows_affected() == 1
                }
                None => true,
            };
            insert_lines(&mut *tx, key.ti_id, key.try_number, &progress.logs).await?;
            rendered
        });
        Ok(rendered)
    }

    /// Up to `limit` lines of one try after line `after` (0 for the start), in order.
    pub async fn read_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        const SQL: &str = "
            SELECT id, line_no, ts, stream, line FROM task_logs
            WHERE task_instance = $1 AND try_number = $2 AND line_no > $3
            ORDER BY line_no LIMIT $4";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .bind(try_number)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The last `limit` lines of one try before line `before`, in order: the page before
    /// a page that starts at `before` (`i64::MAX` for the end of the log).
    pub async fn read_logs_before(
        &self,
        ti_id: i64,
        try_number: i32,
        before: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        const SQL: &str = "
            SELECT id, line_no, ts, stream, line FROM task_logs
            WHERE task_instance = $1 AND try_number = $2 AND line_no < $3
            ORDER BY line_no DESC LIMIT $4";
        let mut rows: Vec<LogRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .bind(try_number)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.reverse();
        Ok(rows)
    }

    /// The last `limit` lines of one try, in order.
    pub async fn tail_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        self.read_logs_before(ti_id, try_number, i64::MAX, limit)
            .await
    }

    /// Up to `limit` lines of one try after line `after` that contain `term`, ignoring
    /// case (ASCII on SQLite), in order; `%`, `_` and `\` in `term` match themselves.
    pub async fn search_logs(
        &self,
        ti_id: i64,
        try_number: i32,
        term: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        const SQL: &str = "
            SELECT id, line_no, ts, stream, line FROM task_logs
            WHERE task_instance = $1 AND try_number = $2 AND line_no > $3
              AND LOWER(line) LIKE $4 ESCAPE '\\'
            ORDER BY line_no LIMIT $5";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .bind(try_number)
            .bind(after)
            .bind(like_pattern(term))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// How many lines one try has: the number of its last line.
    pub async fn count_log_lines(&self, ti_id: i64, try_number: i32) -> Result<i64, StoreError> {
        const SQL: &str = "
            SELECT COALESCE(MAX(line_no), 0) FROM task_logs
            WHERE task_instance = $1 AND try_number = $2";
        let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(ti_id)
            .bind(try_number)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }
}
