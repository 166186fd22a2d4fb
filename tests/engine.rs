//! End-to-end tests of the engine: the real binary's scheduler and worker processes
//! running DAGs on SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Backend, Env};
use serde_json::Value;

fn start_engine(env: &mut Env) {
    env.spawn(&["scheduler"]);
    env.spawn(&["worker"]);
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

fn trigger_wait(env: &Env, dag: &str) -> Value {
    let out = env.ok_within(
        &["dags", "trigger", dag, "--wait", "--output", "json"],
        Duration::from_secs(120),
    );
    serde_json::from_str(&out).expect("json")
}

const CHAIN: &str = r#"
[tasks]
a = { type = "command", command = "echo a >> order.txt" }
b = { type = "command", depends_on = ["a"], command = "echo b >> order.txt" }
c = { type = "command", depends_on = ["b"], command = "echo c >> order.txt" }
"#;

fn chain_runs_in_order_via_trigger_wait(backend: Backend) {
    let mut env = Env::new(backend);
    env.write_dag("chain.toml", CHAIN);
    start_engine(&mut env);
    let tis = trigger_wait(&env, "chain");
    let tis = tis.as_array().expect("instances");
    assert_eq!(tis.len(), 3);
    assert!(tis.iter().all(|ti| ti["state"] == "success"), "{tis:#?}");
    let order = std::fs::read_to_string(env.path().join("order.txt")).expect("order file");
    assert_eq!(order, "a\nb\nc\n");
    let by_task: BTreeMap<&str, &Value> = tis
        .iter()
        .map(|ti| (ti["task_id"].as_str().expect("id"), ti))
        .collect();
    assert!(time(&by_task["a"]["end_date"]) <= time(&by_task["b"]["start_date"]));
    assert!(time(&by_task["b"]["end_date"]) <= time(&by_task["c"]["start_date"]));
}

fn scheduled_chain_runs_when_its_interval_ends(backend: Backend) {
    let mut env = Env::new(backend);
    // Every minute, starting at the current minute: the first interval ends at the next
    // minute boundary, and the scheduler must create and run it then, unprompted.
    let start = Utc::now().format("%Y-%m-%dT%H:%M:00Z");
    env.write_dag(
        "every_minute.toml",
        &format!("schedule = \"* * * * *\"\nstart_date = \"{start}\"\ncatchup = true\n{CHAIN}"),
    );
    start_engine(&mut env);
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let runs = env.json(&["runs", "list", "every_minute"]);
        let done = runs
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["state"] == "success" && r["run_type"] == "scheduled");
        if let Some(run) = done {
            assert!(run["run_id"]
                .as_str()
                .expect("id")
                .starts_with("scheduled__"));
            let order = std::fs::read_to_string(env.path().join("order.txt")).expect("order");
            assert!(order.starts_with("a\nb\nc\n"), "{order}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run succeeded: {runs:#}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn failing_task_retries_with_backoff_then_succeeds(backend: Backend) {
    let mut env = Env::new(backend);
    env.write_dag(
        "flaky.toml",
        r#"
[tasks.flaky]
type = "command"
retries = 2
retry_delay = "1s"
retry_exponential_backoff = true
command = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "try $n"; [ "$n" -ge 3 ]'
"#,
    );
    start_engine(&mut env);
    let tis = trigger_wait(&env, "flaky");
    let ti = &tis[0];
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["try_number"], 3);
    let runs = env.json(&["runs", "list", "flaky"]);
    let run_id = runs[0]["run_id"].as_str().expect("run id").to_owned();
    let attempts = env.json(&["tasks", "attempts", "flaky", &run_id, "flaky"]);
    let attempts = attempts.as_array().expect("attempts");
    let states: Vec<&str> = attempts
        .iter()
        .map(|a| a["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        states,
        ["up_for_retry", "up_for_retry", "success"],
        "{attempts:#?}"
    );
    // Exponential backoff: at least 1 s before try 2 and at least 2 s before try 3.
    let gap = |i: usize| time(&attempts[i + 1]["start_date"]) - time(&attempts[i]["end_date"]);
    assert!(
        gap(0) >= chrono::TimeDelta::seconds(1),
        "first backoff {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= chrono::TimeDelta::seconds(2),
        "second backoff {:?}",
        gap(1)
    );
}

fn for_each_fans_out_over_literals_and_upstream_output(backend: Backend) {
    let mut env = Env::new(backend);
    env.write_dag(
        "fan.toml",
        r#"
[tasks]
literal = { type = "command", for_each = ["x", "y"], command = "echo literal-{{ item }} >> items.txt" }
list = { type = "command", command = "echo '[\"a\", \"b\", \"c\"]'" }
each = { type = "command", for_each = { from = "list" }, command = "echo each-{{ item }} >> items.txt" }
join = { type = "command", depends_on = ["each", "literal"], command = "echo joined >> items.txt" }
"#,
    );
    start_engine(&mut env);
    let tis = trigger_wait(&env, "fan");
    let tis = tis.as_array().expect("instances");
    let each: Vec<&Value> = tis.iter().filter(|t| t["task_id"] == "each").collect();
    assert_eq!(each.len(), 3, "{tis:#?}");
    let items = std::fs::read_to_string(env.path().join("items.txt")).expect("items");
    let mut lines: Vec<&str> = items.lines().collect();
    assert_eq!(lines.pop(), Some("joined"), "join runs last: {items}");
    lines.sort();
    assert_eq!(
        lines,
        ["each-a", "each-b", "each-c", "literal-x", "literal-y"]
    );
}

/// A run still going past its `within` deadline is listed as late by `runs list` (the real
/// scheduler records the miss while the task runs), and the run keeps going (`fail` unset).
fn a_late_run_is_listed_late(backend: Backend) {
    let mut env = Env::new(backend);
    env.write_dag(
        "slow.toml",
        "[deadline]\nwithin = \"1s\"\n[tasks.wait]\ntype = \"command\"\ncommand = \"sleep 30\"\n",
    );
    start_engine(&mut env);
    env.ok(&["dags", "trigger", "slow"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = env.ok(&["runs", "list", "slow"]);
        let head = table.lines().next().unwrap_or_default();
        assert!(head.contains("late"), "{table}");
        let row = table.lines().nth(1).unwrap_or_default();
        if row.contains("running") && row.trim_end().ends_with("run") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never late:\n{table}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

both_backends!(
    a_late_run_is_listed_late,
    chain_runs_in_order_via_trigger_wait,
    scheduled_chain_runs_when_its_interval_ends,
    failing_task_retries_with_backoff_then_succeeds,
    for_each_fans_out_over_literals_and_upstream_output,
);
