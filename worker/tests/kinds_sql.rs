//! The `sql` kind against real databases: PostgreSQL (the `DATABASE_URL` server, a fresh
//! database per test), MariaDB on 127.0.0.1:3306 (root, a fresh database per test) and a
//! SQLite temp file. The same bodies run on each.

mod kinds_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kinds_common::{connection, context, lines};
use nightshift_core::connection::Connection;
use nightshift_core::dag::{SqlSource, SqlTask};
use nightshift_worker::kind::sql::{self, SqlSpec};
use nightshift_worker::kind::Outcome;
use serde_json::{json, Value};
use sqlx::Connection as _;

/// A database for one test, dropped at the end.
struct Db {
    connection: Connection,
    kind: Kind,
    admin_uri: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pg,
    My,
    Lite,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

fn pg_server() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // The server without the database part.
    match url.rfind('/') {
        Some(i) if i > "postgres://".len() => url[..i].to_owned(),
        _ => url,
    }
}

const MARIADB: &str = "mysql://root@127.0.0.1:3306";

impl Db {
    async fn new(kind: Kind) -> Db {
        Db::with_password(kind, None).await
    }

    /// A fresh database; `password` goes into the connection's URI (both servers trust
    /// local connections, so it only has to be masked, not checked).
    async fn with_password(kind: Kind, password: Option<&str>) -> Db {
        let name = unique("ns_sql");
        match kind {
            Kind::Pg => {
                let admin_uri = format!("{}/postgres", pg_server());
                let mut admin = sqlx::PgConnection::connect(&admin_uri)
                    .await
                    .expect("postgres");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                let server = pg_server();
                let uri = match password {
                    Some(pw) => format!(
                        "{}/{name}",
                        server.replacen(
                            "postgres://postgres@",
                            &format!("postgres://postgres:{pw}@"),
                            1
                        )
                    ),
                    None => format!("{server}/{name}"),
                };
                Db {
                    connection: connection("wh", &uri, None),
                    kind,
                    admin_uri,
                    name,
                    _dir: None,
                }
            }
            Kind::My => {
                let admin_uri = format!("{MARIADB}/mysql");
                let mut admin = sqlx::MySqlConnection::connect(&admin_uri)
                    .await
                    .expect("mariadb on 127.0.0.1:3306");
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                let uri = match password {
                    Some(pw) => format!("mysql://root:{pw}@127.0.0.1:3306/{name}"),
                    None => format!("{MARIADB}/{name}"),
                };
                Db {
                    connection: connection("wh", &uri, None),
                    kind,
                    admin_uri,
                    name,
                    _dir: None,
                }
            }
            Kind::Lite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let uri = format!("sqlite://{}", dir.path().join("wh.db").display());
                Db {
                    connection: connection("wh", &uri, None),
                    kind,
                    admin_uri: String::new(),
                    name,
                    _dir: Some(dir),
                }
            }
        }
    }

    async fn drop_db(self) {
        match self.kind {
            Kind::Pg => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_uri).await {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .execute(&mut admin)
                    .await;
                }
            }
            Kind::My => {
                if let Ok(mut admin) = sqlx::MySqlConnection::connect(&self.admin_uri).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {}", self.name))
                        .execute(&mut admin)
                        .await;
                }
            }
            Kind::Lite => {}
        }
    }

    fn spec(&self, sql: &str, parameters: Value, transaction: bool) -> SqlSpec {
        let parameters: BTreeMap<String, Value> =
            serde_json::from_value(parameters).expect("parameters");
        SqlSpec {
            task: SqlTask {
                connection: "wh".into(),
                source: SqlSource::Sql(sql.into()),
                parameters,
                transaction,
            },
            connection: Some(self.connection.clone()),
        }
    }

    /// The statement that sleeps 60 seconds.
    fn sleep_sql(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Pg => Some("SELECT pg_sleep(60)"),
            Kind::My => Some("SELECT SLEEP(60)"),
            Kind::Lite => None,
        }
    }

    /// How many statements still run the 60-second sleep on the server.
    async fn sleeping(&self) -> i64 {
        match self.kind {
            Kind::Pg => {
                let mut admin = sqlx::PgConnection::connect(&self.admin_uri)
                    .await
                    .expect("postgres");
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query = 'SELECT pg_sleep(60)' AND state = 'active'",
                )
                .bind(&self.name)
                .fetch_one(&mut admin)
                .await
                .expect("pg_stat_activity")
            }
            Kind::My => {
                let mut admin = sqlx::MySqlConnection::connect(&self.admin_uri)
                    .await
                    .expect("mariadb");
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM information_schema.processlist WHERE db = ? AND info = 'SELECT SLEEP(60)'",
                )
                .bind(&self.name)
                .fetch_one(&mut admin)
                .await
                .expect("processlist")
            }
            Kind::Lite => 0,
        }
    }
}

macro_rules! on_each_database {
    ($($name:ident),+ $(,)?) => {
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let db = super::Db::new(super::Kind::Pg).await; super::$name(&db).await; db.drop_db().await; }
        )+ }
        mod mariadb { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let db = super::Db::new(super::Kind::My).await; super::$name(&db).await; db.drop_db().await; }
        )+ }
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let db = super::Db::new(super::Kind::Lite).await; super::$name(&db).await; db.drop_db().await; }
        )+ }
    };
}

on_each_database!(
    creates_inserts_with_bound_parameters_and_returns_rows,
    a_failing_statement_names_itself_in_log_and_error,
    a_transaction_rolls_back_on_failure,
    timeout_cancels_the_running_statement,
    unknown_parameters_fail_before_connecting,
);

async fn run(spec: &SqlSpec, timeout: Option<Duration>) -> (Outcome, Vec<String>) {
    let (ctx, mut rx) = context(timeout);
    let outcome = sql::run(spec, &ctx).await;
    drop(ctx);
    (outcome, lines(&mut rx))
}

async fn creates_inserts_with_bound_parameters_and_returns_rows(db: &Db) {
    let script = "
-- a comment; with a semicolon
CREATE TABLE lessons (id INTEGER PRIMARY KEY, title VARCHAR(100), day DATE, n INTEGER);
INSERT INTO lessons (id, title, day, n) VALUES (1, :title, :day, :n), (2, 'it''s; fine', :day, :n);
INSERT INTO lessons (id, title, day, n) VALUES (3, :evil, :day, 7);
SELECT id, title, n FROM lessons WHERE day = :day AND n >= :n ORDER BY id";
    let spec = db.spec(
        script,
        json!({"title": "Math", "day": "2026-01-01", "n": 5, "evil": "x'); DROP TABLE lessons; --"}),
        false,
    );
    let (outcome, log) = run(&spec, None).await;
    assert_eq!(
        outcome,
        Outcome::Success {
            output: Some(json!([
                {"id": 1, "title": "Math", "n": 5},
                {"id": 2, "title": "it's; fine", "n": 5},
                {"id": 3, "title": "x'); DROP TABLE lessons; --", "n": 7},
            ]))
        },
        "{log:#?}"
    );
    let has = |needle: &str| log.iter().any(|l| l.contains(needle));
    assert!(
        has("statement 2 of 4 (line 4): 2 rows affected"),
        "{log:#?}"
    );
    assert!(
        has("statement 3 of 4 (line 5): 1 rows affected"),
        "{log:#?}"
    );
    assert!(
        has("statement 4 of 4 (line 6): 3 rows returned"),
        "{log:#?}"
    );
}

async fn a_failing_statement_names_itself_in_log_and_error(db: &Db) {
    let spec = db.spec(
        "CREATE TABLE t (x INTEGER);\nSELECT nope FROM t",
        json!({}),
        false,
    );
    let (outcome, log) = run(&spec, None).await;
    let (error, retryable) = kinds_common::failure(&outcome);
    assert!(retryable);
    assert!(
        error.starts_with("statement 2 of 2 (line 2) failed: ") && error.contains("nope"),
        "{error}"
    );
    if db.kind == Kind::Pg {
        assert!(
            error.contains("SQLSTATE 42703") && error.ends_with("at script line 2"),
            "{error}"
        );
    }
    assert!(
        log.iter().any(|l| l == error),
        "the error reaches the log: {log:#?}"
    );
}

async fn a_transaction_rolls_back_on_failure(db: &Db) {
    let setup = db.spec("CREATE TABLE t (x INTEGER)", json!({}), false);
    assert_eq!(run(&setup, None).await.0, Outcome::Success { output: None });
    let spec = db.spec(
        "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (:x);\nINSERT INTO missing VALUES (3)",
        json!({"x": 2}),
        true,
    );
    let (outcome, log) = run(&spec, None).await;
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
    assert!(
        log.iter().any(|l| l == "transaction rolled back"),
        "{log:#?}"
    );
    let count = db.spec("SELECT count(*) AS n FROM t", json!({}), false);
    assert_eq!(
        run(&count, None).await.0,
        Outcome::Success {
            output: Some(json!([{"n": 0}]))
        }
    );
    let ok = db.spec(
        "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2)",
        json!({}),
        true,
    );
    let (outcome, log) = run(&ok, None).await;
    assert_eq!(outcome, Outcome::Success { output: None });
    assert!(log.iter().any(|l| l == "transaction committed"), "{log:#?}");
    assert_eq!(
        run(&count, None).await.0,
        Outcome::Success {
            output: Some(json!([{"n": 2}]))
        }
    );
}

async fn timeout_cancels_the_running_statement(db: &Db) {
    let Some(sleep) = db.sleep_sql() else {
        // SQLite runs in-process; a timeout while a statement runs drops the connection.
        // Its timeout path is still covered: a slow recursive query is interrupted.
        let spec = db.spec(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            json!({}),
            false,
        );
        let started = Instant::now();
        let (outcome, _) = run(&spec, Some(Duration::from_millis(500))).await;
        assert_eq!(outcome, Outcome::retryable("timed out after 500ms"));
        assert!(started.elapsed() < Duration::from_secs(5));
        return;
    };
    let spec = db.spec(sleep, json!({}), false);
    let started = Instant::now();
    let (outcome, log) = run(&spec, Some(Duration::from_secs(1))).await;
    assert_eq!(
        outcome,
        Outcome::retryable("timed out after 1s"),
        "{log:#?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.iter().any(|l| l == "statement cancelled"), "{log:#?}");
    // The server stopped the statement too (not only the client).
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.sleeping().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the sleep still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn unknown_parameters_fail_before_connecting(db: &Db) {
    let spec = db.spec("SELECT 1;\nSELECT :dy", json!({"day": "2026-01-01"}), false);
    let (outcome, _) = run(&spec, None).await;
    assert_eq!(
        outcome,
        Outcome::fatal(
            "statement 2 of 2 (line 2) uses :dy, which `parameters` does not define (defined: day)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_types_reach_the_output() {
    let db = Db::new(Kind::Pg).await;
    let spec = db.spec(
        "SELECT 1::int2 AS a, 2::int8 AS b, 1.5::float8 AS c, 12.340::numeric AS d, true AS e, 'x'::text AS f, \
         DATE '2026-01-02' AS g, '{\"k\": [1]}'::jsonb AS h, NULL::int AS i, :day::date + 1 AS j, \
         '11111111-2222-3333-4444-555555555555'::uuid AS k",
        json!({"day": "2026-01-01"}),
        false,
    );
    let (outcome, log) = run(&spec, None).await;
    assert_eq!(
        outcome,
        Outcome::Success {
            output: Some(json!([{
                "a": 1, "b": 2, "c": 1.5, "d": 12.34, "e": true, "f": "x", "g": "2026-01-02",
                "h": {"k": [1]}, "i": null, "j": "2026-01-02", "k": "11111111-2222-3333-4444-555555555555",
            }]))
        },
        "{log:#?}"
    );
    // A string parameter compared with a date column is cast for the server.
    let spec = db.spec(
        "CREATE TABLE d (day date, amount numeric);\nINSERT INTO d VALUES (:day, :amount);\nSELECT count(*) AS n FROM d WHERE day = :day",
        json!({"day": "2026-01-01", "amount": "10.5"}),
        false,
    );
    assert_eq!(
        run(&spec, None).await.0,
        Outcome::Success {
            output: Some(json!([{"n": 1}]))
        }
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_bounded() {
    let db = Db::new(Kind::Lite).await;
    let spec = db.spec(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 250) SELECT x FROM c",
        json!({}),
        false,
    );
    let (outcome, log) = run(&spec, None).await;
    let Outcome::Success {
        output: Some(Value::Array(rows)),
    } = outcome
    else {
        panic!("rows expected: {log:#?}");
    };
    assert_eq!(rows.len(), sql::MAX_OUTPUT_ROWS);
    assert!(
        log.iter()
            .any(|l| l == "output keeps the first 100 of 250 rows"),
        "{log:#?}"
    );
}

/// Through the real worker: a PostgreSQL connection whose password is used by the task's
/// own SQL (in a query, in a failing statement): it never reaches the database rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_runs_sql_and_never_stores_the_secret() {
    const SECRET: &str = "s3cretpw9x";
    let db = Db::with_password(Kind::Pg, Some(SECRET)).await;
    let temp = nightshift_testkit::sqlite_store().await;
    let (store, file) = (temp.store.clone(), temp.path.clone());
    let run = kinds_common::seed(
        &store,
        r#"
[tasks.query]
type = "sql"
connection = "wh"
sql = "SELECT :word AS word, '{{ env.WH_PASSWORD }}' AS leaked"
parameters = { word = "hello {{ env.WH_PASSWORD }}" }

[tasks.broken]
type = "sql"
connection = "wh"
sql = "SELECT 1;\nSELECT nope_{{ env.WH_PASSWORD }}"
"#,
    )
    .await;
    let config = kinds_common::config([db.connection.clone()], &[("WH_PASSWORD", SECRET)]);
    let done = kinds_common::run_to_end(&store, config, &run).await;
    let query = &done["query"];
    assert_eq!(query.state.as_str(), "success");
    assert_eq!(
        query.output,
        Some(json!([{"word": "hello ***", "leaked": "***"}]))
    );
    let broken = &done["broken"];
    assert_eq!(broken.state.as_str(), "failed");
    let log = kinds_common::stored_log(&store, broken).await;
    assert!(
        log.iter().any(|l| l
            .starts_with("statement 2 of 2 (line 2) failed: column \"nope_***\" does not exist")),
        "{log:#?}"
    );
    kinds_common::assert_never_stored(&store, &file, &done, SECRET).await;
    db.drop_db().await;
}
