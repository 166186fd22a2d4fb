//! `parse1000`: how long loading 1,000 generated DAG files of 10 tasks each takes —
//! parsing and validating them, and syncing them into each store backend.
//!
//! Run: `cargo bench --bench parse` (`NIGHTSHIFT_BENCH_BACKENDS=sqlite` to skip PostgreSQL).

#[path = "support.rs"]
mod support;

use std::time::Instant;

use chrono::Utc;
use nightshift_scheduler::loader::{scan_folder, sync_folder, SyncOptions};

const FILES: usize = 1000;
const TASKS: usize = 10;
const REPEATS: usize = 5;

fn generate(dir: &std::path::Path) -> std::io::Result<()> {
    for f in 0..FILES {
        let mut source = format!(
            "description = \"generated DAG {f}\"\nschedule = \"{} 3 * * *\"\ntimezone = \"Asia/Tokyo\"\nstart_date = \"2026-01-01\"\n\n[defaults]\nretries = 2\nretry_delay = \"5m\"\n",
            f % 60
        );
        for t in 0..TASKS {
            source.push_str(&format!(
                "\n[tasks.t{t}]\ntype = \"command\"\ncommand = \"echo {{{{ ds }}}} {t}\"\n"
            ));
            if t > 0 {
                source.push_str(&format!("depends_on = [\"t{}\"]\n", t - 1));
            }
        }
        std::fs::write(dir.join(format!("dag_{f:04}.toml")), source)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dags = tempfile::tempdir()?;
    generate(dags.path())?;
    let mut parse = Vec::new();
    for _ in 0..REPEATS {
        let started = Instant::now();
        let scan = scan_folder(dags.path());
        parse.push(started.elapsed());
        anyhow::ensure!(
            scan.dags.len() == FILES && scan.errors.is_empty(),
            "all files valid"
        );
    }
    let (min, med, max) = support::summary(parse);
    println!(
        "parse1000 ({FILES} files x {TASKS} tasks), parse + validate: min {} / median {} / max {}",
        support::ms(min),
        support::ms(med),
        support::ms(max)
    );
    for backend in support::backends() {
        let (store, _db) = support::fresh_store(&backend).await?;
        let mut first_sync = None;
        let mut resync = Vec::new();
        for i in 0..REPEATS {
            let started = Instant::now();
            let report =
                sync_folder(&store, dags.path(), &SyncOptions::default(), Utc::now()).await?;
            let took = started.elapsed();
            anyhow::ensure!(report.loaded == FILES, "all DAGs loaded");
            if i == 0 {
                first_sync = Some(took);
            } else {
                resync.push(took);
            }
        }
        let (min, med, max) = support::summary(resync);
        println!(
            "parse1000 into {backend}: first load {} ; unchanged re-sync min {} / median {} / max {}",
            support::ms(first_sync.unwrap_or_default()),
            support::ms(min),
            support::ms(med),
            support::ms(max)
        );
        store.close().await;
        support::drop_store(&backend).await?;
    }
    Ok(())
}
