//! `history`: server time of the pages and endpoints the on-call uses, on a database with
//! one DAG of 50 tasks and 10,000 finished runs (500,000 task instances) plus 20 small
//! DAGs, calling the web app in process (`tower::ServiceExt::oneshot`), on SQLite and
//! PostgreSQL.
//!
//! Run: `cargo bench --bench history` (`NIGHTSHIFT_BENCH_BACKENDS=sqlite` to skip
//! PostgreSQL, `NIGHTSHIFT_BENCH_REPEATS=N` to change the number of timed calls, default 20).

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_store::{DagUpsert, NewSession, NewUser, Role, Store};
use nightshift_web::{app, create_api_token, hash_password, AppState, WebSettings};
use sqlx::types::Json;
use sqlx::QueryBuilder;
use tower::ServiceExt;

const BIG_DAG: &str = "history_big";
const BIG_TASKS: usize = 50;
const BIG_RUNS: usize = 10_000;
const SMALL_DAGS: usize = 20;
const SMALL_TASKS: usize = 5;
const SMALL_RUNS: usize = 30;
/// Runs per multi-row INSERT of task instances (13 bound values a row; SQLite allows 32,766).
const RUNS_PER_INSERT: usize = 40;
/// Statements per transaction.
const INSERTS_PER_TX: usize = 25;

/// A DAG of `tasks` noop tasks in layers of 10, each task depending on one of the layer
/// before.
fn dag_source(tasks: usize) -> String {
    let mut source = String::from("schedule = \"@hourly\"\nstart_date = \"2025-01-01\"\n");
    for t in 0..tasks {
        source.push_str(&format!("[tasks.t{t:02}]\ntype = \"noop\"\n"));
        if t >= 10 {
            source.push_str(&format!("depends_on = [\"t{:02}\"]\n", t - 10));
        }
    }
    source
}

async fn upsert(store: &Store, dag_id: &str, tasks: usize) -> anyhow::Result<Dag> {
    let dag = parse_dag(&format!("dags/{dag_id}.toml"), &dag_source(tasks))?;
    store
        .upsert_dag(&DagUpsert {
            dag_id: dag_id.to_owned(),
            file_path: format!("dags/{dag_id}.toml"),
            definition: serde_json::to_value(&dag)?,
            source_hash: dag.source_hash.clone(),
            schedule: Some("@hourly".to_owned()),
            timezone: "UTC".to_owned(),
            description: Some(format!("{dag_id}, seeded for the history benchmark")),
            owner: Some("bench".to_owned()),
            tags: vec!["bench".to_owned()],
            is_paused: false,
            now: Utc::now(),
        })
        .await?;
    Ok(dag)
}

/// One finished run: its logical date, state, and its tasks' state.
struct SeedRun {
    run_id: String,
    logical_date: DateTime<Utc>,
    failed: bool,
}

fn seed_runs(count: usize) -> Vec<SeedRun> {
    let first = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    (0..count)
        .map(|i| {
            let logical_date = first + TimeDelta::hours(i as i64);
            SeedRun {
                run_id: format!("scheduled__{}", logical_date.to_rfc3339()),
                logical_date,
                // One run in 50 failed (its last task failed).
                failed: i % 50 == 49,
            }
        })
        .collect()
}

/// Inserts the runs and their task instances of `dag` with multi-row INSERTs on the
/// store's pool (whichever backend it is).
macro_rules! seed_dag {
    ($pool:expr, $db:ty, $dag_id:expr, $dag:expr, $runs:expr) => {{
        let (pool, dag_id, dag, runs): (_, &str, &Dag, &[SeedRun]) = ($pool, $dag_id, $dag, $runs);
        let task_ids: Vec<&str> = dag.tasks.keys().map(|k| k.as_str()).collect();
        for tx_runs in runs.chunks(RUNS_PER_INSERT * INSERTS_PER_TX) {
            let mut tx = pool.begin().await?;
            // Runs, then their ids.
            let mut insert = QueryBuilder::<$db>::new(
                "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, \
                 data_interval_end, state, conf, queued_at, start_date, end_date, definition_hash) ",
            );
            insert.push_values(tx_runs, |mut row, run| {
                let end = run.logical_date + TimeDelta::hours(1);
                row.push_bind(dag_id)
                    .push_bind(&run.run_id)
                    .push_bind("scheduled")
                    .push_bind(run.logical_date)
                    .push_bind(run.logical_date)
                    .push_bind(end)
                    .push_bind(if run.failed { "failed" } else { "success" })
                    .push_bind(Json(serde_json::json!({})))
                    .push_bind(end)
                    .push_bind(end + TimeDelta::seconds(1))
                    .push_bind(end + TimeDelta::seconds(300))
                    .push_bind(&dag.source_hash);
            });
            insert.build().execute(&mut *tx).await?;
            let first = tx_runs.first().map(|r| r.logical_date);
            let last = tx_runs.last().map(|r| r.logical_date);
            let ids: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT id, logical_date FROM dag_runs WHERE dag_id = $1 \
                 AND logical_date >= $2 AND logical_date <= $3 ORDER BY logical_date",
            )
            .bind(dag_id)
            .bind(first)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            anyhow::ensure!(ids.len() == tx_runs.len(), "seeded {} runs, found {}", tx_runs.len(), ids.len());
            for chunk in tx_runs.iter().zip(ids.iter()).collect::<Vec<_>>().chunks(RUNS_PER_INSERT) {
                let rows = chunk.iter().flat_map(|(run, (id, _))| {
                    task_ids.iter().enumerate().map(move |(n, task_id)| (*run, *id, n, *task_id))
                });
                let mut insert = QueryBuilder::<$db>::new(
                    "INSERT INTO task_instances (run, dag_id, task_id, map_index, state, try_number, \
                     max_tries, kind, queue, pool, start_date, end_date, updated_at) ",
                );
                insert.push_values(rows, |mut row, (run, id, n, task_id)| {
                    let start = run.logical_date + TimeDelta::hours(1) + TimeDelta::seconds(n as i64 * 5);
                    let end = start + TimeDelta::seconds(4);
                    let failed = run.failed && n == task_ids.len() - 1;
                    row.push_bind(id)
                        .push_bind(dag_id)
                        .push_bind(task_id)
                        .push_bind(-1_i32)
                        .push_bind(if failed { "failed" } else { "success" })
                        .push_bind(1_i32)
                        .push_bind(1_i32)
                        .push_bind("noop")
                        .push_bind("default")
                        .push_bind("default_pool")
                        .push_bind(start)
                        .push_bind(end)
                        .push_bind(end);
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        anyhow::Ok(())
    }};
}

async fn seed(store: &Store, dag_id: &str, dag: &Dag, runs: &[SeedRun]) -> anyhow::Result<()> {
    if let Some(pool) = store.sqlite_pool() {
        seed_dag!(pool, sqlx::Sqlite, dag_id, dag, runs)?;
    } else if let Some(pool) = store.pg_pool() {
        seed_dag!(pool, sqlx::Postgres, dag_id, dag, runs)?;
        sqlx::query("ANALYZE").execute(pool).await?;
    }
    Ok(())
}

/// A viewer with an API token and a browser session: (bearer token, session cookie).
async fn viewer(store: &Store) -> anyhow::Result<(String, String)> {
    let now = Utc::now();
    let user = store
        .create_user(&NewUser {
            username: "oncall".to_owned(),
            password_hash: hash_password("bench password, never used")?,
            role: Role::Viewer,
            now,
        })
        .await?;
    let token = create_api_token(store, "oncall", "bench", None).await?;
    let cookie = "bench-session-secret".to_owned();
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(cookie.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    store
        .create_session(&NewSession {
            token_hash: hash,
            user_id: user.id,
            csrf_token: "bench-csrf".to_owned(),
            ip: None,
            now,
            expires_at: now + TimeDelta::hours(12),
        })
        .await?;
    Ok((token, cookie))
}

/// One request; its server time and body size. Anything but 200 is an error.
async fn call(
    app: &Router,
    uri: &str,
    bearer: &str,
    cookie: &str,
) -> anyhow::Result<(Duration, usize)> {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::COOKIE, format!("nightshift_session={cookie}"))
        .body(Body::empty())?;
    let started = Instant::now();
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {uri} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok((elapsed, body.len()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repeats: usize = std::env::var("NIGHTSHIFT_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    println!(
        "history: one DAG of {BIG_TASKS} tasks with {BIG_RUNS} finished runs ({} task instances) \
         + {SMALL_DAGS} small DAGs; server time of {repeats} calls after one warm-up",
        BIG_TASKS * BIG_RUNS
    );
    for backend in support::backends() {
        let (store, _db) = support::fresh_store(&backend).await?;
        let seeding = Instant::now();
        let big = upsert(&store, BIG_DAG, BIG_TASKS).await?;
        let runs = seed_runs(BIG_RUNS);
        seed(&store, BIG_DAG, &big, &runs).await?;
        for d in 0..SMALL_DAGS {
            let dag_id = format!("small_{d:02}");
            let dag = upsert(&store, &dag_id, SMALL_TASKS).await?;
            seed(&store, &dag_id, &dag, &seed_runs(SMALL_RUNS)).await?;
        }
        println!(
            "  {backend}: seeded in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        let (token, cookie) = viewer(&store).await?;
        let app = app(AppState {
            store: store.clone(),
            settings: WebSettings::default(),
            metrics: None,
            login: Default::default(),
        });
        let newest = &runs.last().expect("runs were seeded").run_id;
        let newest = newest.replace('+', "%2B").replace(':', "%3A");
        let endpoints = [
            ("DAG list page", "/dags".to_owned()),
            ("grid page", format!("/dags/{BIG_DAG}")),
            ("GET /api/v1/dags", "/api/v1/dags".to_owned()),
            (
                "dagRuns?limit=25",
                format!("/api/v1/dags/{BIG_DAG}/dagRuns?limit=25"),
            ),
            (
                "newest run's taskInstances",
                format!("/api/v1/dags/{BIG_DAG}/dagRuns/{newest}/taskInstances"),
            ),
            ("run page", format!("/dags/{BIG_DAG}/runs/{newest}")),
        ];
        for (name, uri) in &endpoints {
            let (_, bytes) = call(&app, uri, &token, &cookie).await?;
            let mut samples = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                samples.push(call(&app, uri, &token, &cookie).await?.0);
            }
            let (min, med, max) = support::summary(samples);
            let flag = if med > Duration::from_millis(100) {
                "  SLOW (target < 100 ms)"
            } else {
                ""
            };
            println!(
                "  {backend:8} {name:28} min {} / median {} / max {}  ({bytes} bytes){flag}",
                support::ms(min),
                support::ms(med),
                support::ms(max),
            );
        }
        store.close().await;
        support::drop_store(&backend).await?;
    }
    Ok(())
}
