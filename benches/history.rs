//! `history`: server time of the pages and endpoints the on-call uses, on a database with
//! one DAG of 50 tasks and 10,000 finished runs (500,000 task instances, about 522,000
//! tries: one instance in 23 failed once and was retried, one run in 50 failed) plus 20
//! small DAGs, calling the web app in process (`tower::ServiceExt::oneshot`), on SQLite
//! and PostgreSQL. Every try has its attempt row with queued, start and end times, as
//! the run page's Gantt chart and the duration charts read them.
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
/// Runs per multi-row INSERT of task instances (14 bound values a row; SQLite allows 32,766).
const RUNS_PER_INSERT: usize = 40;
/// Attempt rows per multi-row INSERT (9 bound values a row).
const ATTEMPTS_PER_INSERT: usize = 3_000;
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

/// One finished run: its logical date and whether it failed.
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
                // One run in 50 failed (its last task failed twice).
                failed: i % 50 == 49,
            }
        })
        .collect()
}

/// One try as seeded: queued, started, ended, and how it ended.
#[derive(Clone, Copy)]
struct SeedTry {
    queued: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    state: &'static str,
}

/// The tries of task `n` (of `tasks`) in run number `i`, as a scheduler and workers would
/// have left them: tasks run in layers of 10 (30 s a layer), each queued when its layer
/// starts and running 5 to 24 s; about one instance in 23 failed once and succeeded on
/// its retry; the last task of a failed run failed both its tries.
fn seed_tries(run: &SeedRun, i: usize, n: usize, tasks: usize) -> Vec<SeedTry> {
    let run_start = run.logical_date + TimeDelta::hours(1) + TimeDelta::seconds(1);
    let queued = run_start + TimeDelta::seconds((n / 10) as i64 * 30 + (n % 10) as i64 / 3);
    let at = |s: i64| queued + TimeDelta::seconds(s);
    let failed_last = run.failed && n == tasks - 1;
    if failed_last || (i + n).is_multiple_of(23) {
        let last = if failed_last { "failed" } else { "success" };
        vec![
            SeedTry {
                queued,
                start: at(1),
                end: at(4),
                state: "up_for_retry",
            },
            SeedTry {
                queued: at(9),
                start: at(10),
                end: at(10 + 5 + ((i * 7 + n) % 14) as i64),
                state: last,
            },
        ]
    } else {
        let duration = 5 + ((i * 7 + n * 3) % 20) as i64;
        vec![SeedTry {
            queued,
            start: at(1),
            end: at(1 + duration),
            state: "success",
        }]
    }
}

/// Inserts the runs of `dag`, their task instances and every try's attempt row with
/// multi-row INSERTs on the store's pool (whichever backend it is).
macro_rules! seed_dag {
    ($pool:expr, $db:ty, $dag_id:expr, $dag:expr, $runs:expr) => {{
        let (pool, dag_id, dag, runs): (_, &str, &Dag, &[SeedRun]) = ($pool, $dag_id, $dag, $runs);
        let task_ids: Vec<&str> = dag.tasks.keys().map(|k| k.as_str()).collect();
        let tasks = task_ids.len();
        for (chunk_no, tx_runs) in runs.chunks(RUNS_PER_INSERT * INSERTS_PER_TX).enumerate() {
            let first_i = chunk_no * RUNS_PER_INSERT * INSERTS_PER_TX;
            let mut tx = pool.begin().await?;
            // Runs, then their ids.
            let mut insert = QueryBuilder::<$db>::new(
                "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, \
                 data_interval_end, state, conf, queued_at, start_date, end_date, definition_hash) ",
            );
            insert.push_values(tx_runs.iter().enumerate(), |mut row, (k, run)| {
                let end = run.logical_date + TimeDelta::hours(1);
                let last_end = (0..tasks)
                    .filter_map(|n| seed_tries(run, first_i + k, n, tasks).last().map(|t| t.end))
                    .max()
                    .unwrap_or(end);
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
                    .push_bind(last_end + TimeDelta::seconds(1))
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
            let numbered: Vec<(usize, &SeedRun, i64)> = tx_runs
                .iter()
                .zip(ids.iter())
                .enumerate()
                .map(|(k, (run, (id, _)))| (first_i + k, run, *id))
                .collect();
            for chunk in numbered.chunks(RUNS_PER_INSERT) {
                let rows = chunk.iter().flat_map(|&(i, run, id)| {
                    task_ids.iter().enumerate().map(move |(n, task_id)| (i, run, id, n, *task_id))
                });
                let mut insert = QueryBuilder::<$db>::new(
                    "INSERT INTO task_instances (run, dag_id, task_id, map_index, state, try_number, \
                     max_tries, kind, queue, pool, queued_at, start_date, end_date, updated_at) ",
                );
                insert.push_values(rows, |mut row, (i, run, id, n, task_id)| {
                    let tries = seed_tries(run, i, n, tasks);
                    let last = tries[tries.len() - 1];
                    row.push_bind(id)
                        .push_bind(dag_id)
                        .push_bind(task_id)
                        .push_bind(-1_i32)
                        .push_bind(last.state)
                        .push_bind(tries.len() as i32)
                        .push_bind(2_i32)
                        .push_bind("noop")
                        .push_bind("default")
                        .push_bind("default_pool")
                        .push_bind(last.queued)
                        .push_bind(last.start)
                        .push_bind(last.end)
                        .push_bind(last.end);
                });
                insert.build().execute(&mut *tx).await?;
            }
            // Every try's attempt row, by the instances' ids.
            let (lo, hi) = (numbered[0].2, numbered[numbered.len() - 1].2);
            let instance_ids: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT id, run, task_id FROM task_instances WHERE run >= $1 AND run <= $2",
            )
            .bind(lo)
            .bind(hi)
            .fetch_all(&mut *tx)
            .await?;
            let by_run: std::collections::HashMap<i64, (usize, &SeedRun)> =
                numbered.iter().map(|&(i, run, id)| (id, (i, run))).collect();
            let task_no: std::collections::HashMap<&str, usize> =
                task_ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
            let mut attempts = Vec::with_capacity(instance_ids.len() * 2);
            for (ti, run_id, task_id) in &instance_ids {
                let (Some(&(i, run)), Some(&n)) = (by_run.get(run_id), task_no.get(task_id.as_str()))
                else {
                    anyhow::bail!("seeded instance {ti} of an unknown run or task");
                };
                for (k, t) in seed_tries(run, i, n, tasks).into_iter().enumerate() {
                    attempts.push((*ti, k as i32 + 1, t));
                }
            }
            for rows in attempts.chunks(ATTEMPTS_PER_INSERT) {
                let mut insert = QueryBuilder::<$db>::new(
                    "INSERT INTO attempts (task_instance, try_number, worker, hostname, state, \
                     queued_at, start_date, end_date, error) ",
                );
                insert.push_values(rows, |mut row, (ti, try_number, t)| {
                    row.push_bind(*ti)
                        .push_bind(*try_number)
                        .push_bind("bench-worker")
                        .push_bind("bench-host")
                        .push_bind(t.state)
                        .push_bind(t.queued)
                        .push_bind(t.start)
                        .push_bind(t.end)
                        .push_bind((t.state != "success").then_some("command exited with code 1"));
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
        let encoded = |run: &SeedRun| run.run_id.replace('+', "%2B").replace(':', "%3A");
        // The newest run failed (one in 50 does); the one before it succeeded.
        let newest = encoded(&runs[BIG_RUNS - 1]);
        let succeeded = encoded(&runs[BIG_RUNS - 2]);
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
            (
                "run page + Gantt, failed run",
                format!("/dags/{BIG_DAG}/runs/{newest}"),
            ),
            (
                "run page + Gantt, success",
                format!("/dags/{BIG_DAG}/runs/{succeeded}"),
            ),
            ("run-duration chart", format!("/dags/{BIG_DAG}/durations")),
            ("calendar", format!("/dags/{BIG_DAG}/calendar")),
            (
                "task page + duration chart",
                format!("/dags/{BIG_DAG}/runs/{newest}/tasks/t49"),
            ),
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
