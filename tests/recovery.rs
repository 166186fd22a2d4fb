//! End-to-end tests of recovery and scale: a worker killed mid-task, and many parallel
//! tasks across several scheduler and worker processes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
        Duration::from_secs(30),
        || std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("start-1")),
    );
    env.kill(first);
    env.spawn(&["worker"]);
    wait_for("the run to finish", &env, Duration::from_secs(60), || {
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

both_backends!(killed_worker_is_reaped_and_its_task_retried_elsewhere);
