//! Background retention: the scheduler applies `history_retention`, `log_retention` and
//! `audit_retention` with the same [`Store::clean`] as `nightshift db clean`, off the
//! tick (a spawned task, like the callback sender), resting between batches. Several
//! schedulers on one database share the `retention` maintenance job: the one that takes
//! its lease runs the pass; the others skip it until it is due again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_store::{CleanReport, CleanRequest, MaintenanceLease, Store, StoreError};

/// The maintenance job's name.
pub const RETENTION_JOB: &str = "retention";

/// How long a pass holds the job without renewing it (it renews after every batch); a
/// scheduler that dies mid-pass leaves it to the others after this.
const RETENTION_LEASE: Duration = Duration::from_secs(300);

/// What the scheduler deletes in the background, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// Finished runs older than this go, whole (`history_retention`).
    pub history: Option<Duration>,
    /// Log lines of finished runs older than this go (`log_retention`).
    pub logs: Option<Duration>,
    /// Audit entries older than this go (`audit_retention`).
    pub audit: Option<Duration>,
    /// How often a pass runs, counted from the end of the last one on this database.
    pub every: Duration,
    /// After each batch, rest this many times as long as the batch took.
    pub rest_ratio: f64,
}

impl Default for RetentionConfig {
    /// Everything kept; a pass every 10 minutes once something is set.
    fn default() -> RetentionConfig {
        RetentionConfig {
            history: None,
            logs: None,
            audit: None,
            every: Duration::from_secs(600),
            rest_ratio: 1.0,
        }
    }
}

impl RetentionConfig {
    /// Whether anything is ever deleted.
    pub fn is_on(&self) -> bool {
        self.history.is_some() || self.logs.is_some() || self.audit.is_some()
    }

    /// The clean of a pass at `now` holding `lease`.
    pub fn request(&self, now: DateTime<Utc>, lease: Option<MaintenanceLease>) -> CleanRequest {
        let before = |age: Option<Duration>| {
            age.and_then(|age| chrono::TimeDelta::from_std(age).ok())
                .and_then(|age| now.checked_sub_signed(age))
        };
        CleanRequest {
            runs_before: before(self.history),
            logs_before: before(self.logs),
            audit_before: before(self.audit),
            rest_ratio: self.rest_ratio,
            lease,
            ..CleanRequest::default()
        }
    }
}

/// One background pass by scheduler `owner` at `now`, if the job is due and nobody else
/// holds it; `None` otherwise. A pass that fails leaves the lease to expire.
pub async fn retention_pass(
    store: &Store,
    config: &RetentionConfig,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Option<CleanReport>, StoreError> {
    if !config.is_on() {
        return Ok(None);
    }
    let lease = MaintenanceLease {
        job: RETENTION_JOB.to_owned(),
        owner: owner.to_owned(),
        lease: RETENTION_LEASE,
    };
    if !store.take_maintenance(&lease, config.every).await? {
        return Ok(None);
    }
    let report = store
        .clean(&config.request(now, Some(lease.clone())))
        .await?;
    store.finish_maintenance(&lease).await?;
    Ok(Some(report))
}
