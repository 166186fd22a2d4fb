//! External jobs: this installation's id (part of every deterministic job name and client
//! token), and the queue of jobs to stop.
//!
//! A try that owns an external job (an ECS task, an Athena query, a Redshift statement,
//! a BigQuery job) stores its id on the instance at once (`RunningTry::set_external_id`,
//! with the kind that owns it). When the instance's state then moves to one where no try
//! runs any more while it still holds the id — reaped with no retries left, its run
//! cancelled or timed out, marked or cleared by a person — nobody accounted for the job.
//! A trigger (migration 0020, one place for every path that writes a state) moves it to
//! `external_stops` and clears the instance's id; workers drain the queue through each
//! kind's cancel API ([`Store::claim_external_stops`], [`Store::finish_external_stop`]) and
//! record what happened in the try's log. A worker that records its try's outcome clears
//! the id in the same statement, so its job is never queued.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::{db_now, db_now_plus, lease_millis};
use crate::{impl_from_row, in_tx, on_pool, Backend, Store, StoreError};

/// A given-up try's external job that is to be stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalStop {
    pub id: i64,
    pub ti_id: i64,
    pub try_number: i32,
    /// The task kind that owns the job (`ecs`, `athena`, …; empty if unknown).
    pub kind: String,
    pub external_id: String,
    /// Why the try was given up (the state change that did it).
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// How many times a worker took it (including this one, for a claimed row).
    pub claims: i32,
    /// When it was settled (stopped, found finished, or given up on).
    pub done_at: Option<DateTime<Utc>>,
    /// What the last attempt to stop it said.
    pub result: Option<String>,
}

impl_from_row!(ExternalStop, |row| ExternalStop {
    id: row.try_get("id")?,
    ti_id: row.try_get("task_instance")?,
    try_number: row.try_get("try_number")?,
    kind: row.try_get("kind")?,
    external_id: row.try_get("external_id")?,
    reason: row.try_get("reason")?,
    created_at: row.try_get("created_at")?,
    claims: row.try_get("claims")?,
    done_at: row.try_get("done_at")?,
    result: row.try_get("result")?,
});

impl Store {
    /// This installation's id: generated once, by the migration that created it.
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        const SQL: &str = "SELECT installation_id FROM installation";
        let id: String = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await)?;
        Ok(id)
    }

    /// Takes up to `limit` unsettled stops that nobody holds (or whose holder's `lease`
    /// ran out, in the database's clock), oldest first, for `lease`.
    pub async fn claim_external_stops(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ExternalStop>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE external_stops SET claimed_until = {until}, claims = claims + 1
             WHERE id IN (
                 SELECT id FROM external_stops
                 WHERE done_at IS NULL AND (claimed_until IS NULL OR claimed_until < {now})
                 ORDER BY id LIMIT $2 {lock})
             RETURNING *",
            until = db_now_plus(self, "$1"),
            now = db_now(self),
        );
        let mut rows: Vec<ExternalStop> = in_tx!(self, |tx| sqlx::query_as(&sql)
            .bind(lease_millis(lease))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?);
        rows.sort_by_key(|s| s.id);
        Ok(rows)
    }

    /// Records what stopping `id` gave; `settled` ends it (stopped, already finished, or
    /// given up on), otherwise another claim tries again once this one's lease ran out.
    pub async fn finish_external_stop(
        &self,
        id: i64,
        result: &str,
        settled: bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE external_stops SET result = $2,
                 done_at = CASE WHEN $3 THEN {now} ELSE NULL END
             WHERE id = $1",
            now = db_now(self)
        );
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(id)
            .bind(result)
            .bind(settled)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Every stop queued for instance `ti_id`, oldest first (for tests and diagnostics).
    pub async fn external_stops(&self, ti_id: i64) -> Result<Vec<ExternalStop>, StoreError> {
        const SQL: &str = "SELECT * FROM external_stops WHERE task_instance = $1 ORDER BY id";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(ti_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}
