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

use std::time::Instant;

use nightshift_store::Store;
use nightshift_testkit::both_backends;
use nightshift_worker::log::LogLimits;

use chrono::Utc;
use kinds_common::{config, run_to_end};
use nightshift_testkit::{queued_run, seed_dag, QueuedRun};

both_backends!(stderr_after_the_50000th_line_is_stored_right_after_it);

const RUNS: usize = 20;

/// A shell task: 50,000 stdout lines (`seq` exits, so they are flushed), one stderr line,
/// a pause, 50,000 more stdout lines, and a failing exit.
const SCRIPT: &str = "seq 1 50000; echo 'to stderr' >&2; sleep 0.2; seq 50001 100000; exit 3";

async fn stderr_after_the_50000th_line_is_stored_right_after_it(store: Store) {
    let mut config = config([], &[]);
    config.log_limits = LogLimits {
        max_lines: 200_000,
        ..LogLimits::default()
    };
    for i in 0..RUNS {
        let toml = format!("[tasks.loud]\ntype = \"command\"\ncommand = \"{SCRIPT}\"\n");
        let dag = seed_dag(&store, "dags/d.toml", &toml).await;
        let run_id = format!("manual__{i}");
        let how = QueuedRun {
            run_id: &run_id,
            logical_date: Utc::now(),
            conf: serde_json::json!({}),
        };
        let run = queued_run(&store, &dag, how).await;
        let started = Instant::now();
        let done = run_to_end(&store, config.clone(), &run).await;
        let ti = &done["loud"];
        let rows = store
            .read_logs(ti.id, ti.try_number, 0, 200_000)
            .await
            .expect("read the log");
        eprintln!("run {i}: {} lines in {:?}", rows.len(), started.elapsed());
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
