//! Memory and resource bounds of the real processes (the `nightshift` binary, as deployed):
//! peak RSS (`VmHWM`) of scheduler, worker and web, and of `standalone`, in these cases:
//!
//! - `idle`: 1,000 DAG files of 10 tasks loaded, then 10 s of idling: `standalone` on
//!   SQLite, and scheduler + worker + web as separate processes on PostgreSQL;
//! - `fan`: one task → 10,000 parallel `noop` tasks → one task, with one scheduler and two
//!   workers on PostgreSQL (also prints the throughput);
//! - `log`: one command task printing 1 GiB of log lines (the stored log is capped at
//!   100,000 lines / 10 MiB; the worker must drain the rest without holding it);
//! - `map`: a `for_each` over a literal list of 100,000 items (`noop`);
//! - `wide`: a DAG of 5,000 `noop` tasks in 50 parallel chains of 100.
//!
//! Run: `cargo bench --bench memory`; `NIGHTSHIFT_BENCH_MEMORY=idle,log` picks cases.
//! PostgreSQL comes from `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Backend, Env};

/// Every run is triggered at this logical date, so its run id is known.
const LOGICAL_DATE: &str = "2026-01-01T00:00:00Z";
const RUN_ID: &str = "manual__2026-01-01T00:00:00+00:00";

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(case: &str, procs: &[(&str, u32)]) {
    for (role, pid) in procs {
        let (now, peak) = rss(*pid);
        println!("{case:<8} {role:<22} rss {now:>7.1} MiB   peak {peak:>7.1} MiB");
    }
}

fn free_bind() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let port = listener.local_addr().expect("addr").port();
    format!("127.0.0.1:{port}")
}

/// Triggers `dag` and waits for its run to end; returns how long it took.
fn trigger_wait(env: &Env, dag: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let out = env.run(
        &[
            "dags",
            "trigger",
            dag,
            "--wait",
            "--logical-date",
            LOGICAL_DATE,
        ],
        limit,
    );
    assert!(
        out.status.success(),
        "{dag}: trigger --wait failed\nstdout:\n{}\nstderr:\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        env.logs()
    );
    started.elapsed()
}

/// Waits until `count` DAGs are loaded.
fn wait_loaded(env: &Env, count: usize) {
    let started = Instant::now();
    loop {
        let dags = env.json(&["dags", "list"]);
        let loaded = dags.as_array().map_or(0, Vec::len);
        if loaded >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {loaded} of {count} DAGs loaded\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ten_task_dags(env: &Env, count: usize) {
    for d in 0..count {
        let mut source = String::from("schedule = \"0 3 * * *\"\n");
        for t in 0..10 {
            source.push_str(&format!("[tasks.t{t}]\ntype = \"noop\"\n"));
            if t > 0 {
                source.push_str(&format!("depends_on = [\"t{}\"]\n", t - 1));
            }
        }
        env.write_dag(&format!("d{d:04}.toml"), &source);
    }
}

fn idle() {
    let env = {
        let mut env = Env::new(Backend::Sqlite);
        ten_task_dags(&env, 1000);
        let pid = env.spawn(&["standalone", "--bind", &free_bind()]);
        wait_loaded(&env, 1000);
        std::thread::sleep(Duration::from_secs(10));
        report("idle", &[("standalone (SQLite)", pid)]);
        env
    };
    drop(env);
    let mut env = Env::new(Backend::Postgres);
    ten_task_dags(&env, 1000);
    let scheduler = env.spawn(&["scheduler"]);
    wait_loaded(&env, 1000);
    let worker = env.spawn(&["worker"]);
    let web = env.spawn(&["web", "--bind", &free_bind()]);
    std::thread::sleep(Duration::from_secs(10));
    report(
        "idle",
        &[
            ("scheduler (PostgreSQL)", scheduler),
            ("worker (PostgreSQL)", worker),
            ("web (PostgreSQL)", web),
        ],
    );
}

fn fan() {
    const WIDTH: usize = 10_000;
    let mut env = Env::new(Backend::Postgres);
    let mut source = format!("max_active_tasks = {WIDTH}\n[tasks.first]\ntype = \"noop\"\n");
    for t in 0..WIDTH {
        source.push_str(&format!(
            "[tasks.t{t:05}]\ntype = \"noop\"\ndepends_on = [\"first\"]\n"
        ));
    }
    let all: Vec<String> = (0..WIDTH).map(|t| format!("\"t{t:05}\"")).collect();
    source.push_str(&format!(
        "[tasks.last]\ntype = \"noop\"\ndepends_on = [{}]\n",
        all.join(", ")
    ));
    env.write_dag("fan.toml", &source);
    env.set_env("NIGHTSHIFT_WORKER_CONCURRENCY", "32");
    let scheduler = env.spawn(&["scheduler"]);
    wait_loaded(&env, 1);
    let w1 = env.spawn(&["worker"]);
    let w2 = env.spawn(&["worker"]);
    let took = trigger_wait(&env, "fan", Duration::from_secs(1800));
    println!(
        "fan      fan10000 noop, 2 workers: {:.1} s, {:.0} task instances/s",
        took.as_secs_f64(),
        (WIDTH + 2) as f64 / took.as_secs_f64()
    );
    report(
        "fan",
        &[("scheduler", scheduler), ("worker 1", w1), ("worker 2", w2)],
    );
}

fn log() {
    let mut env = Env::new(Backend::Postgres);
    // 1 GiB: 2^24 lines of 63 characters and a newline.
    env.write_dag(
        "chatty.toml",
        "[tasks.chatty]\ntype = \"command\"\n\
         command = \"yes 'nightshift writes a rather long log line for the bounds bench' | head -c 1073741824\"\n",
    );
    let scheduler = env.spawn(&["scheduler"]);
    wait_loaded(&env, 1);
    let worker = env.spawn(&["worker"]);
    let took = trigger_wait(&env, "chatty", Duration::from_secs(1800));
    println!("log      1 GiB of log lines: {:.1} s", took.as_secs_f64());
    let stored = env.run(
        &["tasks", "logs", "chatty", RUN_ID, "chatty"],
        Duration::from_secs(120),
    );
    let stored = String::from_utf8_lossy(&stored.stdout).into_owned();
    println!(
        "log      stored: {} lines, {:.1} MiB; the last: {}",
        stored.lines().count(),
        stored.len() as f64 / 1048576.0,
        stored.lines().last().unwrap_or_default()
    );
    report("log", &[("scheduler", scheduler), ("worker", worker)]);
}

fn map() {
    const ITEMS: usize = 100_000;
    let mut env = Env::new(Backend::Postgres);
    let items: Vec<String> = (0..ITEMS).map(|i| i.to_string()).collect();
    env.write_dag(
        "mapped.toml",
        &format!(
            "max_active_tasks = 1024\n[tasks.each]\ntype = \"noop\"\nfor_each = [{}]\n\
             [tasks.join]\ntype = \"noop\"\ndepends_on = [\"each\"]\n",
            items.join(", ")
        ),
    );
    env.set_env("NIGHTSHIFT_WORKER_CONCURRENCY", "32");
    // 100,002 instances: above the default max_tasks_per_dag (20,000) on purpose.
    env.set_env("NIGHTSHIFT_MAX_TASKS_PER_DAG", "200000");
    let scheduler = env.spawn(&["scheduler"]);
    wait_loaded(&env, 1);
    let w1 = env.spawn(&["worker"]);
    let w2 = env.spawn(&["worker"]);
    let took = trigger_wait(&env, "mapped", Duration::from_secs(3600));
    println!(
        "map      for_each over {ITEMS} items: {:.1} s, {:.0} task instances/s",
        took.as_secs_f64(),
        (ITEMS + 1) as f64 / took.as_secs_f64()
    );
    report(
        "map",
        &[("scheduler", scheduler), ("worker 1", w1), ("worker 2", w2)],
    );
}

fn wide() {
    let mut env = Env::new(Backend::Postgres);
    let mut source = String::from("max_active_tasks = 1024\n");
    for chain in 0..50 {
        for step in 0..100 {
            source.push_str(&format!("[tasks.c{chain:02}_{step:03}]\ntype = \"noop\"\n"));
            if step > 0 {
                source.push_str(&format!("depends_on = [\"c{chain:02}_{:03}\"]\n", step - 1));
            }
        }
    }
    env.write_dag("wide.toml", &source);
    env.set_env("NIGHTSHIFT_WORKER_CONCURRENCY", "32");
    let scheduler = env.spawn(&["scheduler"]);
    wait_loaded(&env, 1);
    let w1 = env.spawn(&["worker"]);
    let w2 = env.spawn(&["worker"]);
    let took = trigger_wait(&env, "wide", Duration::from_secs(3600));
    println!(
        "wide     5,000 tasks (50 chains of 100): {:.1} s, {:.0} task instances/s",
        took.as_secs_f64(),
        5000.0 / took.as_secs_f64()
    );
    report(
        "wide",
        &[("scheduler", scheduler), ("worker 1", w1), ("worker 2", w2)],
    );
}

fn main() {
    let cases = std::env::var("NIGHTSHIFT_BENCH_MEMORY")
        .unwrap_or_else(|_| "idle,fan,log,map,wide".to_owned());
    for case in cases.split(',').map(str::trim) {
        match case {
            "idle" => idle(),
            "fan" => fan(),
            "log" => log(),
            "map" => map(),
            "wide" => wide(),
            "" => {}
            other => panic!("unknown case {other:?} (idle, fan, log, map, wide)"),
        }
    }
}
