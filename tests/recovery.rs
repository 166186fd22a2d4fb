//! End-to-end tests of recovery and scale: a worker killed mid-task, PostgreSQL stopped
//! and started under running tasks, a rolling restart of every worker, and many parallel
//! tasks across several scheduler and worker processes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::pg_server::PgServer;
use common::{Backend, Env};
use serde_json::Value;

fn wait_for(what: &str, env: &Env, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn only_run(env: &Env, dag: &str) -> Value {
    let runs = env.json(&["runs", "list", dag]);
    runs.as_array()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(Value::Null)
}

fn killed_worker_is_reaped_and_its_task_retried_elsewhere(backend: Backend) {
    let mut env = Env::new(backend);
    env.set_env("NIGHTSHIFT_WORKER_LEASE", "2s");
    env.write_dag(
        "slow.toml",
        r#"
[tasks.slow]
type = "command"
retries = 1
retry_delay = "1s"
command = "echo start-$NIGHTSHIFT_TRY_NUMBER >> marker; sleep 3; echo done-$NIGHTSHIFT_TRY_NUMBER >> marker"
"#,
    );
    env.spawn(&["scheduler"]);
    let first = env.spawn(&["worker"]);
    env.ok(&["dags", "trigger", "slow"]);
    let marker = env.path().join("marker");
    wait_for(
        "the first try to start",
        &env,
        Duration::from_secs(90),
        || std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("start-1")),
    );
    env.kill(first);
    env.spawn(&["worker"]);
    wait_for("the run to finish", &env, Duration::from_secs(120), || {
        only_run(&env, "slow")["state"] == "success"
    });
    let run_id = only_run(&env, "slow")["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    let attempts = env.json(&["tasks", "attempts", "slow", &run_id, "slow"]);
    let attempts = attempts.as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(
        attempts[0]["state"], "up_for_retry",
        "the killed try was reaped"
    );
    let error = attempts[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("lease"),
        "reap reason names the lease: {error}"
    );
    assert_eq!(attempts[1]["state"], "success");
    assert_ne!(
        attempts[0]["worker"], attempts[1]["worker"],
        "another worker retried it"
    );
    // The killed try's process died with its worker: it never finished its work, and
    // nothing reported success for it afterwards.
    std::thread::sleep(Duration::from_secs(4));
    let marker = std::fs::read_to_string(&marker).expect("marker");
    assert_eq!(marker, "start-1\nstart-2\ndone-2\n");
    let attempts = env.json(&["tasks", "attempts", "slow", &run_id, "slow"]);
    assert_eq!(attempts[0]["state"], "up_for_retry", "{attempts:#}");
}

/// 500 parallel command tasks, two schedulers and two workers on one PostgreSQL: every
/// task runs exactly once.
#[test]
fn five_hundred_parallel_tasks_run_exactly_once_across_processes() {
    let mut env = Env::new(Backend::Postgres);
    let mut dag = String::from("max_active_tasks = 64\n");
    for i in 0..500 {
        dag.push_str(&format!(
            "[tasks.t{i:03}]\ntype = \"command\"\ncommand = \"echo t{i:03} >> ids.txt\"\n"
        ));
    }
    env.write_dag("wide.toml", &dag);
    env.ok(&["db", "migrate"]);
    env.ok(&["dags", "list"]);
    for _ in 0..2 {
        env.spawn(&["scheduler"]);
        env.spawn(&["worker", "--concurrency", "16"]);
    }
    let started = Instant::now();
    let out = env.run(
        &["dags", "trigger", "wide", "--wait", "--output", "json"],
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.logs()
    );
    eprintln!("500 tasks took {:?}", started.elapsed());
    let ids = std::fs::read_to_string(env.path().join("ids.txt")).expect("ids");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids.lines() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 500, "every task ran");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "tasks that ran more than once: {twice:?}");
    let run = only_run(&env, "wide");
    let run_id = run["run_id"].as_str().expect("run id");
    let tis = env.json(&["tasks", "list", "wide", run_id]);
    let tis = tis.as_array().expect("tis");
    assert!(tis
        .iter()
        .all(|t| t["state"] == "success" && t["try_number"] == 1));
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-A", "-t", "-c", sql])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// PostgreSQL stops (every connection cut) while four tries run, and comes back a few
/// seconds later: no process exits, the worker keeps its tries, and their outcomes and
/// logs are stored once the database is back. No try is retried.
#[test]
fn processes_ride_out_a_database_restart_and_keep_their_tries() {
    let server = PgServer::start();
    let url = server.create_database("restart");
    let mut env = Env::on_database(url.clone());
    let mut dag = String::from("[defaults]\nretries = 0\n");
    for i in 0..4 {
        dag.push_str(&format!(
            "[tasks.t{i}]\ntype = \"command\"\ncommand = \"echo before; sleep 6; echo after\"\n"
        ));
    }
    env.write_dag("outage.toml", &dag);
    env.ok(&["db", "migrate"]);
    env.ok(&["dags", "list"]);
    env.spawn(&["scheduler"]);
    env.spawn(&["worker"]);
    env.ok(&["dags", "trigger", "outage"]);
    wait_for(
        "all four tries to run",
        &env,
        Duration::from_secs(60),
        || {
            psql(
                &url,
                "SELECT count(*) FROM task_instances WHERE state = 'running'",
            ) == "4"
        },
    );
    server.stop();
    std::thread::sleep(Duration::from_secs(4));
    server.start_again();
    wait_for("the run to finish", &env, Duration::from_secs(90), || {
        matches!(
            psql(&url, "SELECT state FROM dag_runs").as_str(),
            "success" | "failed"
        )
    });
    assert!(env.exited().is_empty(), "no process exited\n{}", env.logs());
    assert_eq!(
        psql(&url, "SELECT state FROM dag_runs"),
        "success",
        "{}",
        env.logs()
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM task_instances WHERE state = 'success' AND try_number = 1"
        ),
        "4",
        "every task succeeded at its first try\n{}",
        env.logs()
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM task_logs WHERE line IN ('before', 'after')"
        ),
        "8",
        "both lines of every try were stored"
    );
    assert!(!env.logs().contains("panicked"), "{}", env.logs());
}

/// Every worker is replaced while a run is in progress: each old worker gets SIGTERM
/// after its replacement started, stops claiming, lets its tries finish within the
/// shutdown grace and hands back the rest. Nothing is lost, nothing fails (the tasks
/// have no retries, so a handed-back try must cost none), nothing runs twice at once.
#[test]
fn rolling_restart_of_every_worker_loses_nothing() {
    let mut env = Env::new(Backend::Postgres);
    env.set_env("NIGHTSHIFT_WORKER_SHUTDOWN_GRACE", "1s");
    env.set_env("NIGHTSHIFT_WORKER_CONCURRENCY", "8");
    let mut dag = String::from("[defaults]\nretries = 0\n");
    for i in 0..40 {
        dag.push_str(&format!(
            "[tasks.t{i:02}]\ntype = \"command\"\n\
             command = \"echo start t{i:02} $NIGHTSHIFT_TRY_NUMBER >> marks; sleep 2; echo done t{i:02} >> marks\"\n"
        ));
    }
    env.write_dag("rolling.toml", &dag);
    env.ok(&["db", "migrate"]);
    env.ok(&["dags", "list"]);
    env.spawn(&["scheduler"]);
    let mut workers = vec![env.spawn(&["worker"]), env.spawn(&["worker"])];
    env.ok(&["dags", "trigger", "rolling"]);
    let marks = env.path().join("marks");
    let started = |env: &Env| {
        std::fs::read_to_string(env.path().join("marks"))
            .map(|m| m.lines().filter(|l| l.starts_with("start")).count())
            .unwrap_or(0)
    };
    wait_for("tries to start", &env, Duration::from_secs(60), || {
        started(&env) >= 8
    });
    let mut handed_back = 0;
    for _round in 0..2 {
        let old = workers.remove(0);
        workers.push(env.spawn(&["worker"]));
        let status = env.terminate(old).expect("the old worker was running");
        assert!(
            status.success(),
            "a drained worker exits cleanly: {status}\n{}",
            env.logs()
        );
        handed_back = env.logs().matches("try handed back").count();
        std::thread::sleep(Duration::from_millis(1500));
    }
    wait_for("the run to finish", &env, Duration::from_secs(180), || {
        matches!(
            only_run(&env, "rolling")["state"].as_str(),
            Some("success" | "failed")
        )
    });
    let run = only_run(&env, "rolling");
    assert_eq!(run["state"], "success", "{run:#}\n{}", env.logs());
    let marks = std::fs::read_to_string(&marks).expect("marks");
    let mut done: BTreeMap<&str, usize> = BTreeMap::new();
    for line in marks.lines().filter(|l| l.starts_with("done")) {
        *done.entry(line).or_default() += 1;
    }
    assert_eq!(done.len(), 40, "every task completed\n{marks}");
    assert!(
        done.values().all(|n| *n == 1),
        "no task completed twice: {done:?}"
    );
    assert!(
        handed_back > 0,
        "the shutdown grace (1 s) is shorter than the tasks (2 s), so some were handed back\n{}",
        env.logs()
    );
    assert!(env.exited().is_empty(), "{}", env.logs());
}

both_backends!(killed_worker_is_reaped_and_its_task_retried_elsewhere);
