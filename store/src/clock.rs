//! The database's clock, for leases: a lease's end is written as the database's `now`
//! plus the lease and compared with the database's `now`, inside the statement, so the
//! clocks of worker and scheduler machines (which may run minutes apart) never meet.
//!
//! PostgreSQL uses `now()` (the transaction's start, microseconds). SQLite uses its own
//! clock with millisecond precision, written as RFC 3339 text in UTC
//! (`2026-01-02T03:04:05.678+00:00`) — the shape sqlx gives a `DateTime<Utc>`, so stored
//! values from either writer compare as text in time order and decode alike.

use std::time::Duration;

use crate::{on_pool, Backend, Store};

/// The SQLite text of the current time, or of the current time moved by a modifier.
const SQLITE_FORMAT: &str = "'%Y-%m-%dT%H:%M:%f+00:00'";

/// SQL for the database's current time.
pub(crate) fn db_now(store: &Store) -> String {
    match store.backend {
        Backend::Postgres(_) => "now()".to_owned(),
        Backend::Sqlite(_) => format!("strftime({SQLITE_FORMAT}, 'now')"),
    }
}

/// SQL for the database's current time plus the lease bound to `param` (in milliseconds,
/// see [`lease_millis`]).
pub(crate) fn db_now_plus(store: &Store, param: &str) -> String {
    match store.backend {
        Backend::Postgres(_) => format!("(now() + {param}::float8 * interval '1 millisecond')"),
        Backend::Sqlite(_) => {
            format!("strftime({SQLITE_FORMAT}, 'now', printf('%.3f seconds', {param} / 1000.0))")
        }
    }
}

/// A lease as the milliseconds [`db_now_plus`] adds; an absurdly long one saturates at
/// about a hundred years, which both backends can still represent.
pub(crate) fn lease_millis(lease: Duration) -> i64 {
    const CENTURY_MS: u128 = 100 * 366 * 24 * 3600 * 1000;
    i64::try_from(lease.as_millis().min(CENTURY_MS)).unwrap_or(i64::MAX)
}

impl Store {
    /// The database's current time: the clock leases are written and compared in.
    /// (Outside the lease statements themselves, for tests and diagnostics.)
    pub async fn database_time(&self) -> Result<chrono::DateTime<chrono::Utc>, crate::StoreError> {
        let sql = format!("SELECT {}", db_now(self));
        let now: chrono::DateTime<chrono::Utc> =
            on_pool!(self, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await)?;
        Ok(now)
    }
}
