//! Shared helpers of the benchmark binaries: fresh databases, a triggered run followed
//! to its end, and summary statistics.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_core::dag::Dag;
use nightshift_core::state::RunState;
use nightshift_store::{DagRun, RunType, Store, TriggerParams};

/// Triggers a manual run of `dag` now and polls it every `poll` until it ends; fails
/// unless it succeeded. Returns the run and the time from trigger to its end.
pub async fn trigger_and_wait(
    store: &Store,
    dag: &Dag,
    poll: Duration,
) -> anyhow::Result<(DagRun, Duration)> {
    let params = TriggerParams {
        run_id: None,
        logical_date: Some(Utc::now()),
        data_interval: None,
        conf: serde_json::Value::Null,
        run_type: RunType::Manual,
        now: Utc::now(),
    };
    let started = Instant::now();
    let run = store.trigger_run(dag, &params).await?;
    loop {
        let current = store
            .get_run(run.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run vanished"))?;
        if current.state.is_finished() {
            let took = started.elapsed();
            anyhow::ensure!(
                current.state == RunState::Success,
                "run ended {}",
                current.state
            );
            return Ok((current, took));
        }
        tokio::time::sleep(poll).await;
    }
}

/// The backends a benchmark runs on: `NIGHTSHIFT_BENCH_BACKENDS=sqlite,postgres` (default both).
pub fn backends() -> Vec<String> {
    std::env::var("NIGHTSHIFT_BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect()
}

/// A migrated store on a fresh database of `backend`, and the temp dir holding it.
pub async fn fresh_store(backend: &str) -> anyhow::Result<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        "postgres" => {
            let admin = std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
            let name = format!("ns_bench_{}", std::process::id());
            let pool = sqlx::PgPool::connect(&admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await?;
            pool.close().await;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            format!("{base}/{name}")
        }
        other => anyhow::bail!("unknown backend {other:?}"),
    };
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    Ok((store, dir))
}

/// Drops the PostgreSQL database [`fresh_store`] made (call after closing the store).
pub async fn drop_store(backend: &str) -> anyhow::Result<()> {
    if backend == "postgres" {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let pool = sqlx::PgPool::connect(&admin).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS ns_bench_{} WITH (FORCE)",
            std::process::id()
        ))
        .execute(&pool)
        .await?;
        pool.close().await;
    }
    Ok(())
}

/// (min, median, max) of some durations.
pub fn summary(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

/// The `p`-th percentile (0..=100) of some durations.
pub fn percentile(mut samples: Vec<Duration>, p: usize) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() - 1) * p) / 100;
    samples[index]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
