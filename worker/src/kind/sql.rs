//! The `sql` kind: runs a script on a PostgreSQL, MySQL/MariaDB or SQLite connection.
//!
//! One connection per try (opened here, closed at the end). The script is split into
//! statements ([`script::split`]); `:name` parameters become bound placeholders, never
//! text. Each statement's rows affected go to the log; the first rows of the last query
//! (at most [`MAX_OUTPUT_ROWS`] and [`MAX_OUTPUT_BYTES`]) become the try's output. On
//! timeout or cancel the running statement is cancelled on the server
//! (`pg_cancel_backend`, `KILL QUERY`) before the connection is dropped.

pub mod script;

use std::pin::pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nightshift_core::connection::{Connection, ConnectionKind};
use nightshift_core::dag::SqlTask;
use nightshift_core::mask::mask_then_shorten;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgRow, PgValueFormat};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column as _, ConnectOptions as _, Connection as _, Either, Executor as _, Row as _};
use sqlx::{Statement as _, TypeInfo as _, ValueRef as _};

use super::{Outcome, TaskContext};
pub use script::Dialect;
use script::{Bound, Statement};

/// Rows of the last query kept as the output.
pub const MAX_OUTPUT_ROWS: usize = 100;
/// Bytes (as JSON) of the rows kept as the output.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// How long cancelling a running statement may take before the connection is dropped.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Characters of a statement shown in the log line that announces it.
const PREVIEW_CHARS: usize = 200;

/// A rendered `sql` task and its connection (resolved by the worker before the try runs).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlSpec {
    pub task: SqlTask,
    pub connection: Option<Connection>,
}

impl SqlSpec {
    /// A spec whose connection is not resolved yet.
    pub fn new(task: SqlTask) -> SqlSpec {
        SqlSpec {
            task,
            connection: None,
        }
    }
}

/// The dialect of a database connection; `None` for a connection that is no database.
pub fn dialect(kind: &ConnectionKind) -> Option<Dialect> {
    match kind {
        ConnectionKind::Postgres => Some(Dialect::Postgres),
        ConnectionKind::Mysql => Some(Dialect::Mysql),
        ConnectionKind::Sqlite => Some(Dialect::Sqlite),
        _ => None,
    }
}

/// A script ready to run: its statements with their parameters found and checked.
#[derive(Debug)]
pub(crate) struct Script {
    pub statements: Vec<(Statement, Bound)>,
}

/// Why a `sql` task's script cannot run; fatal, since the same script fails the same way
/// on every try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("connection {connection:?} is not resolved")]
    Unresolved { connection: String },
    #[error(
        "connection {connection:?} is a {kind} connection; sql needs postgres, mysql or sqlite"
    )]
    NotADatabase {
        connection: String,
        kind: ConnectionKind,
    },
    #[error("the task's sql_file was not read when the DAG was loaded")]
    FileNotRead,
    #[error("the SQL holds no statement")]
    Empty,
    /// A statement uses `:missing`, which the task's `parameters` do not define.
    #[error(
        "statement {number} of {count} (line {line}) uses :{missing}, which `parameters` does not define (defined: {})",
        if defined.is_empty() { "none".to_owned() } else { defined.join(", ") }
    )]
    UndefinedParameter {
        /// 1-based.
        number: usize,
        count: usize,
        /// The statement's first line in the script.
        line: usize,
        missing: String,
        defined: Vec<String>,
    },
}

/// Why a `sql` task's statements did not all run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("cannot connect to {connection}: {source}")]
    Connect {
        connection: String,
        source: ConnectError,
    },
    #[error("cannot start the transaction: {}", error_text(.0))]
    Begin(sqlx::Error),
    /// A statement failed; `message` is the database's, with its SQLSTATE and the
    /// script line when the database names a position.
    #[error("statement {number} of {count} (line {line}) failed: {message}")]
    Statement {
        /// 1-based.
        number: usize,
        count: usize,
        line: usize,
        message: String,
    },
    #[error("cannot commit the transaction: {}", error_text(.0))]
    Commit(sqlx::Error),
}

/// Why the running statement could not be cancelled from another connection.
#[derive(Debug, thiserror::Error)]
#[error("{}", error_text(.0))]
pub struct CancelError(sqlx::Error);

/// Why `nightshift connections test` could not get an answer from a database.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", error_text(.0))]
    Query(sqlx::Error),
}

impl Script {
    /// Splits `task`'s text for `connection` and checks that every `:name` is a parameter.
    /// The error is fatal: the same script fails the same way on every try.
    pub fn prepare(
        task: &SqlTask,
        connection: Option<&Connection>,
    ) -> Result<(Script, Connection), ScriptError> {
        let connection = connection.ok_or_else(|| ScriptError::Unresolved {
            connection: task.connection.clone(),
        })?;
        let dialect = dialect(&connection.kind).ok_or_else(|| ScriptError::NotADatabase {
            connection: connection.name.clone(),
            kind: connection.kind.clone(),
        })?;
        let text = task.source.text().ok_or(ScriptError::FileNotRead)?;
        let statements = script::split(text, dialect);
        if statements.is_empty() {
            return Err(ScriptError::Empty);
        }
        let count = statements.len();
        let mut out = Vec::with_capacity(count);
        for (k, statement) in statements.into_iter().enumerate() {
            let bound = script::bind(&statement.text, dialect);
            if let Some(missing) = bound
                .names
                .iter()
                .find(|n| !task.parameters.contains_key(*n))
            {
                return Err(ScriptError::UndefinedParameter {
                    number: k + 1,
                    count,
                    line: statement.line,
                    missing: missing.clone(),
                    defined: task.parameters.keys().cloned().collect(),
                });
            }
            out.push((statement, bound));
        }
        Ok((Script { statements: out }, connection.clone()))
    }
}

/// Runs one try of a `sql` task.
pub async fn run(spec: &SqlSpec, ctx: &TaskContext) -> Outcome {
    let mut interrupted = pin!(ctx.interrupted());
    let (script, connection) = match Script::prepare(&spec.task, spec.connection.as_ref()) {
        Ok(ready) => ready,
        Err(err) => return Outcome::fatal(err.to_string()),
    };
    ctx.system(format!(
        "connecting to {} ({})",
        connection.name,
        connection.display_uri()
    ));
    let mut db = tokio::select! {
        db = Db::connect(&connection) => match db {
            Ok(db) => db,
            Err(e) => {
                return Outcome::retryable(format!("cannot connect to {}: {e}", connection.name))
            }
        },
        why = &mut interrupted => return why.outcome(),
    };
    let canceller = db.canceller(&connection).await;
    let result = tokio::select! {
        result = run_script(&mut db, &script, &spec.task, ctx) => result,
        why = &mut interrupted => {
            ctx.system(format!("{why}: cancelling the running statement"));
            match tokio::time::timeout(CANCEL_WAIT, canceller.cancel()).await {
                Ok(Ok(())) => ctx.system("statement cancelled"),
                Ok(Err(e)) => ctx.system(format!("cannot cancel the statement: {e}")),
                Err(_) => ctx.system("cancelling the statement took too long; dropping the connection"),
            }
            return why.outcome();
        }
    };
    db.close().await;
    match result {
        Ok(output) => Outcome::Success { output },
        Err(err) => {
            let message = err.to_string();
            ctx.system(message.clone());
            Outcome::retryable(message)
        }
    }
}

/// Runs every statement; the output is the rows of the last query.
async fn run_script(
    db: &mut Db,
    script: &Script,
    task: &SqlTask,
    ctx: &TaskContext,
) -> Result<Option<Value>, RunError> {
    let count = script.statements.len();
    if task.transaction {
        db.plain("BEGIN").await.map_err(RunError::Begin)?;
        ctx.system("transaction started");
    }
    let mut output = None;
    for (k, (statement, bound)) in script.statements.iter().enumerate() {
        let at = format!("statement {} of {count} (line {})", k + 1, statement.line);
        ctx.system(format!(
            "{at}: {}",
            preview(
                &statement.text,
                &crate::connections::refs(&ctx.log.secrets())
            )
        ));
        let started = Instant::now();
        match db.execute(statement, bound, &task.parameters).await {
            Ok(result) => {
                let took = humantime::format_duration(Duration::from_millis(
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ));
                if result.is_query {
                    ctx.system(format!(
                        "{at}: {} rows returned in {took}",
                        result.row_count
                    ));
                    if result.row_count > result.rows.len() as u64 {
                        ctx.system(format!(
                            "output keeps the first {} of {} rows",
                            result.rows.len(),
                            result.row_count
                        ));
                    }
                    output = Some(Value::Array(result.rows));
                } else {
                    ctx.system(format!(
                        "{at}: {} rows affected in {took}",
                        result.rows_affected
                    ));
                }
            }
            Err(e) => {
                let failed = RunError::Statement {
                    number: k + 1,
                    count,
                    line: statement.line,
                    message: db_error(&e, statement),
                };
                if task.transaction {
                    match db.plain("ROLLBACK").await {
                        Ok(()) => ctx.system("transaction rolled back"),
                        Err(e) => ctx.system(format!(
                            "cannot roll the transaction back: {}",
                            error_text(&e)
                        )),
                    }
                }
                return Err(failed);
            }
        }
    }
    if task.transaction {
        db.plain("COMMIT").await.map_err(RunError::Commit)?;
        ctx.system("transaction committed");
    }
    Ok(output)
}

/// Runs `task`'s statements and returns the first column of the first row of the last
/// one (for sensors); `None` when it returned no row.
pub(crate) async fn first_value(
    task: &SqlTask,
    connection: Option<&Connection>,
) -> Result<Option<Value>, RunError> {
    let (script, connection) = Script::prepare(task, connection)?;
    let mut db = Db::connect(&connection)
        .await
        .map_err(|source| RunError::Connect {
            connection: connection.name.clone(),
            source,
        })?;
    let mut last = None;
    let count = script.statements.len();
    for (k, (statement, bound)) in script.statements.iter().enumerate() {
        let result = db
            .execute(statement, bound, &task.parameters)
            .await
            .map_err(|e| RunError::Statement {
                number: k + 1,
                count,
                line: statement.line,
                message: db_error(&e, statement),
            })?;
        last = Some(result);
    }
    db.close().await;
    Ok(last.and_then(|r| r.first.map(|(_, v)| v)))
}

/// Checks that `connection` answers (`SELECT 1`); for `nightshift connections test`.
pub async fn ping(connection: &Connection) -> Result<(), PingError> {
    let mut db = Db::connect(connection).await?;
    db.plain("SELECT 1").await.map_err(PingError::Query)?;
    db.close().await;
    Ok(())
}

/// What one statement did.
#[derive(Debug, Default)]
struct StatementResult {
    rows_affected: u64,
    row_count: u64,
    /// The first rows, as JSON objects, within the output bounds.
    rows: Vec<Value>,
    rows_bytes: usize,
    /// The first column of the first row (name, value).
    first: Option<(String, Value)>,
    is_query: bool,
}

impl StatementResult {
    fn add(&mut self, row: Map<String, Value>) {
        self.row_count += 1;
        if self.first.is_none() {
            self.first = row.iter().next().map(|(k, v)| (k.clone(), v.clone()));
        }
        if self.rows.len() >= MAX_OUTPUT_ROWS {
            return;
        }
        let row = Value::Object(row);
        let size = row.to_string().len();
        if self.rows_bytes + size > MAX_OUTPUT_BYTES {
            // Keep the bound strict: no row after one that did not fit.
            self.rows_bytes = MAX_OUTPUT_BYTES;
            return;
        }
        self.rows_bytes += size;
        self.rows.push(row);
    }
}

/// An open connection to one of the three databases.
enum Db {
    Pg(PgConnection),
    My(MySqlConnection),
    /// With the flag its progress handler reads: set, the running statement stops.
    Lite(SqliteConnection, Arc<AtomicBool>),
}

/// How to stop a running statement from outside its connection.
enum Canceller {
    Pg {
        options: PgConnectOptions,
        pid: i32,
    },
    My {
        options: MySqlConnectOptions,
        id: u64,
    },
    /// SQLite runs in-process: its progress handler interrupts the statement.
    Lite(Arc<AtomicBool>),
    None,
}

impl Canceller {
    async fn cancel(&self) -> Result<(), CancelError> {
        match self {
            Canceller::Pg { options, pid } => {
                let mut conn = options.connect().await.map_err(CancelError)?;
                sqlx::query("SELECT pg_cancel_backend($1)")
                    .bind(*pid)
                    .execute(&mut conn)
                    .await
                    .map_err(CancelError)?;
                let _ = conn.close().await;
                Ok(())
            }
            Canceller::My { options, id } => {
                let mut conn = options.connect().await.map_err(CancelError)?;
                // KILL takes no placeholder; the id is a number from the server.
                conn.execute(format!("KILL QUERY {id}").as_str())
                    .await
                    .map_err(CancelError)?;
                let _ = conn.close().await;
                Ok(())
            }
            Canceller::Lite(flag) => {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            }
            Canceller::None => Ok(()),
        }
    }
}

/// Connection errors without the URI (drivers may quote it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

impl Db {
    async fn connect(connection: &Connection) -> Result<Db, ConnectError> {
        let uri = connection.uri.expose();
        let fail = |e: sqlx::Error| ConnectError(error_text(&e));
        match connection.kind {
            ConnectionKind::Postgres => {
                let options = PgConnectOptions::from_str(uri)
                    .map_err(fail)?
                    .application_name("nightshift")
                    .statement_cache_capacity(0);
                Ok(Db::Pg(options.connect().await.map_err(fail)?))
            }
            ConnectionKind::Mysql => {
                let options = MySqlConnectOptions::from_str(uri)
                    .map_err(fail)?
                    .statement_cache_capacity(0);
                Ok(Db::My(options.connect().await.map_err(fail)?))
            }
            ConnectionKind::Sqlite => {
                let options = SqliteConnectOptions::from_str(uri)
                    .map_err(fail)?
                    .create_if_missing(true)
                    .statement_cache_capacity(0);
                let mut conn = options.connect().await.map_err(fail)?;
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                conn.lock_handle()
                    .await
                    .map_err(fail)?
                    .set_progress_handler(1000, move || !flag.load(Ordering::SeqCst));
                Ok(Db::Lite(conn, stop))
            }
            ref other => Err(ConnectError(format!(
                "a {other} connection is not a database"
            ))),
        }
    }

    /// How to cancel this connection's running statement from another connection.
    async fn canceller(&mut self, connection: &Connection) -> Canceller {
        let uri = connection.uri.expose();
        match self {
            Db::Pg(conn) => {
                let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await;
                match (PgConnectOptions::from_str(uri), pid) {
                    (Ok(options), Ok(pid)) => Canceller::Pg { options, pid },
                    _ => Canceller::None,
                }
            }
            Db::My(conn) => {
                let id = sqlx::query_scalar::<_, u64>("SELECT CONNECTION_ID()")
                    .fetch_one(&mut *conn)
                    .await;
                match (MySqlConnectOptions::from_str(uri), id) {
                    (Ok(options), Ok(id)) => Canceller::My { options, id },
                    _ => Canceller::None,
                }
            }
            Db::Lite(_, stop) => Canceller::Lite(stop.clone()),
        }
    }

    async fn close(self) {
        let _ = match self {
            Db::Pg(c) => c.close().await,
            Db::My(c) => c.close().await,
            Db::Lite(c, _) => c.close().await,
        };
    }

    /// Runs a statement without parameters or results (BEGIN, COMMIT, …).
    async fn plain(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Db::Pg(c) => c.execute(sqlx::raw_sql(sql)).await.map(drop),
            Db::My(c) => c.execute(sqlx::raw_sql(sql)).await.map(drop),
            Db::Lite(c, _) => c.execute(sqlx::raw_sql(sql)).await.map(drop),
        }
    }

    async fn execute(
        &mut self,
        statement: &Statement,
        bound: &Bound,
        parameters: &std::collections::BTreeMap<String, Value>,
    ) -> Result<StatementResult, sqlx::Error> {
        let mut result = StatementResult {
            is_query: looks_like_query(&statement.text),
            ..StatementResult::default()
        };
        static NULL: Value = Value::Null;
        let values: Vec<&Value> = bound
            .names
            .iter()
            .map(|n| parameters.get(n).unwrap_or(&NULL))
            .collect();
        let value = |n: usize| values[n];
        match self {
            Db::Pg(conn) => {
                let sql = if bound.names.is_empty() {
                    None
                } else {
                    Some(pg_sql(conn, bound, &values).await)
                };
                let mut stream = match &sql {
                    None => conn.fetch_many(sqlx::raw_sql(&statement.text)),
                    Some(sql) => {
                        let mut q = sqlx::query(sql);
                        for n in bound.order(Dialect::Postgres) {
                            q = bind_pg(q, value(n));
                        }
                        conn.fetch_many(q)
                    }
                };
                while let Some(item) = stream.try_next().await? {
                    match item {
                        Either::Left(done) => result.rows_affected += done.rows_affected(),
                        Either::Right(row) => result.add(row_object(&row, pg_value)),
                    }
                }
            }
            Db::My(conn) => {
                let sql = bound.sql(Dialect::Mysql, &[]);
                let mut stream = if bound.names.is_empty() {
                    conn.fetch_many(sqlx::raw_sql(&statement.text))
                } else {
                    let mut q = sqlx::query(&sql);
                    for n in bound.order(Dialect::Mysql) {
                        q = bind_any!(q, value(n));
                    }
                    conn.fetch_many(q)
                };
                while let Some(item) = stream.try_next().await? {
                    match item {
                        Either::Left(done) => result.rows_affected += done.rows_affected(),
                        Either::Right(row) => result.add(row_object(&row, my_value)),
                    }
                }
            }
            Db::Lite(conn, _) => {
                let sql = bound.sql(Dialect::Sqlite, &[]);
                let mut stream = if bound.names.is_empty() {
                    conn.fetch_many(sqlx::raw_sql(&statement.text))
                } else {
                    let mut q = sqlx::query(&sql);
                    for n in bound.order(Dialect::Sqlite) {
                        q = bind_any!(q, value(n));
                    }
                    conn.fetch_many(q)
                };
                while let Some(item) = stream.try_next().await? {
                    match item {
                        Either::Left(done) => result.rows_affected += done.rows_affected(),
                        Either::Right(row) => result.add(row_object(&row, lite_value)),
                    }
                }
            }
        }
        result.is_query |= result.row_count > 0;
        Ok(result)
    }
}

/// Binds a JSON value by its JSON type (MySQL and SQLite coerce as needed).
macro_rules! bind_any {
    ($q:expr, $v:expr) => {
        match $v {
            Value::Null => $q.bind(None::<String>),
            Value::Bool(b) => $q.bind(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => $q.bind(i),
                None => $q.bind(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => $q.bind(s.clone()),
            other => $q.bind(other.to_string()),
        }
    };
}
use bind_any;

fn bind_pg<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    v: &Value,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match v {
        Value::Array(_) | Value::Object(_) => q.bind(sqlx::types::Json(v.clone())),
        other => bind_any!(q, other),
    }
}

/// The statement for PostgreSQL. A string parameter is sent as `text`; where the server
/// infers another type for it (a date column, a numeric), it is cast explicitly
/// (`$1::DATE`), so `WHERE day = :day` works with `day = "{{ ds }}"` as with a client
/// that interpolates.
async fn pg_sql(conn: &mut PgConnection, bound: &Bound, values: &[&Value]) -> String {
    let value = |n: usize| values[n];
    let plain = bound.sql(Dialect::Postgres, &[]);
    let needs_types = (0..bound.names.len()).any(|n| value(n).is_string());
    if !needs_types {
        return plain;
    }
    // Asking the server costs a round trip; when it fails, the statement's own run
    // reports the error.
    let Ok(prepared) = conn.prepare(&plain).await else {
        return plain;
    };
    let Some(Either::Left(types)) = prepared.parameters() else {
        return plain;
    };
    let casts: Vec<Option<String>> = (0..bound.names.len())
        .map(|n| {
            let ty = types.get(n)?.name();
            let plain_name = ty
                .trim_end_matches("[]")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
            let texty = matches!(
                ty,
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CHAR"
            );
            (value(n).is_string() && plain_name && !texty).then(|| ty.to_owned())
        })
        .collect();
    bound.sql(Dialect::Postgres, &casts)
}

fn looks_like_query(text: &str) -> bool {
    let word = first_word(text).to_ascii_uppercase();
    matches!(
        word.as_str(),
        "SELECT"
            | "WITH"
            | "VALUES"
            | "SHOW"
            | "TABLE"
            | "EXPLAIN"
            | "PRAGMA"
            | "DESCRIBE"
            | "DESC"
    )
}

/// The first word of a statement, after leading comments.
fn first_word(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--").or_else(|| rest.strip_prefix('#')) {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// A statement on one line, secrets masked, then cut to [`PREVIEW_CHARS`].
fn preview(text: &str, secrets: &[&str]) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    mask_then_shorten(&one_line, secrets, PREVIEW_CHARS)
}

/// The database's message for an error (without sqlx's wrapping).
fn error_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// The error of a statement, with the script line the server points at when it does.
fn db_error(e: &sqlx::Error, statement: &Statement) -> String {
    let mut text = error_text(e);
    if let sqlx::Error::Database(db) = e {
        if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
            if let Some(sqlx::postgres::PgErrorPosition::Original(pos)) = pg.position() {
                // The position counts characters of the statement as sent; rewriting
                // parameters changes columns, never lines.
                let before: String = statement.text.chars().take(pos.saturating_sub(1)).collect();
                let line = statement.line + before.matches('\n').count();
                text.push_str(&format!(" at script line {line}"));
            }
        }
    }
    text
}

/// A number for the output: an exact integer or a float when it keeps every digit,
/// else the decimal text (numerics may be wider than a float).
fn decimal(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    let digits = text.chars().filter(char::is_ascii_digit).count();
    match text.parse::<f64>() {
        Ok(f) if digits <= 15 && f.is_finite() => Value::from(f),
        _ => Value::String(text.to_owned()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One result row as a JSON object, each column decoded by the driver's `value` function.
fn row_object<R: sqlx::Row>(row: &R, value: fn(&R, usize) -> Value) -> Map<String, Value> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| (column.name().to_owned(), value(row, i)))
        .collect()
}

fn pg_value(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let ty = raw.type_info().name().to_owned();
    let text_format = raw.format() == PgValueFormat::Text;
    let got: Result<Value, sqlx::Error> = match ty.as_str() {
        "BOOL" => row.try_get::<bool, _>(i).map(Value::from),
        "INT2" => row.try_get::<i16, _>(i).map(Value::from),
        "INT4" => row.try_get::<i32, _>(i).map(Value::from),
        "INT8" => row.try_get::<i64, _>(i).map(Value::from),
        "FLOAT4" => row.try_get::<f32, _>(i).map(Value::from),
        "FLOAT8" => row.try_get::<f64, _>(i).map(Value::from),
        "NUMERIC" if text_format => row.try_get_unchecked::<String, _>(i).map(|s| decimal(&s)),
        "NUMERIC" => Ok(raw
            .as_bytes()
            .ok()
            .and_then(pg_numeric)
            .map_or(Value::Null, |s| decimal(&s))),
        "DATE" => row
            .try_get::<chrono::NaiveDate, _>(i)
            .map(|d| Value::from(d.to_string())),
        "TIMESTAMP" => row
            .try_get::<chrono::NaiveDateTime, _>(i)
            .map(|d| Value::from(d.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
        "TIMESTAMPTZ" => row
            .try_get::<chrono::DateTime<chrono::Utc>, _>(i)
            .map(|d| Value::from(d.to_rfc3339())),
        "TIME" => row
            .try_get::<chrono::NaiveTime, _>(i)
            .map(|d| Value::from(d.to_string())),
        "JSON" | "JSONB" => row.try_get::<Value, _>(i),
        "BYTEA" => row.try_get::<Vec<u8>, _>(i).map(|b| Value::from(hex(&b))),
        "UUID" if !text_format => {
            Ok(raw
                .as_bytes()
                .ok()
                .filter(|b| b.len() == 16)
                .map_or(Value::Null, |b| {
                    let h = hex(b);
                    Value::from(format!(
                        "{}-{}-{}-{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..]
                    ))
                }))
        }
        _ => row.try_get_unchecked::<String, _>(i).map(Value::from),
    };
    got.unwrap_or_else(|_| Value::from(format!("(a {ty} value)")))
}

/// PostgreSQL's binary NUMERIC as decimal text.
fn pg_numeric(b: &[u8]) -> Option<String> {
    let word = |k: usize| -> Option<i16> { Some(i16::from_be_bytes([*b.get(k)?, *b.get(k + 1)?])) };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(2)?);
    let sign = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
    let dscale = usize::try_from(word(6)?).ok()?;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<Option<_>>()?;
    let digit = |idx: i32| -> i16 {
        usize::try_from(idx)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for idx in 1..=weight {
            out.push_str(&format!("{:04}", digit(idx)));
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut idx = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(idx)));
            idx += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

fn my_value(row: &MySqlRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let ty = raw.type_info().name().to_owned();
    let got: Result<Value, sqlx::Error> = match ty.as_str() {
        "BOOLEAN" => row.try_get_unchecked::<bool, _>(i).map(Value::from),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            row.try_get_unchecked::<i64, _>(i).map(Value::from)
        }
        t if t.ends_with("UNSIGNED") => row.try_get_unchecked::<u64, _>(i).map(Value::from),
        "FLOAT" => row.try_get_unchecked::<f32, _>(i).map(Value::from),
        "DOUBLE" => row.try_get_unchecked::<f64, _>(i).map(Value::from),
        "DECIMAL" => row.try_get_unchecked::<String, _>(i).map(|s| decimal(&s)),
        "DATE" => row
            .try_get_unchecked::<chrono::NaiveDate, _>(i)
            .map(|d| Value::from(d.to_string())),
        "DATETIME" | "TIMESTAMP" => row
            .try_get_unchecked::<chrono::NaiveDateTime, _>(i)
            .map(|d| Value::from(d.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
        "TIME" => row
            .try_get_unchecked::<chrono::NaiveTime, _>(i)
            .map(|d| Value::from(d.to_string())),
        "JSON" => row.try_get_unchecked::<Value, _>(i),
        _ => match row.try_get_unchecked::<Vec<u8>, _>(i) {
            Ok(bytes) => Ok(match String::from_utf8(bytes) {
                Ok(s) => Value::from(s),
                Err(e) => Value::from(hex(e.as_bytes())),
            }),
            Err(e) => Err(e),
        },
    };
    got.unwrap_or_else(|_| Value::from(format!("(a {ty} value)")))
}

fn lite_value(row: &SqliteRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    // SQLite types values, not columns: ask the value.
    let ty = raw.type_info().name().to_owned();
    let got: Result<Value, sqlx::Error> = match ty.as_str() {
        "INTEGER" | "BOOLEAN" => row.try_get_unchecked::<i64, _>(i).map(Value::from),
        "REAL" => row.try_get_unchecked::<f64, _>(i).map(Value::from),
        "BLOB" => row
            .try_get_unchecked::<Vec<u8>, _>(i)
            .map(|b| Value::from(hex(&b))),
        _ => row.try_get_unchecked::<String, _>(i).map(Value::from),
    };
    got.unwrap_or_else(|_| Value::from(format!("(a {ty} value)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_statement_is_named_by_its_place_in_the_script() {
        let db = Connection::parse("warehouse", "sqlite::memory:", None).ok();
        let task = SqlTask {
            connection: "warehouse".into(),
            source: nightshift_core::dag::SqlSource::Sql(
                "SELECT 1;\n\nSELECT * FROM no_such_table".into(),
            ),
            parameters: Default::default(),
            transaction: false,
        };
        let err = first_value(&task, db.as_ref())
            .await
            .expect_err("no such table");
        let RunError::Statement {
            number,
            count,
            line,
            message,
        } = &err
        else {
            panic!("expected a failed statement, got {err:?}");
        };
        assert_eq!((*number, *count, *line), (2, 2, 3));
        assert!(message.contains("no_such_table"), "{message}");
        assert!(
            err.to_string()
                .starts_with("statement 2 of 2 (line 3) failed: "),
            "{err}"
        );

        let err = first_value(&task, None).await.expect_err("unresolved");
        assert!(
            matches!(err, RunError::Script(ScriptError::Unresolved { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_script_that_cannot_run_says_which_fact_is_wrong() {
        use nightshift_core::dag::SqlSource;
        let task = |connection: &str, source: SqlSource| SqlTask {
            connection: connection.to_owned(),
            source,
            parameters: [("day".to_owned(), Value::from("2026-01-01"))].into(),
            transaction: false,
        };
        let sql = |text: &str| SqlSource::Sql(text.to_owned());
        let db = Connection::parse("warehouse", "sqlite::memory:", None).ok();
        let api = Connection::parse("api", "https://api.invalid/", None).ok();
        let check = |task: SqlTask, connection: Option<&Connection>, expected: ScriptError| {
            let err = Script::prepare(&task, connection).err();
            assert_eq!(err, Some(expected), "{task:?}");
        };
        check(
            task("warehouse", sql("SELECT 1")),
            None,
            ScriptError::Unresolved {
                connection: "warehouse".into(),
            },
        );
        check(
            task("api", sql("SELECT 1")),
            api.as_ref(),
            ScriptError::NotADatabase {
                connection: "api".into(),
                kind: ConnectionKind::Https,
            },
        );
        check(
            task(
                "warehouse",
                SqlSource::SqlFile {
                    path: "q.sql".into(),
                    text: None,
                },
            ),
            db.as_ref(),
            ScriptError::FileNotRead,
        );
        check(
            task("warehouse", sql(" ;\n")),
            db.as_ref(),
            ScriptError::Empty,
        );
        let undefined = ScriptError::UndefinedParameter {
            number: 2,
            count: 2,
            line: 3,
            missing: "dy".into(),
            defined: vec!["day".into()],
        };
        assert_eq!(
            undefined.to_string(),
            "statement 2 of 2 (line 3) uses :dy, which `parameters` does not define (defined: day)"
        );
        check(
            task("warehouse", sql("SELECT :day;\n\nSELECT :dy")),
            db.as_ref(),
            undefined,
        );
    }

    #[test]
    fn numerics_decode() {
        // (ndigits, weight, sign, dscale, digits) → text
        fn check(
            ndigits: i16,
            weight: i16,
            sign: u16,
            dscale: i16,
            digits: &[i16],
            expected: &str,
        ) {
            let mut b = Vec::new();
            b.extend(ndigits.to_be_bytes());
            b.extend(weight.to_be_bytes());
            b.extend(sign.to_be_bytes());
            b.extend(dscale.to_be_bytes());
            for d in digits {
                b.extend(d.to_be_bytes());
            }
            assert_eq!(pg_numeric(&b).as_deref(), Some(expected), "{digits:?}");
        }
        check(1, 0, 0, 0, &[42], "42");
        check(2, 1, 0, 2, &[1, 2345], "12345.00");
        check(2, 0, 0x4000, 2, &[12, 3400], "-12.34");
        check(1, -1, 0, 4, &[5], "0.0005");
        check(1, -2, 0, 8, &[7], "0.00000007");
        check(0, 0, 0, 0, &[], "0");
        check(3, 2, 0, 0, &[1, 0, 0], "100000000");
        check(0, 0, 0xC000, 0, &[], "NaN");
    }

    #[test]
    fn decimals_become_numbers_when_exact() {
        let check = |text: &str, expected: Value| assert_eq!(decimal(text), expected, "{text}");
        check("42", Value::from(42));
        check("-12.5", Value::from(-12.5));
        check(
            "12345678901234567890.12",
            Value::from("12345678901234567890.12"),
        );
    }

    #[test]
    fn first_words() {
        let check = |text: &str, query: bool| assert_eq!(looks_like_query(text), query, "{text}");
        check("SELECT 1", true);
        check("-- c\n/* d */ with x as (select 1) select * from x", true);
        check("# mysql\nshow tables", true);
        check("INSERT INTO t VALUES (1)", false);
        check("update t set x = 1", false);
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("SELECT\n  1,\n  2", &[]), "SELECT 1, 2");
        let long = format!("SELECT '{}'", "x".repeat(300));
        assert_eq!(preview(&long, &[]).chars().count(), PREVIEW_CHARS + 1);
        // A secret across the cut is masked whole, not cut and then missed.
        let straddling = format!("{}hunter2hunter2 tail", "x".repeat(PREVIEW_CHARS - 3));
        assert_eq!(
            preview(&straddling, &["hunter2hunter2"]),
            format!("{}***…", "x".repeat(PREVIEW_CHARS - 3))
        );
    }
}
