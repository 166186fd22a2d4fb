//! Retention: deleting the history of finished runs (each run with its task instances,
//! tries, log lines, callback requests and missed deadlines), the log lines alone of
//! older runs, old audit entries, and the stored DAG file versions nothing refers to any
//! more. [`Store::clean`] is the one implementation behind `nightshift db clean` and the
//! scheduler's background retention; a dry run counts with the same conditions the real
//! run deletes by.
//!
//! What is never deleted: an unfinished run; a run with a callback still to send; the
//! newest scheduled run of each DAG (the scheduler's catch-up continues from its data
//! interval, so without it a DAG with `catchup = true` would create its whole history
//! again); the newest `keep_last` runs of each DAG.
//!
//! Work goes in small batches, each its own short transaction (at most
//! [`INSTANCES_PER_TX`] task instances with their tries, or [`ROWS_PER_STATEMENT`] log
//! lines or audit entries): on SQLite a writer waits for one batch at most, on PostgreSQL
//! no snapshot is held open (the scheduler's reads of changed instances start from the
//! oldest open transaction). Every batch checks again that its runs are still finished,
//! in the statement (PostgreSQL also locks the run rows), so a run cleared meanwhile is
//! left alone. On SQLite the freed pages go back to the file system when the file has
//! `auto_vacuum = INCREMENTAL` (new files do; `Store::vacuum` converts an older one).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nightshift_core::state::RunState;
use sqlx::types::Json;

use crate::callbacks::CallbackState;
use crate::runs::RunType;
use crate::{
    id_in_json_list, in_tx, json_list_sql, on_pool, Backend, MaintenanceLease, Store, StoreError,
};

/// Runs taken per batch.
pub const RUNS_PER_BATCH: i64 = 100;
/// Task instances (with their tries and remaining log lines) deleted per transaction.
pub const INSTANCES_PER_TX: i64 = 1_000;
/// Log lines or audit entries deleted per statement.
pub const ROWS_PER_STATEMENT: i64 = 5_000;
/// SQLite pages given back per `incremental_vacuum` statement (8 MiB of 4 KiB pages).
const PAGES_PER_VACUUM: i64 = 2_000;

/// The tables [`Store::clean`] deletes from, in the order its report lists them.
pub const CLEANED_TABLES: &[&str] = &[
    "dag_runs",
    "task_instances",
    "attempts",
    "task_logs",
    "callback_requests",
    "deadline_misses",
    "dag_sources",
    "audit_log",
];

/// What to delete. Each cut-off is compared with when a run ended (its queue time for a
/// finished run without an end), or an audit entry's time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanRequest {
    /// Finished runs that ended before this go, whole. `None`: runs stay.
    pub runs_before: Option<DateTime<Utc>>,
    /// The log lines of finished runs that ended before this go; the runs stay.
    pub logs_before: Option<DateTime<Utc>>,
    /// Audit entries older than this go. `None`: the audit log stays.
    pub audit_before: Option<DateTime<Utc>>,
    /// Only this DAG's runs (and audit entries).
    pub dag_id: Option<String>,
    /// The newest `keep_last` runs of each DAG stay, whatever their age.
    pub keep_last: u32,
    /// Count, delete nothing.
    pub dry_run: bool,
    /// After each batch, rest this many times as long as the batch took (0: no rest), so
    /// a background clean leaves the database to the scheduler and workers most of the
    /// time.
    pub rest_ratio: f64,
    /// A maintenance job held while cleaning: renewed after every batch; the clean stops
    /// with [`StoreError::Stale`] when it was lost.
    pub lease: Option<MaintenanceLease>,
}

/// What a clean deleted, or in a dry run would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CleanReport {
    pub dry_run: bool,
    /// Rows per table (every table of [`CLEANED_TABLES`], zeros included).
    pub deleted: BTreeMap<String, u64>,
    /// SQLite pages given back to the file system (0 on PostgreSQL, in a dry run, or on a
    /// SQLite file without incremental auto-vacuum).
    pub pages_freed: u64,
}

impl CleanReport {
    fn new(dry_run: bool) -> CleanReport {
        CleanReport {
            dry_run,
            deleted: CLEANED_TABLES
                .iter()
                .map(|table| ((*table).to_owned(), 0))
                .collect(),
            pages_freed: 0,
        }
    }

    fn add(&mut self, table: &str, rows: u64) {
        *self.deleted.entry(table.to_owned()).or_default() += rows;
    }

    /// Rows of `table` (0 for a table this clean does not touch).
    pub fn rows(&self, table: &str) -> u64 {
        self.deleted.get(table).copied().unwrap_or(0)
    }
}

/// One run a batch takes.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Candidate {
    id: i64,
    logical_date: DateTime<Utc>,
    definition_hash: String,
}

/// A batch of one DAG's runs, by row id.
struct Batch<'a> {
    dag_id: &'a str,
    ids: Vec<i64>,
}

/// What the runs of a DAG a pass takes must be (besides finished, with no callback to send).
struct Bounds {
    /// Runs at or after this logical date are among the newest `keep_last`.
    keep_from: Option<DateTime<Utc>>,
    /// The newest scheduled run, which catch-up continues from (runs pass only).
    protected: Option<i64>,
}

/// Rests after a batch as [`CleanRequest::rest_ratio`] asks.
async fn rest(ratio: f64, batch_started: Instant) {
    if ratio > 0.0 {
        let pause = batch_started.elapsed().mul_f64(ratio.min(100.0));
        tokio::time::sleep(pause.min(Duration::from_secs(10))).await;
    }
}

fn finished_states() -> Json<Vec<&'static str>> {
    Json(
        RunState::ALL
            .iter()
            .filter(|state| state.is_finished())
            .map(|state| state.as_str())
            .collect(),
    )
}

impl Store {
    /// Deletes (or counts, in a dry run) what `req` asks, in short batches; see the
    /// module's documentation for what always stays.
    pub async fn clean(&self, req: &CleanRequest) -> Result<CleanReport, StoreError> {
        let mut report = CleanReport::new(req.dry_run);
        let dags = self.clean_dag_ids(req.dag_id.as_deref()).await?;
        // Per DAG and definition hash: runs the dry run would delete.
        let mut planned: BTreeMap<(String, String), u64> = BTreeMap::new();
        // In a dry run: the runs counted as deleted, whose log lines the log pass must
        // not count again.
        let mut planned_ids: HashSet<i64> = HashSet::new();
        if let Some(before) = req.runs_before {
            for dag_id in &dags {
                let Some(bounds) = self.bounds(dag_id, req.keep_last, true).await? else {
                    continue;
                };
                let mut after = None;
                loop {
                    let page = self
                        .candidates(dag_id, before, after, &bounds, false)
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.logical_date);
                    for run in &page {
                        *planned
                            .entry((dag_id.clone(), run.definition_hash.clone()))
                            .or_default() += 1;
                    }
                    let batch = Batch {
                        dag_id,
                        ids: page.iter().map(|run| run.id).collect(),
                    };
                    if req.dry_run {
                        planned_ids.extend(&batch.ids);
                    }
                    self.delete_runs(&batch, req, &mut report).await?;
                }
            }
            self.clean_sources(req, &planned, &mut report).await?;
        }
        if let Some(before) = req.logs_before {
            for dag_id in &dags {
                let Some(bounds) = self.bounds(dag_id, req.keep_last, false).await? else {
                    continue;
                };
                let mut after = None;
                loop {
                    let page = self
                        .candidates(dag_id, before, after, &bounds, true)
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.logical_date);
                    let ids: Vec<i64> = page
                        .iter()
                        .map(|run| run.id)
                        .filter(|id| !planned_ids.contains(id))
                        .collect();
                    let rows = self.delete_logs(dag_id, &ids, req).await?;
                    report.add("task_logs", rows);
                }
            }
        }
        if let Some(before) = req.audit_before {
            let rows = self.clean_audit(before, req).await?;
            report.add("audit_log", rows);
        }
        if !req.dry_run {
            report.pages_freed = self.give_back_space(req).await?;
        }
        Ok(report)
    }

    /// The DAGs a clean goes through: `only`, or all of them.
    async fn clean_dag_ids(&self, only: Option<&str>) -> Result<Vec<String>, StoreError> {
        const SQL: &str =
            "SELECT dag_id FROM dags WHERE ($1 IS NULL OR dag_id = $1) ORDER BY dag_id";
        let rows = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(only)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The newest runs of `dag_id` that stay; `None` when the DAG has `keep_last` runs or
    /// fewer, so none of its runs goes.
    async fn bounds(
        &self,
        dag_id: &str,
        keep_last: u32,
        protect_catchup: bool,
    ) -> Result<Option<Bounds>, StoreError> {
        const NTH_SQL: &str = "
            SELECT logical_date FROM dag_runs WHERE dag_id = $1
            ORDER BY logical_date DESC, id DESC LIMIT 1 OFFSET $2";
        // As the scheduler reads it (`create_runs_for`): the DAG's scheduled run with the
        // latest logical date.
        const NEWEST_SCHEDULED_SQL: &str = "
            SELECT id FROM dag_runs WHERE dag_id = $1 AND run_type = $2
            ORDER BY logical_date DESC, id DESC LIMIT 1";
        let keep_from = if keep_last > 0 {
            let nth: Option<DateTime<Utc>> = on_pool!(self, |pool| sqlx::query_scalar(NTH_SQL)
                .bind(dag_id)
                .bind(i64::from(keep_last) - 1)
                .fetch_optional(pool)
                .await)?;
            if nth.is_none() {
                return Ok(None);
            }
            nth
        } else {
            None
        };
        let protected = if protect_catchup {
            on_pool!(self, |pool| sqlx::query_scalar(NEWEST_SCHEDULED_SQL)
                .bind(dag_id)
                .bind(RunType::Scheduled.as_str())
                .fetch_optional(pool)
                .await)?
        } else {
            None
        };
        Ok(Some(Bounds {
            keep_from,
            protected,
        }))
    }

    /// The next [`RUNS_PER_BATCH`] runs of `dag_id` after logical date `after` that a
    /// pass takes, oldest first: finished before `before`, no callback left to send,
    /// within `bounds`; for the log pass (`with_logs`) only runs that still have log lines.
    async fn candidates(
        &self,
        dag_id: &str,
        before: DateTime<Utc>,
        after: Option<DateTime<Utc>>,
        bounds: &Bounds,
        with_logs: bool,
    ) -> Result<Vec<Candidate>, StoreError> {
        let logs = if with_logs {
            "AND EXISTS (SELECT 1 FROM task_instances ti JOIN task_logs l
                         ON l.task_instance = ti.id WHERE ti.run = r.id)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT r.id, r.logical_date, r.definition_hash FROM dag_runs r
             WHERE r.dag_id = $1 AND r.state IN ({finished})
               AND COALESCE(r.end_date, r.queued_at) < $3
               AND ($4 IS NULL OR r.logical_date > $4)
               AND ($5 IS NULL OR r.logical_date < $5)
               AND ($6 IS NULL OR r.id <> $6)
               AND NOT EXISTS (SELECT 1 FROM callback_requests c
                               WHERE c.dag_id = r.dag_id AND c.run_id = r.run_id
                                 AND c.state = $7)
               {logs}
             ORDER BY r.logical_date LIMIT $8",
            finished = json_list_sql(self, "$2"),
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(dag_id)
            .bind(finished_states())
            .bind(before)
            .bind(after)
            .bind(bounds.keep_from)
            .bind(bounds.protected)
            .bind(CallbackState::Pending.as_str())
            .bind(RUNS_PER_BATCH)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// `r.id` of the runs of the JSON list `$1` of DAG `$4` that are still finished (`$2`)
    /// with no callback to send (`$3`): the check every batch repeats in its statements.
    fn still_finished(&self) -> String {
        format!(
            "SELECT r.id FROM dag_runs r
             WHERE {ids} AND r.dag_id = $4 AND r.state IN ({finished})
               AND NOT EXISTS (SELECT 1 FROM callback_requests c
                               WHERE c.dag_id = r.dag_id AND c.run_id = r.run_id
                                 AND c.state = $3)",
            ids = id_in_json_list(self, "r.id", "$1"),
            finished = json_list_sql(self, "$2"),
        )
    }

    /// Deletes one batch of runs whole (or counts what that would delete).
    async fn delete_runs(
        &self,
        batch: &Batch<'_>,
        req: &CleanRequest,
        report: &mut CleanReport,
    ) -> Result<(), StoreError> {
        let runs = self.still_finished();
        let instances = format!("SELECT id FROM task_instances WHERE run IN ({runs})");
        // Each table's rows of the batch, as the dry run counts them and the last
        // transaction deletes them (in this order: the runs last, as the conditions
        // read them).
        let of_batch = [
            ("task_logs", format!("task_instance IN ({instances})")),
            ("attempts", format!("task_instance IN ({instances})")),
            ("task_instances", format!("run IN ({runs})")),
            ("deadline_misses", format!("run IN ({runs})")),
            (
                "callback_requests",
                format!(
                    "dag_id = $4 AND run_id IN (SELECT d.run_id FROM dag_runs d
                                               WHERE d.id IN ({runs}))"
                ),
            ),
            ("dag_runs", format!("id IN ({runs})")),
        ];
        let ids = Json(&batch.ids);
        if req.dry_run {
            for (table, condition) in &of_batch {
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE {condition}");
                let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql)
                    .bind(ids)
                    .bind(finished_states())
                    .bind(CallbackState::Pending.as_str())
                    .bind(batch.dag_id)
                    .fetch_one(pool)
                    .await)?;
                report.add(table, u64::try_from(count).unwrap_or(0));
            }
            return Ok(());
        }
        // Log lines first, a statement at a time; then instances with their tries, a
        // transaction of at most INSTANCES_PER_TX at a time; then the runs.
        let rows = self.delete_logs(batch.dag_id, &batch.ids, req).await?;
        report.add("task_logs", rows);
        // PostgreSQL: the runs' rows stay locked to the end of each transaction, so a
        // clear that would reopen one waits, then finds it gone (and fails as stale).
        let lock = match self.backend {
            Backend::Postgres(_) => " FOR UPDATE",
            Backend::Sqlite(_) => "",
        };
        let held_sql = format!("{runs}{lock}");
        let pick_sql = format!(
            "SELECT id FROM task_instances WHERE {} LIMIT $2",
            id_in_json_list(self, "run", "$1")
        );
        let per_instance = [
            ("task_logs", "task_instance"),
            ("attempts", "task_instance"),
            ("task_instances", "id"),
        ];
        loop {
            let started = Instant::now();
            let deleted: Vec<(&str, u64)> = in_tx!(self, |tx| {
                let held: Vec<i64> = sqlx::query_scalar(&held_sql)
                    .bind(ids)
                    .bind(finished_states())
                    .bind(CallbackState::Pending.as_str())
                    .bind(batch.dag_id)
                    .fetch_all(&mut *tx)
                    .await?;
                let picked: Vec<i64> = sqlx::query_scalar(&pick_sql)
                    .bind(Json(&held))
                    .bind(INSTANCES_PER_TX)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut deleted = Vec::new();
                if !picked.is_empty() {
                    for (table, column) in per_instance {
                        let sql = format!(
                            "DELETE FROM {table} WHERE {}",
                            id_in_json_list(self, column, "$1")
                        );
                        let done = sqlx::query(&sql)
                            .bind(Json(&picked))
                            .execute(&mut *tx)
                            .await?;
                        deleted.push((table, done.rows_affected()));
                    }
                }
                deleted
            });
            if deleted.is_empty() {
                break;
            }
            for (table, rows) in deleted {
                report.add(table, rows);
            }
            self.keep_lease(req).await?;
            rest(req.rest_ratio, started).await;
        }
        let started = Instant::now();
        let deleted: Vec<(&str, u64)> = in_tx!(self, |tx| {
            let held: Vec<i64> = sqlx::query_scalar(&held_sql)
                .bind(ids)
                .bind(finished_states())
                .bind(CallbackState::Pending.as_str())
                .bind(batch.dag_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut deleted = Vec::new();
            for (table, condition) in &of_batch {
                let sql = format!("DELETE FROM {table} WHERE {condition}");
                let done = sqlx::query(&sql)
                    .bind(Json(&held))
                    .bind(finished_states())
                    .bind(CallbackState::Pending.as_str())
                    .bind(batch.dag_id)
                    .execute(&mut *tx)
                    .await?;
                deleted.push((*table, done.rows_affected()));
            }
            deleted
        });
        for (table, rows) in deleted {
            report.add(table, rows);
        }
        self.keep_lease(req).await?;
        rest(req.rest_ratio, started).await;
        Ok(())
    }

    /// Deletes (or counts) the log lines of the runs `ids` of `dag_id` that are still
    /// finished, [`ROWS_PER_STATEMENT`] lines a statement.
    async fn delete_logs(
        &self,
        dag_id: &str,
        ids: &[i64],
        req: &CleanRequest,
    ) -> Result<u64, StoreError> {
        let lines = format!(
            "SELECT l.id FROM task_logs l
             WHERE l.task_instance IN (SELECT id FROM task_instances
                                       WHERE run IN ({}))",
            self.still_finished()
        );
        let ids = Json(ids);
        if req.dry_run {
            let sql = format!("SELECT COUNT(*) FROM ({lines}) AS lines");
            let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql)
                .bind(ids)
                .bind(finished_states())
                .bind(CallbackState::Pending.as_str())
                .bind(dag_id)
                .fetch_one(pool)
                .await)?;
            return Ok(u64::try_from(count).unwrap_or(0));
        }
        let sql = format!("DELETE FROM task_logs WHERE id IN ({lines} LIMIT $5)");
        self.delete_in_batches(req, || async {
            Ok(on_pool!(self, |pool| sqlx::query(&sql)
                .bind(ids)
                .bind(finished_states())
                .bind(CallbackState::Pending.as_str())
                .bind(dag_id)
                .bind(ROWS_PER_STATEMENT)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?)
        })
        .await
    }

    /// Deletes (or counts) the stored DAG file versions that neither the DAG's current
    /// definition nor any remaining run refers to. `planned`: in a dry run, the runs per
    /// DAG and definition hash it counted as deleted.
    async fn clean_sources(
        &self,
        req: &CleanRequest,
        planned: &BTreeMap<(String, String), u64>,
        report: &mut CleanReport,
    ) -> Result<(), StoreError> {
        const NOT_CURRENT: &str = "
            ($1 IS NULL OR dag_sources.dag_id = $1)
            AND NOT EXISTS (SELECT 1 FROM dags d WHERE d.dag_id = dag_sources.dag_id
                            AND d.source_hash = dag_sources.source_hash)";
        if req.dry_run {
            let sql = format!(
                "SELECT dag_id, source_hash,
                        (SELECT COUNT(*) FROM dag_runs r WHERE r.dag_id = dag_sources.dag_id
                                AND r.definition_hash = dag_sources.source_hash) AS runs
                 FROM dag_sources WHERE {NOT_CURRENT}"
            );
            let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(&sql)
                .bind(req.dag_id.as_deref())
                .fetch_all(pool)
                .await)?;
            let unreferenced = rows
                .into_iter()
                .filter(|(dag_id, hash, runs)| {
                    let going = planned
                        .get(&(dag_id.clone(), hash.clone()))
                        .copied()
                        .unwrap_or(0);
                    u64::try_from(*runs).unwrap_or(0) <= going
                })
                .count();
            report.add("dag_sources", unreferenced as u64);
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM dag_sources WHERE {NOT_CURRENT}
               AND NOT EXISTS (SELECT 1 FROM dag_runs r WHERE r.dag_id = dag_sources.dag_id
                               AND r.definition_hash = dag_sources.source_hash)"
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(req.dag_id.as_deref())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        report.add("dag_sources", done);
        Ok(())
    }

    /// Deletes (or counts) audit entries older than `before` ([`CleanRequest::dag_id`]'s
    /// only, when given), [`ROWS_PER_STATEMENT`] a statement.
    async fn clean_audit(
        &self,
        before: DateTime<Utc>,
        req: &CleanRequest,
    ) -> Result<u64, StoreError> {
        const OLD: &str = "ts < $1 AND ($2 IS NULL OR dag_id = $2)";
        let dag_id = req.dag_id.as_deref();
        if req.dry_run {
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE {OLD}");
            let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql)
                .bind(before)
                .bind(dag_id)
                .fetch_one(pool)
                .await)?;
            return Ok(u64::try_from(count).unwrap_or(0));
        }
        let sql = format!(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE {OLD}
                                               ORDER BY id LIMIT $3)"
        );
        self.delete_in_batches(req, || async {
            Ok(on_pool!(self, |pool| sqlx::query(&sql)
                .bind(before)
                .bind(dag_id)
                .bind(ROWS_PER_STATEMENT)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?)
        })
        .await
    }

    /// Runs `batch` (one bounded DELETE answering the rows it deleted) until it deletes
    /// nothing, renewing the lease and resting between batches; returns the rows in all.
    async fn delete_in_batches<F, Fut>(
        &self,
        req: &CleanRequest,
        mut batch: F,
    ) -> Result<u64, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<u64, StoreError>>,
    {
        let mut total = 0;
        loop {
            let started = Instant::now();
            let done = batch().await?;
            total += done;
            if done == 0 {
                return Ok(total);
            }
            self.keep_lease(req).await?;
            rest(req.rest_ratio, started).await;
        }
    }

    /// Renews the clean's maintenance lease, if it holds one.
    async fn keep_lease(&self, req: &CleanRequest) -> Result<(), StoreError> {
        match &req.lease {
            Some(lease) => self.renew_maintenance(lease).await,
            None => Ok(()),
        }
    }

    /// SQLite with `auto_vacuum = INCREMENTAL`: gives the free pages back to the file
    /// system, [`PAGES_PER_VACUUM`] a statement; returns how many. Nothing elsewhere
    /// (PostgreSQL's autovacuum makes the space reusable).
    async fn give_back_space(&self, req: &CleanRequest) -> Result<u64, StoreError> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Ok(0);
        };
        if self.sqlite_auto_vacuum().await? != Some(SQLITE_INCREMENTAL) {
            return Ok(0);
        }
        let vacuum = format!("PRAGMA incremental_vacuum({PAGES_PER_VACUUM})");
        let mut freed = 0;
        loop {
            let started = Instant::now();
            let before: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                .fetch_one(pool)
                .await?;
            if before == 0 {
                break;
            }
            sqlx::query(&vacuum).execute(pool).await?;
            let after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                .fetch_one(pool)
                .await?;
            if after >= before {
                break;
            }
            freed += u64::try_from(before - after).unwrap_or(0);
            self.keep_lease(req).await?;
            rest(req.rest_ratio, started).await;
        }
        Ok(freed)
    }

    /// SQLite's `auto_vacuum` mode (0 none, 1 full, 2 incremental); `None` on PostgreSQL.
    pub async fn sqlite_auto_vacuum(&self) -> Result<Option<i64>, StoreError> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Ok(None);
        };
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(pool)
            .await?;
        Ok(Some(mode))
    }

    /// Rewrites the database to give all free space back: on SQLite a full `VACUUM`,
    /// which also switches a file made before incremental auto-vacuum over to it (it
    /// needs as much free disk as the file and blocks every writer while it runs); on
    /// PostgreSQL `VACUUM (ANALYZE)` of the tables a clean deletes from (space becomes
    /// reusable; only `VACUUM FULL`, not run here, shrinks files).
    pub async fn vacuum(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                // The mode a VACUUM applies is set on its connection.
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("VACUUM").execute(&mut *conn).await?;
            }
            Backend::Postgres(pool) => {
                let sql = format!("VACUUM (ANALYZE) {}", CLEANED_TABLES.join(", "));
                sqlx::query(&sql).execute(pool).await?;
            }
        }
        Ok(())
    }
}

/// SQLite's `auto_vacuum` value for INCREMENTAL.
pub const SQLITE_INCREMENTAL: i64 = 2;
