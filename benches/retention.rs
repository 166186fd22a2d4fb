//! `retention`: what a background clean costs the work beside it. On a PostgreSQL database
//! with 1,000,000 task instances of finished history (one DAG of 50 tasks, 20,000 hourly
//! runs from 2024, each instance with one try and two log lines), fan1000 (noop, 2
//! workers of 32 slots, one scheduler, in process) runs first alone, then while a
//! scheduler's background retention (`history_retention = 1d`, the default rest between
//! batches) deletes that history. Prints each phase's fan1000 wall times, the scheduler's
//! tick durations (max and p99), how much the clean deleted meanwhile, and how long the
//! whole background pass took.
//!
//! Run: `cargo bench --bench retention`. PostgreSQL only (the seed uses
//! `generate_series`), from `DATABASE_URL`. `NIGHTSHIFT_BENCH_RUNS=N` sets the history's
//! runs (default 20,000, × 50 instances), `NIGHTSHIFT_BENCH_REPEATS=N` the fan1000 runs
//! per phase (default 5). Goal: fan1000 slows by less than 20 % and no tick takes 1 s.

#[path = "support.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_scheduler::loader::{sync_folder, SyncOptions};
use nightshift_scheduler::retention::RetentionConfig;
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::{DagUpsert, Store, Wake};
use nightshift_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

const HISTORY_DAG: &str = "history";
const HISTORY_TASKS: usize = 50;
const FAN: usize = 1_000;
const WORKERS: usize = 2;
const SLOTS: usize = 32;

fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fan_source() -> String {
    let body = "type = \"noop\"\n";
    let mut source = format!("max_active_tasks = {FAN}\n[tasks.first]\n{body}");
    for t in 0..FAN {
        source.push_str(&format!(
            "[tasks.t{t:05}]\n{body}depends_on = [\"first\"]\n"
        ));
    }
    let all: Vec<String> = (0..FAN).map(|t| format!("\"t{t:05}\"")).collect();
    source.push_str(&format!(
        "[tasks.last]\n{body}depends_on = [{}]\n",
        all.join(", ")
    ));
    source
}

/// The history DAG and `runs` finished hourly runs of it, seeded in the database with
/// `generate_series` (instances, one try each, two log lines per try).
async fn seed_history(store: &Store, runs: usize) -> anyhow::Result<()> {
    let mut source = String::from("schedule = \"@hourly\"\nstart_date = \"2024-01-01\"\n");
    for t in 0..HISTORY_TASKS {
        source.push_str(&format!("[tasks.t{t:02}]\ntype = \"noop\"\n"));
    }
    let dag = parse_dag(&format!("dags/{HISTORY_DAG}.toml"), &source)?;
    store
        .upsert_dag(&DagUpsert {
            dag_id: HISTORY_DAG.to_owned(),
            file_path: dag.file.clone(),
            definition: serde_json::to_value(&dag)?,
            source_hash: dag.source_hash.clone(),
            schedule: Some("@hourly".to_owned()),
            timezone: "UTC".to_owned(),
            description: None,
            owner: None,
            tags: vec![],
            // Paused: its history is all there is; no new runs.
            is_paused: true,
            now: Utc::now(),
        })
        .await?;
    let pool = store
        .pg_pool()
        .ok_or_else(|| anyhow::anyhow!("the retention benchmark seeds PostgreSQL only"))?;
    let statements = [
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start,
                               data_interval_end, state, conf, queued_at, start_date,
                               end_date, definition_hash)
         SELECT $1, 'scheduled__' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00',
                'scheduled', ts, ts, ts + interval '1 hour', 'success', '{}',
                ts + interval '1 hour', ts + interval '1 hour', ts + interval '80 minutes', $2
         FROM generate_series(0, $3 - 1) AS i,
              LATERAL (SELECT timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour') AS t(ts)
         WHERE $4 > 0",
        "INSERT INTO task_instances (run, dag_id, task_id, map_index, state, try_number,
                                     max_tries, kind, queue, pool, queued_at, start_date,
                                     end_date, updated_at)
         SELECT r.id, r.dag_id, 't' || lpad(n::text, 2, '0'), -1, 'success', 1, 1, 'noop',
                'default', 'default_pool', r.start_date, r.start_date, r.end_date, r.end_date
         FROM dag_runs r CROSS JOIN generate_series(0, $4 - 1) AS n
         WHERE r.dag_id = $1 AND $2 <> '' AND $3 > 0",
        "INSERT INTO attempts (task_instance, try_number, worker, hostname, state, queued_at,
                               start_date, end_date)
         SELECT id, 1, 'bench', 'bench', 'success', queued_at, start_date, end_date
         FROM task_instances WHERE dag_id = $1 AND $2 <> '' AND $3 > 0 AND $4 > 0",
        "INSERT INTO task_logs (task_instance, try_number, line_no, ts, stream, line)
         SELECT ti.id, 1, k, ti.end_date, 'stdout',
                'step ' || k || ' of a nightly task that did its work as usual'
         FROM task_instances ti CROSS JOIN generate_series(1, 2) AS k
         WHERE ti.dag_id = $1 AND $2 <> '' AND $3 > 0 AND $4 > 0",
    ];
    for sql in statements {
        sqlx::query(sql)
            .bind(HISTORY_DAG)
            .bind(&dag.source_hash)
            .bind(runs as i64)
            .bind(HISTORY_TASKS as i32)
            .execute(pool)
            .await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

async fn history_instances(store: &Store) -> anyhow::Result<i64> {
    let pool = store
        .pg_pool()
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL only"))?;
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM task_instances WHERE dag_id = $1")
            .bind(HISTORY_DAG)
            .fetch_one(pool)
            .await?,
    )
}

/// The scheduler's loop (as `Scheduler::run`), recording each tick's duration.
async fn scheduler_loop(
    scheduler: Scheduler,
    store: Store,
    ticks: Arc<Mutex<Vec<Duration>>>,
    cancel: CancellationToken,
) {
    let poll = scheduler.config().poll_interval;
    while !cancel.is_cancelled() {
        let started = Instant::now();
        let report = scheduler.tick(Utc::now()).await;
        if let Ok(mut ticks) = ticks.lock() {
            ticks.push(started.elapsed());
        }
        if matches!(&report, Ok(r) if r.saturated) {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = store.wakeups().woken(Wake::Scheduler) => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Runs fan1000 `repeats` times with one scheduler (configured by `retention`) and the
/// workers; the wall times and the ticks' durations.
async fn phase(
    store: &Store,
    dag: &Dag,
    repeats: usize,
    retention: RetentionConfig,
    name: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let cancel = CancellationToken::new();
    let mut parts = Vec::new();
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let mut config = SchedulerConfig::new("http://127.0.0.1:8080");
    config.id = format!("bench-scheduler-{name}");
    config.retention = retention;
    parts.push(tokio::spawn(scheduler_loop(
        Scheduler::new(store.clone(), config),
        store.clone(),
        ticks.clone(),
        cancel.clone(),
    )));
    for w in 0..WORKERS {
        let mut config = WorkerConfig::new(format!("bench-worker-{name}-{w}"), "localhost");
        config.concurrency = SLOTS;
        let worker = Worker::new(store.clone(), config);
        let cancel = cancel.clone();
        parts.push(tokio::spawn(async move {
            let _ = worker.run(cancel).await;
        }));
    }
    // A warm-up run, then the timed ones.
    support::trigger_and_wait(store, dag, Duration::from_millis(20)).await?;
    let mut walls = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        walls.push(
            support::trigger_and_wait(store, dag, Duration::from_millis(20))
                .await?
                .1,
        );
    }
    cancel.cancel();
    for part in parts {
        let _ = part.await;
    }
    let ticks = ticks.lock().map(|t| t.clone()).unwrap_or_default();
    Ok((walls, ticks))
}

fn print_phase(name: &str, walls: &[Duration], ticks: &[Duration]) {
    let (min, med, max) = support::summary(walls.to_vec());
    let tick_max = ticks.iter().max().copied().unwrap_or_default();
    println!(
        "  {name:34} fan1000 min {} / median {} / max {}; {} ticks, p99 {}, max {}{}",
        support::ms(min),
        support::ms(med),
        support::ms(max),
        ticks.len(),
        support::ms(support::percentile(ticks.to_vec(), 99)),
        support::ms(tick_max),
        if tick_max > Duration::from_secs(1) {
            "  SLOW TICK (goal: none over 1 s)"
        } else {
            ""
        }
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = env_number("NIGHTSHIFT_BENCH_RUNS", 20_000);
    let repeats = env_number("NIGHTSHIFT_BENCH_REPEATS", 5);
    println!(
        "retention: fan1000 noop ({WORKERS} workers x {SLOTS} slots) beside a background clean of \
         {runs} runs x {HISTORY_TASKS} tasks ({} task instances) of finished history, PostgreSQL",
        runs * HISTORY_TASKS
    );
    let (store, db) = support::fresh_store("postgres").await?;
    store
        .upsert_pool(&nightshift_store::Pool {
            name: nightshift_store::DEFAULT_POOL.to_owned(),
            slots: 100_000,
            description: String::new(),
        })
        .await?;
    let seeding = Instant::now();
    seed_history(&store, runs).await?;
    println!(
        "  seeded {} history instances in {:.1} s",
        history_instances(&store).await?,
        seeding.elapsed().as_secs_f64()
    );
    let dags_dir = db.path().join("dags");
    std::fs::create_dir(&dags_dir)?;
    let file = dags_dir.join("fan.toml");
    std::fs::write(&file, fan_source())?;
    let dag = parse_dag(&file.display().to_string(), &fan_source())?;
    let options = SyncOptions {
        unpause_new: true,
        ..SyncOptions::default()
    };
    sync_folder(&store, &dags_dir, &options, Utc::now()).await?;
    let listener = {
        let (store, cancel) = (store.clone(), CancellationToken::new());
        let handle = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                let _ = store.listen(cancel).await;
            }
        });
        (handle, cancel)
    };

    let (alone, alone_ticks) =
        phase(&store, &dag, repeats, RetentionConfig::default(), "alone").await?;
    print_phase("alone", &alone, &alone_ticks);

    let before = history_instances(&store).await?;
    let clean_started = Instant::now();
    let retention = RetentionConfig {
        history: Some(Duration::from_secs(86_400)),
        every: Duration::from_secs(3_600),
        ..RetentionConfig::default()
    };
    let (beside, beside_ticks) = phase(&store, &dag, repeats, retention, "beside").await?;
    let during = clean_started.elapsed();
    let after = history_instances(&store).await?;
    print_phase("beside a background clean", &beside, &beside_ticks);
    let slowdown = support::summary(beside.clone()).1.as_secs_f64()
        / support::summary(alone.clone())
            .1
            .as_secs_f64()
            .max(f64::EPSILON)
        - 1.0;
    println!(
        "  median slowdown {:+.1} % (goal < 20 %); the clean deleted {} history instances in \
         those {:.1} s ({} left: it was {} throughout)",
        slowdown * 100.0,
        before - after,
        during.as_secs_f64(),
        after,
        // The newest scheduled run stays for catch-up.
        if after > HISTORY_TASKS as i64 {
            "running"
        } else {
            "NOT running (more history needed)"
        }
    );

    // The background pass goes on after the phase; its whole time, resting as it does.
    let mut left = after;
    while left > HISTORY_TASKS as i64 && clean_started.elapsed() < Duration::from_secs(3_600) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = history_instances(&store).await?;
    }
    let took = clean_started.elapsed();
    println!(
        "  the background clean of {} history instances (with their tries and log lines) took \
         {:.1} s ({:.0} task instances/s, resting as long as it works)",
        before - left,
        took.as_secs_f64(),
        (before - left) as f64 / took.as_secs_f64().max(f64::EPSILON)
    );

    listener.1.cancel();
    let _ = listener.0.await;
    store.close().await;
    support::drop_store("postgres").await?;
    Ok(())
}
