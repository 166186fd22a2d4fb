//! A try's stdout and stderr are stored in the order the worker received them: a task
//! printing 100,000 stdout lines with one stderr line after the 50,000th (stdout flushed
//! before it) has that line stored right after line 50,000, every time, on both backends,
//! and the process's exit line after all of its output.
//!
//! Two pipes share no clock: stdout a program writes *after* its stderr line can only be
//! told apart from what it wrote before while the reader keeps up. The script pauses
//! after the stderr line so that this test holds on a loaded machine too; what it
//! checks is the part the worker can promise whatever the load: everything flushed to
//! stdout before the stderr line is stored before it (the reader reads stdout once more
//! after reading stderr), and the sequence is kept from the pipes to the store.

mod kinds_common;

use std::time::{Duration, Instant};

use chrono::Utc;
use kinds_common::run_to_end;
use nightshift_store::{LogRow, Store};
use nightshift_testkit::{both_backends, queued_run, seed_dag, QueuedRun};
use nightshift_worker::log::LogLimits;
use nightshift_worker::WorkerConfig;

both_backends!(
    stderr_after_the_50000th_line_is_stored_right_after_it,
    a_last_stderr_line_follows_all_stdout_and_precedes_the_exit_line,
);

const RUNS: usize = 20;

/// A shell task: 50,000 stdout lines (`seq` exits, so they are flushed), one stderr line,
/// a pause, 50,000 more stdout lines, and a failing exit.
const SCRIPT: &str = "seq 1 50000; echo 'to stderr' >&2; sleep 0.2; seq 50001 100000; exit 3";

/// Runs `script` as the task `loud` of a new run `run_id` and returns its stored log.
async fn stored_log_of(store: &Store, script: &str, run_id: &str) -> Vec<LogRow> {
    let config = WorkerConfig {
        lease: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(1),
        log_limits: LogLimits {
            max_lines: 200_000,
            ..LogLimits::default()
        },
        ..WorkerConfig::new("log-order", "test-host")
    };
    let toml = format!("[tasks.loud]\ntype = \"command\"\ncommand = \"{script}\"\n");
    let dag = seed_dag(store, "dags/d.toml", &toml).await;
    let how = QueuedRun {
        run_id,
        logical_date: Utc::now(),
        conf: serde_json::json!({}),
    };
    let run = queued_run(store, &dag, how).await;
    let started = Instant::now();
    let done = run_to_end(store, config, &run).await;
    let ti = &done["loud"];
    let rows = store
        .read_logs(ti.id, ti.try_number, 0, 200_000)
        .await
        .expect("read the log");
    eprintln!("{run_id}: {} lines in {:?}", rows.len(), started.elapsed());
    rows
}

/// The case: 12,000 stdout lines, then one stderr line, then the exit. The stderr
/// line was stored near line 11,193 in one run (stdout still in its pipe was read after
/// it) and after "process exited with code 3" in another (the exit was logged before the
/// pipes were drained).
async fn a_last_stderr_line_follows_all_stdout_and_precedes_the_exit_line(store: Store) {
    for i in 0..RUNS {
        let rows = stored_log_of(
            &store,
            "seq 1 12000; echo 'to stderr' >&2; exit 3",
            &format!("manual__last_{i}"),
        )
        .await;
        let lines: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.stream.as_str(), r.line.as_str()))
            .collect();
        let at = |wanted: (&str, &str)| lines.iter().position(|l| *l == wanted);
        let (last_out, err, exited) = (
            at(("stdout", "12000")).expect("the last stdout line"),
            at(("stderr", "to stderr")).expect("the stderr line"),
            at(("system", "process exited with code 3")).expect("the exit line"),
        );
        assert_eq!(
            (err, exited),
            (last_out + 1, last_out + 2),
            "run {i}: stdout, then the stderr line, then the exit"
        );
    }
}

async fn stderr_after_the_50000th_line_is_stored_right_after_it(store: Store) {
    for i in 0..RUNS {
        let rows = stored_log_of(&store, SCRIPT, &format!("manual__{i}")).await;
        let user: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| r.stream != "system")
            .map(|r| (r.stream.as_str(), r.line.as_str()))
            .collect();
        assert_eq!(user.len(), 100_001, "run {i}: every line stored");
        let at = user
            .iter()
            .position(|(stream, _)| *stream == "stderr")
            .expect("the stderr line");
        assert_eq!(
            (at, user[at - 1], user[at], user[at + 1]),
            (
                50_000,
                ("stdout", "50000"),
                ("stderr", "to stderr"),
                ("stdout", "50001")
            ),
            "run {i}: the stderr line is stored right after line 50,000"
        );
        let numbers: Vec<&str> = user
            .iter()
            .filter(|(s, _)| *s == "stdout")
            .map(|(_, l)| *l)
            .collect();
        assert!(
            numbers
                .iter()
                .enumerate()
                .all(|(n, l)| *l == (n + 1).to_string()),
            "run {i}: stdout in order"
        );
        let exited = rows
            .iter()
            .position(|r| r.line == "process exited with code 3")
            .expect("the exit line");
        let last_output = rows
            .iter()
            .rposition(|r| r.stream != "system")
            .expect("output");
        assert!(
            exited > last_output,
            "run {i}: the exit line comes after all output"
        );
    }
}
