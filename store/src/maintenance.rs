//! Background maintenance jobs shared by several schedulers (`maintenance`, one row per
//! job, e.g. `retention`): a scheduler takes a job when its last pass finished at least
//! an interval ago and nobody holds it, renews the lease while it works and records the
//! pass's end. Leases are in the database's clock (`clock`), as run leases are.

use std::time::Duration;

use crate::clock::{db_now, db_now_plus, lease_millis};
use crate::{on_pool, Store, StoreError};

/// A scheduler's hold on one maintenance job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceLease {
    /// The job: `retention`.
    pub job: String,
    /// The scheduler's id.
    pub owner: String,
    /// How long the hold lasts without a renewal.
    pub lease: Duration,
}

impl Store {
    /// Takes `lease.job` for `lease.owner` if nobody holds it (or the holder's lease
    /// expired) and its last pass finished at least `every` ago (or never ran); true when
    /// taken. Of several schedulers asking at once, one gets it.
    pub async fn take_maintenance(
        &self,
        lease: &MaintenanceLease,
        every: Duration,
    ) -> Result<bool, StoreError> {
        const CREATE: &str = "INSERT INTO maintenance (name) VALUES ($1) ON CONFLICT DO NOTHING";
        // `$3` is the lease; `$4` minus the interval: the last pass must have ended before
        // `now - every`.
        let sql = format!(
            "UPDATE maintenance SET owner = $2, lease_expires_at = {until}
             WHERE name = $1
               AND (owner IS NULL OR owner = $2 OR lease_expires_at < {now})
               AND (last_finished_at IS NULL OR last_finished_at <= {since})",
            until = db_now_plus(self, "$3"),
            now = db_now(self),
            since = db_now_plus(self, "$4"),
        );
        let taken = on_pool!(self, |pool| {
            sqlx::query(CREATE).bind(&lease.job).execute(pool).await?;
            sqlx::query(&sql)
                .bind(&lease.job)
                .bind(&lease.owner)
                .bind(lease_millis(lease.lease))
                .bind(-lease_millis(every))
                .execute(pool)
                .await
                .map(|done| done.rows_affected() == 1)
        })?;
        Ok(taken)
    }

    /// Extends a held lease by `lease.lease` from now; [`StoreError::Stale`] when this
    /// owner no longer holds the job (its lease expired and another scheduler took it).
    pub async fn renew_maintenance(&self, lease: &MaintenanceLease) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE maintenance SET lease_expires_at = {}
             WHERE name = $1 AND owner = $2",
            db_now_plus(self, "$3")
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&lease.job)
            .bind(&lease.owner)
            .bind(lease_millis(lease.lease))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 1 {
            Ok(())
        } else {
            Err(lost(lease))
        }
    }

    /// Ends a pass: the job is free again, and its next pass is due `every` from now.
    pub async fn finish_maintenance(&self, lease: &MaintenanceLease) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE maintenance SET owner = NULL, lease_expires_at = NULL,
                                   last_finished_at = {}
             WHERE name = $1 AND owner = $2",
            db_now(self)
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&lease.job)
            .bind(&lease.owner)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 1 {
            Ok(())
        } else {
            Err(lost(lease))
        }
    }
}

fn lost(lease: &MaintenanceLease) -> StoreError {
    StoreError::Stale {
        what: "maintenance job",
        id: lease.job.clone(),
        expected: format!("held by {}", lease.owner),
    }
}
