//! nightshift's storage: every SQL statement, PostgreSQL and SQLite behind one [`Store`].
//!
//! Modules are named after what they store: `instances` (task instances: reads,
//! transitions, mark and clear, queueing and fan-out), `attempts` (a try: claim, lease,
//! finish, hand-back, reap), `runs`, `dags`, `logs`, `callbacks`, `pools`, `auth`
//! (users, sessions, tokens, web keys), `audit`, `components`, and `history` (the UI's
//! aggregate reads).
//!
//! Queries are runtime-checked sqlx statements over the concrete pools; one SQL text runs
//! on both backends wherever possible (the body of `on_pool!` or `in_tx!` is compiled
//! once per backend), and where PostgreSQL and SQLite need different SQL both texts sit
//! side by side in one function. A short fixed statement is a `const` with `$n`
//! parameters; a statement with many columns or optional parts is a
//! [`sqlx::QueryBuilder`] that pushes each value beside its column (`push_bind`), built
//! by a small generic function (`insert_run`, `transition_statement`, …) and run by the
//! caller on its pool or transaction. Every state change of a task instance or DAG run is
//! one compare-and-set whose new state `TaskState::on`/`RunState::on` decided; a lost
//! race is [`StoreError::Stale`], never silently ignored.
//!
//! Tests run every case on both backends; the PostgreSQL half needs
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres` (see `store/README.md`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

mod attempts;
mod audit;
mod auth;
mod callbacks;
mod clock;
mod components;
mod dags;
mod deadlines;
mod error;
mod external;
mod history;
mod instances;
mod logs;
mod maintenance;
mod pools;
mod retention;
mod runs;
mod wake;

pub(crate) use attempts::LeaseKey;
pub use attempts::{
    Attempt, ClaimRequest, FinishError, Reap, RunningTry, TryLease, TryOutcome, HANDED_BACK,
};
pub use audit::{AuditEntry, AuditFilter, AuditRecord};
pub use auth::{ApiToken, NewApiToken, NewSession, NewUser, Revoked, Role, SessionUser, User};
pub use callbacks::{
    CallbackClaim, CallbackEvent, CallbackFailure, CallbackKind, CallbackRequest, CallbackState,
    NewCallback,
};
pub use components::{Component, ComponentHeartbeat, ComponentKind};
pub use dags::{
    DagFilter, DagHead, DagRecord, DagSource, DagUpsert, DagVersion, ImportError, NewDagVersion,
};
pub use deadlines::{DeadlineMiss, NewDeadlineMiss, TaskProgress};
pub use error::{StoreError, UnknownName};
pub use external::ExternalStop;
pub use history::{
    DagOverview, DagOverviewFilter, DbPoolStats, GridCell, PoolUsage, QueueDepth, RunOutcome,
    StateCount, TryPoint, ACTIVE_TASK_STATES,
};
pub use instances::{
    instance_views, new_task_instances, ApprovalDecision, ChangeMark, ClearPlan, ExpandMapped,
    InstanceChanges, MarkPlan, MarkRequest, NewTaskInstance, Patch, PlannedChange, QueueRequest,
    TaskInstance, TaskInstanceQuery, Transition,
};
pub use logs::{LogLine, LogRow, TryProgress};
pub use maintenance::MaintenanceLease;
pub use pools::Pool;
pub use retention::{
    CleanReport, CleanRequest, CLEANED_TABLES, INSTANCES_PER_TX, ROWS_PER_STATEMENT,
    RUNS_PER_BATCH, SQLITE_INCREMENTAL,
};
pub use runs::{
    manual_data_interval, scheduled_data_interval, DagRun, FinishRun, NewRun, RunClaim, RunFilter,
    RunQuery, RunType, StartRuns, TriggerParams,
};
pub use wake::{Wake, Wakeups, CHANNEL as WAKE_CHANNEL};

/// The one pool every task uses unless it names another; it cannot be deleted.
pub const DEFAULT_POOL: &str = "default_pool";

/// How long a SQLite connection waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database behind nightshift: cheap to clone (it holds a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    wakeups: std::sync::Arc<Wakeups>,
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend. The body is
/// compiled once per backend, so one SQL text serves both.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Postgres($pool) => $body,
            $crate::Backend::Sqlite($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx` and commits it; an early
/// return (`?`) drops the transaction, which rolls it back. SQLite transactions start
/// with `BEGIN IMMEDIATE` so that two writers never deadlock upgrading a read lock.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::Backend::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Like [`in_tx!`], for writes whose loss in a PostgreSQL crash costs nothing that
/// matters (log lines, a try's rendered fields): the commit does not wait for the WAL
/// flush (`synchronous_commit = off`, this transaction only). They are never lost to a
/// process crash, and the try's outcome, written later with a normal commit, flushes
/// them with it.
macro_rules! in_async_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *$tx)
                    .await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::Backend::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Implements `sqlx::FromRow` for both backends' rows with one body.
macro_rules! impl_from_row {
    ($ty:ty, |$row:ident| $body:expr) => {
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $ty {
            fn from_row($row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($body)
            }
        }
        impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for $ty {
            fn from_row($row: &'r sqlx::sqlite::SqliteRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($body)
            }
        }
    };
}

/// A small enum stored as text: `as_str`, `FromStr` (error [`UnknownName`]), `Display`,
/// serde in snake_case.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident as $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

pub(crate) use {impl_from_row, in_async_tx, in_tx, on_pool, text_enum};

impl Store {
    /// Connects to `postgres://…` (or `postgresql://…`), or to a SQLite file given as
    /// `sqlite://path` or `sqlite:path`, which is created if missing (with `auto_vacuum = INCREMENTAL`) and
    /// opened in WAL mode with a 5 s busy timeout, foreign keys on and `synchronous = NORMAL`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            Ok(Store::from_pg_pool(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // A new file gives space back after a clean (`Store::clean`); on an
                // existing file without it this changes nothing until `Store::vacuum`.
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal);
            // Opening sets WAL mode, which needs the file's lock for a moment: a process
            // started while another one migrates or loads DAGs into the same file can
            // find it busy past the busy timeout on a loaded machine. That is transient,
            // so wait for it (ten tries over about a minute) instead of exiting.
            let mut attempt = 0u32;
            let pool = loop {
                match SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options.clone())
                    .await
                {
                    Ok(pool) => break pool,
                    Err(err) if is_sqlite_busy(&err) && attempt < 10 => {
                        attempt += 1;
                        tracing::info!(error = %err, attempt, "SQLite file busy; retrying");
                        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            Ok(Store::from_sqlite_pool(pool))
        } else {
            // Only the scheme: the rest of a URL may hold a password.
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_owned(),
            })
        }
    }

    /// A store over an existing PostgreSQL pool (tests use the one `#[sqlx::test]` gives).
    pub fn from_pg_pool(pool: PgPool) -> Store {
        Store {
            backend: Backend::Postgres(pool),
            wakeups: Default::default(),
        }
    }

    /// A store over an existing SQLite pool. The pool's connections should have foreign
    /// keys on and a busy timeout, as [`Store::connect`] sets them.
    pub fn from_sqlite_pool(pool: SqlitePool) -> Store {
        Store {
            backend: Backend::Sqlite(pool),
            wakeups: Default::default(),
        }
    }

    /// Applies the embedded migrations of this backend that are not applied yet.
    ///
    /// PostgreSQL serialises concurrent migrators with an advisory lock. SQLite has none:
    /// when several processes start on one file at once, the losers of the race see the
    /// winner's tables; they retry (each migration runs in its own transaction, so a
    /// failed one left nothing behind) and then find everything applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
            Backend::Sqlite(pool) => {
                let mut attempt = 0;
                loop {
                    let result = sqlx::migrate!("../migrations/sqlite").run(pool).await;
                    attempt += 1;
                    if result.is_ok() || attempt >= 10 {
                        break result;
                    }
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
            }
        };
        result.map_err(|source| StoreError::Migrate {
            backend: self.backend_name(),
            source,
        })
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY wake-ups; `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// The SQLite pool; `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Postgres(_) => None,
            Backend::Sqlite(pool) => Some(pool),
        }
    }

    /// One round trip to the database (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool: waits for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// Decodes a text column into one of our enums, reporting the column on failure.
pub(crate) fn parse_col<T>(value: String, column: &str) -> Result<T, sqlx::Error>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .parse()
        .map_err(|err: T::Err| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(err),
        })
}

/// SQLITE_BUSY or SQLITE_LOCKED (primary codes 5 and 6): another connection holds the
/// lock this one needs.
fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// A JSON array parameter for `IN (<list>)` on either backend: PostgreSQL expands it with
/// `jsonb_array_elements_text`, SQLite with `json_each`.
pub(crate) fn json_list_sql(store: &Store, param: &str) -> String {
    match store.backend {
        Backend::Postgres(_) => format!("SELECT jsonb_array_elements_text({param})"),
        Backend::Sqlite(_) => format!("SELECT value FROM json_each({param})"),
    }
}

/// `{column} IN` the JSON list of integer ids bound to `param`. On PostgreSQL an
/// `= ANY(ARRAY(…))`: the array is built once and the ids are looked up in the index,
/// where an `IN (SELECT jsonb_array_elements_text(…))` may be planned as a scan of the
/// whole table joined to the list.
pub(crate) fn id_in_json_list(store: &Store, column: &str, param: &str) -> String {
    match store.backend {
        Backend::Postgres(_) => {
            format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text({param})::bigint))")
        }
        Backend::Sqlite(_) => format!("{column} IN (SELECT value FROM json_each({param}))"),
    }
}

/// `now + duration`, saturating at the largest representable time.
pub(crate) fn add_duration(
    now: chrono::DateTime<chrono::Utc>,
    duration: Duration,
) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
