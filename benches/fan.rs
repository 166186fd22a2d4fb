//! `fan1000` / `fan10000`: one task → N parallel tasks → one task, `noop` and `true`
//! commands, with 1, 2 and 4 workers (and one scheduler) in this process; throughput in
//! task instances per second from trigger to run success, on SQLite and PostgreSQL.
//!
//! Run: `cargo bench --bench fan`. `NIGHTSHIFT_BENCH_FAN=1000,10000` sets the widths,
//! `NIGHTSHIFT_BENCH_WORKERS=1,2,4` the worker counts, `NIGHTSHIFT_BENCH_KINDS=noop,true`
//! the task kinds, `NIGHTSHIFT_BENCH_REPEATS=N` the runs per case (default 3),
//! `NIGHTSHIFT_BENCH_BACKENDS=sqlite` to skip PostgreSQL. Each worker runs up to
//! `NIGHTSHIFT_BENCH_CONCURRENCY` (default 32) tries at once.

#[path = "support.rs"]
mod support;

use std::time::Duration;

use chrono::Utc;
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_scheduler::loader::{sync_folder, SyncOptions};
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::Store;
use nightshift_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

fn fan(width: usize, kind: &str) -> String {
    let body = match kind {
        "noop" => "type = \"noop\"\n",
        _ => "type = \"command\"\ncommand = [\"true\"]\n",
    };
    let mut source = format!("max_active_tasks = {width}\n[tasks.first]\n{body}");
    for t in 0..width {
        source.push_str(&format!(
            "[tasks.t{t:05}]\n{body}depends_on = [\"first\"]\n"
        ));
    }
    let all: Vec<String> = (0..width).map(|t| format!("\"t{t:05}\"")).collect();
    source.push_str(&format!(
        "[tasks.last]\n{body}depends_on = [{}]\n",
        all.join(", ")
    ));
    source
}

fn list<T: std::str::FromStr>(var: &str, default: &str) -> Vec<T> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

async fn run_once(store: &Store, dag: &Dag) -> anyhow::Result<Duration> {
    let (_, took) = support::trigger_and_wait(store, dag, Duration::from_millis(20)).await?;
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repeats: usize = std::env::var("NIGHTSHIFT_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let widths: Vec<usize> = list("NIGHTSHIFT_BENCH_FAN", "1000,10000");
    let worker_counts: Vec<usize> = list("NIGHTSHIFT_BENCH_WORKERS", "1,2,4");
    let kinds: Vec<String> = list("NIGHTSHIFT_BENCH_KINDS", "noop,true");
    let concurrency: usize = std::env::var("NIGHTSHIFT_BENCH_CONCURRENCY")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(32);
    println!(
        "fan: first -> N parallel -> last, trigger -> run success, {repeats} runs each \
         (one scheduler, W workers of {concurrency} slots, in process)"
    );
    for backend in support::backends() {
        for &width in &widths {
            for kind in &kinds {
                for &workers in &worker_counts {
                    let (store, db) = support::fresh_store(&backend).await?;
                    // Every instance in the default pool may run at once.
                    store
                        .upsert_pool(&nightshift_store::Pool {
                            name: nightshift_store::DEFAULT_POOL.to_owned(),
                            slots: 100_000,
                            description: String::new(),
                        })
                        .await?;
                    let dags_dir = db.path().join("dags");
                    std::fs::create_dir(&dags_dir)?;
                    let source = fan(width, kind);
                    let file = dags_dir.join("fan.toml");
                    std::fs::write(&file, &source)?;
                    let dag = parse_dag(&file.display().to_string(), &source)?;
                    let options = SyncOptions {
                        unpause_new: true,
                        ..SyncOptions::default()
                    };
                    sync_folder(&store, &dags_dir, &options, Utc::now()).await?;
                    let cancel = CancellationToken::new();
                    let mut parts = Vec::new();
                    parts.push(tokio::spawn({
                        let (store, cancel) = (store.clone(), cancel.clone());
                        async move {
                            let _ = store.listen(cancel).await;
                        }
                    }));
                    let scheduler = Scheduler::new(
                        store.clone(),
                        SchedulerConfig::new("http://127.0.0.1:8080"),
                    );
                    parts.push(tokio::spawn({
                        let cancel = cancel.clone();
                        async move {
                            let _ = scheduler.run(cancel).await;
                        }
                    }));
                    for w in 0..workers {
                        let mut config =
                            WorkerConfig::new(format!("bench-worker-{w}"), "localhost");
                        config.concurrency = concurrency;
                        let worker = Worker::new(store.clone(), config);
                        parts.push(tokio::spawn({
                            let cancel = cancel.clone();
                            async move {
                                let _ = worker.run(cancel).await;
                            }
                        }));
                    }
                    let mut walls = Vec::new();
                    for _ in 0..repeats {
                        walls.push(run_once(&store, &dag).await?);
                    }
                    let (min, med, max) = support::summary(walls);
                    let rate = |d: Duration| (width + 2) as f64 / d.as_secs_f64();
                    println!(
                        "  {backend:8} fan{width:<5} {kind:4} {workers} worker(s): min {} / median {} / max {}  \
                         = {:.0} / {:.0} / {:.0} task instances/s",
                        support::ms(min),
                        support::ms(med),
                        support::ms(max),
                        rate(max),
                        rate(med),
                        rate(min),
                    );
                    cancel.cancel();
                    for part in parts {
                        let _ = part.await;
                    }
                    store.close().await;
                    support::drop_store(&backend).await?;
                }
            }
        }
    }
    Ok(())
}
