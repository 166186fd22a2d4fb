//! The store's errors: what a caller must tell apart (a lost race, a missing row, a
//! conflicting write) and the database's own failures.

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set found no row in the expected state: another writer got there
    /// first (a newer try, a reaper, a person). The caller's view is out of date.
    #[error("stale write: {what} {id} is no longer {expected}")]
    Stale {
        what: &'static str,
        id: String,
        expected: String,
    },
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// The write contradicts what is stored (a duplicate name, a protected row).
    #[error("{what} {key:?}: {reason}")]
    Conflict {
        what: &'static str,
        key: String,
        reason: String,
    },
    /// A request the store refuses on its face (a conf that is not an object, …).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The state machine does not allow what was asked (e.g. clearing a pending task).
    #[error(transparent)]
    IllegalTransition(#[from] nightshift_core::state::IllegalTransition),
    /// The run state machine does not allow what was asked (e.g. finishing a queued run).
    #[error(transparent)]
    IllegalRunTransition(#[from] nightshift_core::state::IllegalRunTransition),
    #[error("unsupported database URL scheme {scheme:?}: expected postgres://… or sqlite:…")]
    UnsupportedUrl { scheme: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the {backend} database: {source}")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl StoreError {
    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> StoreError {
        StoreError::NotFound {
            what,
            key: key.to_string(),
        }
    }

    /// Turns a unique-constraint violation into [`StoreError::Conflict`]; other errors pass.
    pub(crate) fn conflict_on_unique(
        err: sqlx::Error,
        what: &'static str,
        key: impl ToString,
        reason: &str,
    ) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
                what,
                key: key.to_string(),
                reason: reason.to_owned(),
            },
            _ => StoreError::Database(err),
        }
    }

    /// True for [`StoreError::Stale`].
    pub fn is_stale(&self) -> bool {
        matches!(self, StoreError::Stale { .. })
    }
}

/// A stored name that is not one of a store enum's values (run type, role, component kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}
