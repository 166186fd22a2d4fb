//! The worker loop against a real store (PostgreSQL with `DATABASE_URL`, and SQLite, same
//! bodies): DAGs, runs and queued instances are created through the store, then a
//! [`Worker`] claims and runs them with real processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_core::dag::Dag;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{
    Attempt, CallbackEvent, DagRun, Patch, Reap, Store, TaskInstance, Transition, HANDED_BACK,
};
use nightshift_worker::WorkerConfig;
use serde_json::{json, Value};

mod common;

use common::{instance, start, wait_for, wait_state, worker_config, WAIT};
use nightshift_testkit::{
    both_backends, claim_request, expire_and_reap, queued_run, t, QueuedRun, Service,
};

both_backends!(
    logs_are_readable_while_the_task_runs,
    outcomes_and_exit_codes_are_recorded,
    retryable_failure_waits_for_its_retry,
    templates_are_rendered_per_try,
    conf_through_shell_quote_stays_literal_text,
    timeout_fails_the_try,
    lost_lease_stops_the_task_without_overwriting,
    clearing_a_running_try_stops_it_and_closes_its_attempt,
    shutdown_hands_long_tries_back,
    shutdown_lets_short_tries_finish,
    concurrency_limits_running_tries,
);

fn config(id: &str) -> WorkerConfig {
    // The worker's own environment holds the database URL; its tasks must not see it.
    // Every test sets the same value, so concurrent tests do not disturb each other.
    std::env::set_var("NIGHTSHIFT_DATABASE_URL", "postgres://u:hunter2@db");
    WorkerConfig {
        env: BTreeMap::from([
            ("TEST_HOME".to_owned(), "/home/tester".to_owned()),
            (
                "NIGHTSHIFT_DATABASE_URL".to_owned(),
                "postgres://u:hunter2@db".to_owned(),
            ),
        ]),
        ..worker_config(id)
    }
}

/// Stores `toml` as DAG `d` and creates a run with every instance queued (`conf` as the
/// trigger's); returns the run and the parsed DAG.
async fn seed(store: &Store, toml: &str, conf: Value) -> (DagRun, Dag) {
    let dag = nightshift_testkit::seed_dag(store, "dags/d.toml", toml).await;
    let how = QueuedRun {
        run_id: "manual__test",
        logical_date: t("2026-01-01T03:00:00+09:00"),
        conf,
    };
    (queued_run(store, &dag, how).await, dag)
}

/// Seeds `toml` with an empty conf and starts worker `w1`.
async fn started(store: &Store, toml: &str) -> (DagRun, Dag, Service) {
    let (run, dag) = seed(store, toml, json!({})).await;
    (run, dag, start(store, config("w1")))
}

/// A DAG of one command task: `task = { type = "command", command = …, more }`.
fn command_dag(task: &str, command: &str, more: &str) -> String {
    let more = if more.is_empty() {
        String::new()
    } else {
        format!(", {more}")
    };
    format!("[tasks]\n{task} = {{ type = \"command\", command = {command:?}{more} }}\n")
}

async fn log_lines(store: &Store, ti: &TaskInstance, try_number: i32) -> Vec<(String, String)> {
    store
        .read_logs(ti.id, try_number, 0, 10_000)
        .await
        .expect("read logs")
        .into_iter()
        .map(|row| (row.stream, row.line))
        .collect()
}

async fn stdout(store: &Store, ti: &TaskInstance) -> Vec<String> {
    log_lines(store, ti, ti.try_number)
        .await
        .into_iter()
        .filter(|(stream, _)| stream == "stdout")
        .map(|(_, line)| line)
        .collect()
}

async fn last_attempt(store: &Store, ti: &TaskInstance) -> Attempt {
    store
        .list_attempts(ti.id)
        .await
        .expect("attempts")
        .pop()
        .expect("an attempt")
}

async fn logs_are_readable_while_the_task_runs(store: Store) {
    let toml = command_dag("slow", "echo first; sleep 2; echo second", "");
    let (run, _, worker) = started(&store, &toml).await;
    let running = wait_state(&store, &run, "slow", TaskState::Running).await;
    let started = Instant::now();
    loop {
        let lines = stdout(&store, &running).await;
        if lines == ["first"] {
            let now = instance(&store, &run, "slow", -1).await;
            assert_eq!(now.state, TaskState::Running, "the line is visible mid-run");
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no stdout while running: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = wait_state(&store, &run, "slow", TaskState::Success).await;
    assert_eq!(stdout(&store, &done).await, ["first", "second"]);
    assert_eq!(done.output, Some(json!("second")));
    let all = log_lines(&store, &done, 1).await;
    assert!(
        all.first()
            .is_some_and(|(s, l)| s == "system" && l == "try 1 of 1 on worker w1 (test-host)"),
        "{all:?}"
    );
    assert!(
        all.last()
            .is_some_and(|(_, l)| l == "try 1 of 1 ended: success (exit code 0)"),
        "{all:?}"
    );
    worker.stop().await;
}

async fn outcomes_and_exit_codes_are_recorded(store: Store) {
    let (run, _) = seed(
        &store,
        r#"
[tasks]
ok = { type = "command", command = "echo '{\"rows\": 3}'" }
skipper = { type = "command", command = "exit 99" }
join = { type = "noop" }
call = { type = "http", connection = "nowhere", url = "/x", retries = 3 }
[tasks.broken]
type = "command"
command = "echo 'no such table' >&2; exit 3"
on_failure = { url = "https://alerts.example.invalid/failed" }
"#,
        json!({}),
    )
    .await;
    // An instance whose task left the DAG.
    store
        .insert_task_instances(
            run.id,
            &[nightshift_store::NewTaskInstance {
                task_id: "ghost".into(),
                map_index: -1,
                state: TaskState::Queued,
                max_tries: 3,
                kind: "noop".into(),
                queue: "default".into(),
                pool: "default_pool".into(),
                pool_slots: 1,
                priority: 1,
            }],
            Utc::now(),
        )
        .await
        .expect("insert ghost");
    let worker = start(&store, config("w1"));

    struct Case {
        task: &'static str,
        state: TaskState,
        exit_code: Option<i32>,
        error: Option<&'static str>,
        output: Option<Value>,
    }
    let cases = [
        Case {
            task: "ok",
            state: TaskState::Success,
            exit_code: Some(0),
            error: None,
            output: Some(json!({"rows": 3})),
        },
        Case {
            task: "broken",
            state: TaskState::Failed,
            exit_code: Some(3),
            error: Some("exited with code 3: no such table"),
            output: None,
        },
        Case {
            task: "skipper",
            state: TaskState::Skipped,
            exit_code: Some(99),
            error: Some("exit code 99 is in skip_on_exit_code"),
            output: None,
        },
        Case {
            task: "join",
            state: TaskState::Success,
            exit_code: None,
            error: None,
            output: None,
        },
        Case {
            task: "call",
            state: TaskState::Failed,
            exit_code: None,
            error: Some("connection \"nowhere\" is not defined on this worker (set NIGHTSHIFT_CONN_NOWHERE or add it to the connections file)"),
            output: None,
        },
        Case {
            task: "ghost",
            state: TaskState::Failed,
            exit_code: None,
            error: Some("task ghost is no longer in DAG d"),
            output: None,
        },
    ];
    for case in cases {
        let ti = wait_for(&store, &run, case.task, -1, "finished", |ti| {
            ti.state.is_finished()
        })
        .await;
        let attempt = last_attempt(&store, &ti).await;
        assert_eq!(
            (
                ti.state,
                attempt.state,
                attempt.exit_code,
                attempt.error.as_deref()
            ),
            (case.state, case.state, case.exit_code, case.error),
            "{}",
            case.task
        );
        assert_eq!(ti.output, case.output, "{}", case.task);
        assert!(ti.end_date.is_some() && ti.lease_owner.is_none(), "{ti:?}");
    }
    let callbacks = store
        .list_callbacks(Some("d"), 10)
        .await
        .expect("callbacks");
    let got: Vec<_> = callbacks
        .iter()
        .map(|c| (c.task_id.as_deref(), c.event, c.payload["state"].clone()))
        .collect();
    assert_eq!(
        got,
        [(Some("broken"), CallbackEvent::Failure, json!("failed"))]
    );
    worker.stop().await;
}

async fn retryable_failure_waits_for_its_retry(store: Store) {
    let (run, _, worker) = started(
        &store,
        r#"
[tasks.flaky]
type = "command"
command = "exit 1"
retries = 2
retry_delay = "1h"
on_retry = { url = "https://alerts.example.invalid/retry" }
"#,
    )
    .await;
    let before = Utc::now();
    let ti = wait_state(&store, &run, "flaky", TaskState::UpForRetry).await;
    let at = ti.next_retry_at.expect("next_retry_at");
    let hour = chrono::TimeDelta::hours(1);
    assert!(
        at >= before + hour && at <= Utc::now() + hour,
        "retry at {at}"
    );
    let attempt = last_attempt(&store, &ti).await;
    assert_eq!(
        (attempt.try_number, attempt.state, attempt.exit_code),
        (1, TaskState::UpForRetry, Some(1))
    );
    let callbacks = store
        .list_callbacks(Some("d"), 10)
        .await
        .expect("callbacks");
    assert_eq!(
        callbacks.iter().map(|c| c.event).collect::<Vec<_>>(),
        [CallbackEvent::Retry]
    );
    worker.stop().await;
}

async fn templates_are_rendered_per_try(store: Store) {
    let (run, _) = seed(
        &store,
        r#"
timezone = "Asia/Tokyo"
params = { table = "users", limit = 10 }
[tasks]
count = { type = "noop" }
typo = { type = "command", command = "echo {{ params.tabel }}", retries = 3 }
peek = { type = "command", command = "echo {{ env.NIGHTSHIFT_DATABASE_URL }}" }
[tasks.load]
type = "command"
depends_on = ["count"]
for_each = ["Student", "Lesson"]
command = "echo {{ ds }} {{ params.table }} {{ params.limit }} {{ item }} {{ outputs.count.rows }} $EXTRA; echo db=${NIGHTSHIFT_DATABASE_URL:-withheld}"
env = { EXTRA = "{{ env.TEST_HOME }}/{{ try_number }}" }
"#,
        json!({"limit": 5}),
    )
    .await;
    // The upstream already succeeded with an output.
    let count = instance(&store, &run, "count", -1).await;
    store
        .transition(
            &Transition::on(
                count.id,
                TaskState::Queued,
                0,
                TaskEvent::MarkSuccess,
                Utc::now(),
            )
            .expect("legal")
            .output(Patch::Set(json!({"rows": 42}))),
        )
        .await
        .expect("upstream output");

    let worker = start(&store, config("w1"));
    for (index, item) in ["Student", "Lesson"].into_iter().enumerate() {
        let ti = wait_for(&store, &run, "load", index as i32, "success", |ti| {
            ti.state == TaskState::Success
        })
        .await;
        assert_eq!(
            stdout(&store, &ti).await,
            [
                format!("2026-01-01 users 5 {item} 42 /home/tester/1"),
                "db=withheld".to_owned()
            ]
        );
        let rendered = ti.rendered.expect("rendered fields");
        assert_eq!(
            rendered["command"],
            json!(format!(
                "echo 2026-01-01 users 5 {item} 42 $EXTRA; echo db=${{NIGHTSHIFT_DATABASE_URL:-withheld}}"
            ))
        );
        assert_eq!(rendered["env"], json!({"EXTRA": "/home/tester/1"}));
    }
    let typo = wait_state(&store, &run, "typo", TaskState::Failed).await;
    let attempt = last_attempt(&store, &typo).await;
    assert_eq!(
        attempt.error.as_deref(),
        Some("cannot render task typo: in `command`: undefined value: `params.tabel` is undefined (line 1)")
    );
    assert_eq!(typo.try_number, 1, "a template error is not retried");
    let peek = wait_state(&store, &run, "peek", TaskState::Failed).await;
    let attempt = last_attempt(&store, &peek).await;
    assert_eq!(
        attempt.error.as_deref(),
        Some("cannot render task peek: in `command`: undefined value: `env.NIGHTSHIFT_DATABASE_URL` is undefined (line 1)")
    );
    worker.stop().await;
}

/// Conf is an operator's input pasted into a shell script: `shell_quote` makes each value
/// one inert word, whatever it holds; without it the shell runs what the value says.
async fn conf_through_shell_quote_stays_literal_text(store: Store) {
    let who = "$(id -un); echo INJECTED";
    let file = "it's a \"b\" `c` * \\ $HOME";
    let (run, _) = seed(
        &store,
        r#"
params = { who = "nobody", file = "x" }
[tasks]
unquoted = { type = "command", command = "echo {{ params.who }}" }
[tasks.quoted]
type = "command"
command = "printf '%s\n' {{ params.who | shell_quote }} {{ params.file | shell_quote }}"
"#,
        json!({"who": who, "file": file}),
    )
    .await;
    let worker = start(&store, config("w1"));
    let quoted = wait_state(&store, &run, "quoted", TaskState::Success).await;
    assert_eq!(stdout(&store, &quoted).await, [who, file]);
    // The danger the filter removes (and docs/dag-format.md warns about): the
    // substitution ran and `echo INJECTED` became a command of its own.
    let unquoted = wait_state(&store, &run, "unquoted", TaskState::Success).await;
    let lines = stdout(&store, &unquoted).await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("INJECTED"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("$(id -un)")), "{lines:?}");
    worker.stop().await;
}

async fn timeout_fails_the_try(store: Store) {
    let toml = command_dag("stuck", "sleep 30", "timeout = \"1s\"");
    let (run, _, worker) = started(&store, &toml).await;
    let started = Instant::now();
    let ti = wait_state(&store, &run, "stuck", TaskState::Failed).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let attempt = last_attempt(&store, &ti).await;
    assert_eq!(attempt.error.as_deref(), Some("timed out after 1s"));
    worker.stop().await;
}

async fn lost_lease_stops_the_task_without_overwriting(store: Store) {
    let toml = command_dag(
        "long",
        "echo started; sleep 30; echo finished",
        "retries = 1",
    );
    let (run, _, worker) = started(&store, &toml).await;
    let ti = wait_for(&store, &run, "long", -1, "running", |ti| {
        ti.state == TaskState::Running
    })
    .await;
    // The scheduler reaps it as if the lease had expired.
    expire_and_reap(
        &store,
        &Reap {
            ti_id: ti.id,
            try_number: 1,
            new_state: TaskState::UpForRetry,
            next_retry_at: None,
            error: "lease expired".into(),
            now: Utc::now(),
        },
    )
    .await;
    let reaped = nightshift_testkit::instance(&store, ti.id).await;
    assert_eq!(reaped.state, TaskState::UpForRetry);
    // The worker notices at its next heartbeat and stops the process.
    let started = Instant::now();
    loop {
        let lines = log_lines(&store, &ti, 1).await;
        if lines.iter().any(|(_, l)| l.starts_with("lease lost")) {
            // The process is killed at once (no SIGTERM grace: the next try may start as
            // soon as the lease runs out).
            let pid = lines
                .iter()
                .find_map(|(_, l)| l.strip_prefix("started process "))
                .and_then(|rest| rest.split(':').next())
                .map(str::to_owned);
            if let Some(pid) = pid {
                let gone = Instant::now();
                while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    assert!(
                        gone.elapsed() < Duration::from_secs(2),
                        "process {pid} still runs: {lines:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            assert!(!lines.iter().any(|(_, l)| l == "finished"), "{lines:?}");
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the worker never noticed: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = instance(&store, &run, "long", -1).await;
    assert_eq!(
        (after.state, after.try_number),
        (TaskState::UpForRetry, 1),
        "the reaped try's outcome is not written"
    );
    let attempt = last_attempt(&store, &after).await;
    assert_eq!(
        (attempt.state, attempt.error.as_deref()),
        (TaskState::UpForRetry, Some("lease expired"))
    );
    worker.stop().await;
}

async fn clearing_a_running_try_stops_it_and_closes_its_attempt(store: Store) {
    let toml = command_dag("long", "echo started; sleep 30; echo finished", "");
    let (run, dag, worker) = started(&store, &toml).await;
    let ti = wait_for(&store, &run, "long", -1, "running", |ti| {
        ti.state == TaskState::Running
    })
    .await;
    let selection = nightshift_core::plan::ClearSelection {
        task_ids: vec!["long".to_owned()],
        downstream: false,
        upstream: false,
        only_failed: false,
        keep_version: false,
    };
    let cleared = store
        .clear_task_instances(&dag, &run, &selection, Utc::now())
        .await
        .expect("clear");
    assert_eq!(cleared[0].state, TaskState::Pending);
    // The try's attempt is closed at once, whatever its worker does next.
    let attempt = last_attempt(&store, &ti).await;
    assert_eq!(attempt.try_number, 1);
    assert_eq!(attempt.state, TaskState::Failed);
    assert!(attempt.end_date.is_some());
    assert_eq!(
        attempt.error.as_deref(),
        Some("cleared by a person while running; the try was stopped")
    );
    // Its worker loses the lease at the next heartbeat and kills the process.
    let started = Instant::now();
    while !log_lines(&store, &ti, 1)
        .await
        .iter()
        .any(|(_, l)| l.starts_with("lease lost"))
    {
        assert!(started.elapsed() < WAIT, "the worker never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
    let after = instance(&store, &run, "long", -1).await;
    assert_eq!((after.state, after.try_number), (TaskState::Pending, 1));
    assert_eq!(
        last_attempt(&store, &after).await,
        attempt,
        "the worker wrote nothing"
    );
}

async fn shutdown_hands_long_tries_back(store: Store) {
    let toml = command_dag("long", "sleep 30", "");
    let (run, _, worker) = started(&store, &toml).await;
    wait_state(&store, &run, "long", TaskState::Running).await;
    let started = Instant::now();
    worker.stop().await;
    // Grace (1s) + SIGTERM to the group; well under the task's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let ti = instance(&store, &run, "long", -1).await;
    assert_eq!(
        (
            ti.state,
            ti.try_number,
            ti.max_tries,
            ti.lease_owner.as_deref()
        ),
        (TaskState::Scheduled, 1, 2, None),
        "handed back, with the try not counted against the budget"
    );
    let attempt = last_attempt(&store, &ti).await;
    assert_eq!(
        (attempt.state, attempt.error.as_deref()),
        (TaskState::Scheduled, Some(HANDED_BACK))
    );
    // It can be queued and claimed again, as the next try.
    store
        .transition(
            &Transition::on(ti.id, TaskState::Scheduled, 1, TaskEvent::Queue, Utc::now())
                .expect("legal"),
        )
        .await
        .expect("queue again");
    let claimed = store
        .claim(&claim_request("w2", Utc::now()))
        .await
        .expect("claim");
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.instance().try_number)
            .collect::<Vec<_>>(),
        [2]
    );
}

async fn shutdown_lets_short_tries_finish(store: Store) {
    let toml = command_dag("short", "sleep 1; echo done", "");
    let (run, _) = seed(&store, &toml, json!({})).await;
    let worker = start(
        &store,
        WorkerConfig {
            shutdown_grace: Duration::from_secs(10),
            ..config("w1")
        },
    );
    wait_state(&store, &run, "short", TaskState::Running).await;
    worker.stop().await;
    let ti = instance(&store, &run, "short", -1).await;
    assert_eq!(
        (ti.state, ti.output),
        (TaskState::Success, Some(json!("done")))
    );
}

async fn concurrency_limits_running_tries(store: Store) {
    let mut toml = String::new();
    for i in 0..5 {
        toml.push_str(&format!(
            "[tasks.t{i}]\ntype = \"command\"\ncommand = \"sleep 0.5\"\n\n"
        ));
    }
    let (run, _) = seed(&store, &toml, json!({})).await;
    let worker = start(
        &store,
        WorkerConfig {
            concurrency: 2,
            ..config("w1")
        },
    );
    let started = Instant::now();
    let mut most = 0;
    loop {
        let tis = store.list_task_instances(run.id).await.expect("list");
        let running = tis.iter().filter(|t| t.state == TaskState::Running).count();
        most = most.max(running);
        if tis.iter().all(|t| t.state == TaskState::Success) {
            break;
        }
        assert!(started.elapsed() < WAIT, "{tis:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= 2, "seen {most} running at once");
    // From the attempts' own times: never more than two overlapped, and two did.
    let mut edges = Vec::new();
    for ti in store.list_task_instances(run.id).await.expect("list") {
        let attempt = last_attempt(&store, &ti).await;
        edges.push((attempt.start_date, 1));
        edges.push((attempt.end_date.expect("ended"), -1));
    }
    edges.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    assert_eq!(peak, 2, "two at a time, never more");
    worker.stop().await;
}
