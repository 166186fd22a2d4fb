//! `chain40`: a chain of 40 `noop` tasks and of 40 `true` commands, wall time from
//! trigger to run success, and the handoff delay between an upstream's end and its
//! downstream's start — with the scheduler and a worker running in this process, as in
//! `nightshift standalone`, on SQLite and PostgreSQL.
//!
//! Run: `cargo bench --bench chain` (`NIGHTSHIFT_BENCH_BACKENDS=sqlite` to skip PostgreSQL,
//! `NIGHTSHIFT_BENCH_REPEATS=N` to change the number of runs, default 5).

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_scheduler::loader::{sync_folder, SyncOptions};
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::Store;
use nightshift_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

const LENGTH: usize = 40;

fn chain(kind: &str) -> String {
    let mut source = String::new();
    for t in 0..LENGTH {
        source.push_str(&format!("[tasks.t{t:02}]\n"));
        match kind {
            "noop" => source.push_str("type = \"noop\"\n"),
            _ => source.push_str("type = \"command\"\ncommand = [\"true\"]\n"),
        }
        if t > 0 {
            source.push_str(&format!("depends_on = [\"t{:02}\"]\n", t - 1));
        }
    }
    source
}

struct Sample {
    wall: Duration,
    handoffs: Vec<Duration>,
}

async fn run_once(store: &Store, dag: &Dag) -> anyhow::Result<Sample> {
    let (run, wall) = support::trigger_and_wait(store, dag, Duration::from_millis(2)).await?;
    let instances = store.list_task_instances(run.id).await?;
    let by_task: BTreeMap<&str, _> = instances
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti))
        .collect();
    let mut handoffs = Vec::new();
    for t in 1..LENGTH {
        let (up, down) = (
            by_task[format!("t{:02}", t - 1).as_str()],
            by_task[format!("t{t:02}").as_str()],
        );
        if let (Some(end), Some(start)) = (up.end_date, down.start_date) {
            handoffs.push((start - end).to_std().unwrap_or_default());
        }
    }
    Ok(Sample { wall, handoffs })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repeats: usize = std::env::var("NIGHTSHIFT_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    println!("chain{LENGTH}: trigger -> run success, {repeats} runs each (scheduler + worker in process)");
    for backend in support::backends() {
        let (store, db) = support::fresh_store(&backend).await?;
        let dags_dir = db.path().join("dags");
        std::fs::create_dir(&dags_dir)?;
        let mut dags = Vec::new();
        for kind in ["noop", "true"] {
            let source = chain(kind);
            let file = dags_dir.join(format!("chain_{kind}.toml"));
            std::fs::write(&file, &source)?;
            dags.push((kind, parse_dag(&file.display().to_string(), &source)?));
        }
        let options = SyncOptions {
            unpause_new: true,
            ..SyncOptions::default()
        };
        sync_folder(&store, &dags_dir, &options, Utc::now()).await?;
        let cancel = CancellationToken::new();
        let scheduler =
            Scheduler::new(store.clone(), SchedulerConfig::new("http://127.0.0.1:8080"));
        let worker = Worker::new(
            store.clone(),
            WorkerConfig::new("bench-worker", "localhost"),
        );
        let parts = [
            tokio::spawn({
                let (store, cancel) = (store.clone(), cancel.clone());
                async move {
                    let _ = store.listen(cancel).await;
                }
            }),
            tokio::spawn({
                let cancel = cancel.clone();
                async move {
                    let _ = scheduler.run(cancel).await;
                }
            }),
            tokio::spawn({
                let cancel = cancel.clone();
                async move {
                    let _ = worker.run(cancel).await;
                }
            }),
        ];
        for (kind, dag) in &dags {
            // One warm-up run fills caches and connection pools.
            run_once(&store, dag).await?;
            let mut walls = Vec::new();
            let mut handoffs = Vec::new();
            for _ in 0..repeats {
                let sample = run_once(&store, dag).await?;
                walls.push(sample.wall);
                handoffs.extend(sample.handoffs);
            }
            let (min, med, max) = support::summary(walls);
            println!(
                "  {backend:8} {kind:4}: total min {} / median {} / max {} ; handoff median {} / p99 {}",
                support::ms(min),
                support::ms(med),
                support::ms(max),
                support::ms(support::percentile(handoffs.clone(), 50)),
                support::ms(support::percentile(handoffs, 99)),
            );
        }
        cancel.cancel();
        for part in parts {
            let _ = part.await;
        }
        store.close().await;
        support::drop_store(&backend).await?;
    }
    Ok(())
}
