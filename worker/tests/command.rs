//! The `command` kind against real processes (sh, sleep, seq, printf): output streaming,
//! exit codes, timeouts and cancellation that kill the whole process group, log caps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_worker::kind::command::{self, KILL_GRACE};
use nightshift_worker::kind::{CommandProgram, CommandSpec, Outcome, TaskContext, TaskKind};
use nightshift_worker::log::{LogChannel, LogLine, LogReceiver, Stream};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn context(cap_lines: usize, timeout: Option<Duration>) -> (TaskContext, LogReceiver) {
    let (log, rx) = LogChannel::new(cap_lines);
    let ctx = TaskContext {
        dag_id: "nightly".into(),
        run_id: "scheduled__2026-01-01".into(),
        task_id: "extract".into(),
        try_number: 2,
        map_index: 3,
        cancel: CancellationToken::new(),
        timeout,
        try_timeout: timeout,
        wakes: 0,
        log,
        external: Default::default(),
    };
    (ctx, rx)
}

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new(CommandProgram::Shell(script.to_string()))
}

/// Runs the spec to its end and returns the outcome with every log line.
async fn run(
    spec: &CommandSpec,
    cap_lines: usize,
    timeout: Option<Duration>,
) -> (Outcome, Vec<LogLine>) {
    let (ctx, rx) = context(cap_lines, timeout);
    let outcome = command::run(spec, &ctx).await;
    drop(ctx);
    (outcome, collect(rx).await)
}

/// Runs a shell script (room for 100 log lines, no timeout) to its end.
async fn run_sh(script: &str) -> (Outcome, Vec<LogLine>) {
    run(&sh(script), 100, None).await
}

async fn collect(mut rx: LogReceiver) -> Vec<LogLine> {
    let mut lines = Vec::new();
    while let Some(line) = rx.recv().await {
        lines.push(line);
    }
    lines
}

fn texts(lines: &[LogLine], stream: Stream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.as_str())
        .collect()
}

/// A success with this output.
fn ok(output: serde_json::Value) -> Outcome {
    Outcome::Success {
        output: Some(output),
    }
}

/// A shell script that writes a pid to `$PID_FILE`, a file in a new temporary folder: the
/// folder (removed when dropped), the file and the spec.
fn pid_writer(script: &str) -> (tempfile::TempDir, PathBuf, CommandSpec) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pid");
    let mut spec = sh(script);
    spec.env
        .insert("PID_FILE".into(), file.display().to_string());
    (dir, file, spec)
}

/// Asserts that nightshift's own log lines include each of `expected`.
fn assert_system(lines: &[LogLine], expected: &[&str]) {
    let system = texts(lines, Stream::System);
    for line in expected {
        assert!(system.contains(line), "{line:?} not in {system:?}");
    }
}

/// Waits for a script to write a pid into `file`.
async fn read_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no pid written to {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` no longer runs (gone, or a zombie waiting for its new parent).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A script that starts `sleep 1000` in the background, writes its pid to a file and
/// waits for it: the grandchild only dies if the whole group is killed.
fn background_sleeper() -> (tempfile::TempDir, PathBuf, CommandSpec) {
    pid_writer("sleep 1000 & echo $! > \"$PID_FILE\"; echo started; wait")
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_in_order_per_stream() {
    let (outcome, lines) = run_sh("echo o1; echo e1 >&2; echo o2; echo e2 >&2; printf o3").await;
    assert_eq!(outcome, ok(json!("o3")));
    assert_eq!(texts(&lines, Stream::Stdout), ["o1", "o2", "o3"]);
    assert_eq!(texts(&lines, Stream::Stderr), ["e1", "e2"]);
    let system = texts(&lines, Stream::System);
    assert!(system[0].starts_with("started process "), "{system:?}");
    assert_eq!(system.last(), Some(&"process exited with code 0"));
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (0..lines.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn lines_are_readable_while_the_process_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("go");
    let spec = sh(&format!(
        "echo first; while [ ! -e '{}' ]; do sleep 0.02; done; echo second",
        flag.display()
    ));
    let (ctx, mut rx) = context(100, Some(Duration::from_secs(30)));
    let task = tokio::spawn(async move { command::run(&spec, &ctx).await });

    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(line) if line.stream == Stream::Stdout => return line.text,
                Some(_) => continue,
                None => panic!("log ended before any stdout line"),
            }
        }
    })
    .await
    .expect("the first line arrives while the process waits");
    assert_eq!(first, "first");
    assert!(
        !task.is_finished(),
        "the process cannot have ended: it waits for the flag"
    );

    std::fs::write(&flag, "").expect("write flag");
    let outcome = task.await.expect("task");
    assert_eq!(outcome, ok(json!("second")));
    let rest = collect(rx).await;
    assert_eq!(texts(&rest, Stream::Stdout), ["second"]);
}

#[tokio::test]
async fn exit_codes_decide_the_outcome() {
    async fn check(script: &str, expected: Outcome) {
        let (outcome, _) = run_sh(script).await;
        assert_eq!(outcome, expected, "{script}");
    }
    check("exit 0", Outcome::Success { output: None }).await;
    check(
        "exit 1",
        Outcome::Failed {
            error: "exited with code 1".into(),
            retryable: true,
            exit_code: Some(1),
        },
    )
    .await;
    check(
        "echo 'table missing' >&2; exit 3",
        Outcome::Failed {
            error: "exited with code 3: table missing".into(),
            retryable: true,
            exit_code: Some(3),
        },
    )
    .await;
    check(
        "exit 99",
        Outcome::Skipped {
            reason: "exit code 99 is in skip_on_exit_code".into(),
            exit_code: Some(99),
        },
    )
    .await;
    check("kill -KILL $$", Outcome::retryable("killed by SIGKILL")).await;
}

#[tokio::test]
async fn skip_on_exit_code_is_configurable() {
    let mut spec = sh("exit 42");
    spec.skip_on_exit_code = vec![42];
    assert_eq!(
        run(&spec, 100, None).await.0,
        Outcome::Skipped {
            reason: "exit code 42 is in skip_on_exit_code".into(),
            exit_code: Some(42),
        }
    );
    spec = sh("exit 99");
    spec.skip_on_exit_code = vec![];
    assert!(matches!(
        run(&spec, 100, None).await.0,
        Outcome::Failed {
            exit_code: Some(99),
            ..
        }
    ));
}

#[tokio::test]
async fn output_is_the_last_non_empty_stdout_line_as_json() {
    async fn check(script: &str, expected: Option<serde_json::Value>) {
        let (outcome, _) = run_sh(script).await;
        assert_eq!(outcome, Outcome::Success { output: expected }, "{script}");
    }
    check(
        r#"echo starting; echo '{"rows": 12, "tables": ["a", "b"]}'; echo; echo '  '"#,
        Some(json!({"rows": 12, "tables": ["a", "b"]})),
    )
    .await;
    check("echo 7", Some(json!(7))).await;
    check("echo 'loaded 7 rows'", Some(json!("loaded 7 rows"))).await;
    check("echo only stderr >&2", None).await;
}

#[tokio::test]
async fn argv_is_executed_without_a_shell() {
    let spec = CommandSpec::new(CommandProgram::Argv(vec![
        "printf".into(),
        "%s\\n".into(),
        "a b; $HOME".into(),
    ]));
    let (outcome, lines) = run(&spec, 100, None).await;
    assert_eq!(outcome, ok(json!("a b; $HOME")));
    assert_eq!(texts(&lines, Stream::Stdout), ["a b; $HOME"]);
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let (_dir, pid_file, spec) = background_sleeper();
    let started = Instant::now();
    let (outcome, lines) = run(&spec, 100, Some(Duration::from_millis(500))).await;
    assert_eq!(outcome, Outcome::retryable("timed out after 500ms"));
    assert!(
        started.elapsed() < KILL_GRACE,
        "sh and sleep die on SIGTERM, no SIGKILL wait"
    );
    assert_gone(read_pid(&pid_file).await).await;
    assert_system(
        &lines,
        &[
            "timed out after 500ms; sending SIGTERM to the process group",
            "process killed by SIGTERM",
        ],
    );
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let (_dir, pid_file, spec) = background_sleeper();
    let (ctx, rx) = context(100, None);
    let cancel = ctx.cancel.clone();
    let task = tokio::spawn(async move { command::run(&spec, &ctx).await });
    let pid = read_pid(&pid_file).await;
    assert!(!is_gone(pid));
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("task");
    assert_eq!(outcome, Outcome::Cancelled);
    assert_gone(pid).await;
    assert_system(
        &collect(rx).await,
        &["cancelled; sending SIGTERM to the process group"],
    );
}

#[tokio::test]
async fn sigterm_is_followed_by_sigkill_after_the_grace() {
    // `trap '' TERM` ignores SIGTERM in sh and in the sleep it starts.
    let (_dir, pid_file, spec) =
        pid_writer("trap '' TERM; sleep 1000 & echo $! > \"$PID_FILE\"; wait");
    let started = Instant::now();
    let (outcome, lines) = run(&spec, 100, Some(Duration::from_millis(200))).await;
    assert_eq!(outcome, Outcome::retryable("timed out after 200ms"));
    assert!(started.elapsed() >= KILL_GRACE);
    assert_gone(read_pid(&pid_file).await).await;
    assert_system(
        &lines,
        &[
            "still running 5s after SIGTERM; sending SIGKILL",
            "process killed by SIGKILL",
        ],
    );
}

#[tokio::test]
async fn processes_left_behind_are_killed_when_the_main_process_exits() {
    // The background sleep keeps stdout open: without killing it, reading would hang.
    let (_dir, pid_file, spec) = pid_writer("sleep 1000 & echo $! > \"$PID_FILE\"; echo bye");
    let (outcome, lines) = tokio::time::timeout(Duration::from_secs(10), run(&spec, 100, None))
        .await
        .expect("a leftover process must not keep the try running");
    assert_eq!(outcome, ok(json!("bye")));
    assert_gone(read_pid(&pid_file).await).await;
    assert_system(
        &lines,
        &["killed the processes left in the task's process group"],
    );
}

#[tokio::test]
async fn dropping_the_try_kills_the_process_group() {
    let (_dir, pid_file, spec) = background_sleeper();
    let (ctx, _rx) = context(100, None);
    let task = tokio::spawn(async move { command::run(&spec, &ctx).await });
    let pid = read_pid(&pid_file).await;
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    assert_gone(pid).await;
}

#[tokio::test]
async fn log_cap_truncates_once_and_the_child_still_finishes() {
    let (outcome, lines) = run(
        &sh(r#"seq 1 100000; echo '{"finished": true}'"#),
        1000,
        None,
    )
    .await;
    // The last line is read past the cap: the child ran to its end and was judged on it.
    assert_eq!(outcome, ok(json!({"finished": true})));
    let stdout = texts(&lines, Stream::Stdout);
    // The cap counts every line, nightshift's "started process" line included.
    assert_eq!(stdout.len(), 999);
    assert_eq!(stdout.last(), Some(&"999"));
    let markers: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.text.contains("log truncated"))
        .collect();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].stream, Stream::System);
    assert!(
        markers[0]
            .text
            .starts_with("[nightshift] log truncated after 1000 lines / "),
        "{}",
        markers[0].text
    );
    assert_eq!(
        texts(&lines, Stream::System).last(),
        Some(&"process exited with code 0")
    );
}

#[tokio::test]
async fn long_lines_are_cut_with_a_marker() {
    let (outcome, lines) = run_sh("head -c 200000 /dev/zero | tr '\\0' a; echo; echo end").await;
    assert_eq!(outcome, ok(json!("end")));
    let stdout = texts(&lines, Stream::Stdout);
    assert_eq!(stdout.len(), 2);
    let cut = " [nightshift] line cut: kept 65536 of 200000 bytes";
    assert!(stdout[0].ends_with(cut), "{}", &stdout[0][65500..]);
    assert_eq!(stdout[0].len(), 65536 + cut.len());
}

#[tokio::test]
async fn failures_to_start_are_clear() {
    async fn check(spec: CommandSpec, expected: Outcome) {
        let (outcome, lines) = run(&spec, 100, None).await;
        assert_eq!(outcome, expected, "{spec:?}");
        if let Outcome::Failed { error, .. } = &outcome {
            assert!(
                texts(&lines, Stream::System).contains(&error.as_str()),
                "the log says it too"
            );
        }
    }
    let argv = |args: &[&str]| {
        CommandSpec::new(CommandProgram::Argv(
            args.iter().map(|a| a.to_string()).collect(),
        ))
    };
    check(
        argv(&["nightshift-no-such-program", "x"]),
        Outcome::retryable("cannot start `nightshift-no-such-program`: program not found in PATH"),
    )
    .await;
    check(
        argv(&["/nonexistent/prog"]),
        Outcome::retryable("cannot start `/nonexistent/prog`: no such file"),
    )
    .await;
    check(
        argv(&[]),
        Outcome::fatal("command has an empty argv: nothing to run"),
    )
    .await;
    let in_dir = |dir: &str| {
        let mut spec = sh("true");
        spec.cwd = Some(PathBuf::from(dir));
        spec
    };
    let missing =
        "working directory /nonexistent/dir is not usable: No such file or directory (os error 2)";
    check(in_dir("/nonexistent/dir"), Outcome::retryable(missing)).await;
    let not_a_dir = "working directory /bin/sh is not a directory";
    check(in_dir("/bin/sh"), Outcome::retryable(not_a_dir)).await;
}

#[tokio::test]
async fn cwd_env_and_context_variables_reach_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(
        "pwd; echo \"$GREETING\"; echo \"$NIGHTSHIFT_DAG_ID|$NIGHTSHIFT_RUN_ID|$NIGHTSHIFT_TASK_ID|$NIGHTSHIFT_TRY_NUMBER|$NIGHTSHIFT_MAP_INDEX\"; echo \"${PATH:+inherited}\"",
    );
    spec.cwd = Some(dir.path().to_path_buf());
    spec.env.insert("GREETING".into(), "hello world".into());
    // The context variables win over the spec's env.
    spec.env
        .insert("NIGHTSHIFT_TASK_ID".into(), "spoofed".into());
    let (outcome, lines) = run(&spec, 100, None).await;
    assert_eq!(outcome, ok(json!("inherited")));
    let real_dir = dir.path().canonicalize().expect("canonicalize");
    let expected_pwd = real_dir.to_string_lossy();
    assert_eq!(
        texts(&lines, Stream::Stdout),
        [
            &*expected_pwd,
            "hello world",
            "nightly|scheduled__2026-01-01|extract|2|3",
            "inherited"
        ]
    );
}

#[tokio::test]
async fn task_kind_dispatches_to_command_and_noop() {
    let (ctx, _rx) = context(100, None);
    assert_eq!(
        TaskKind::Command(sh("echo via-kind")).run(&ctx).await,
        ok(json!("via-kind"))
    );
    assert_eq!(
        TaskKind::Noop.run(&ctx).await,
        Outcome::Success { output: None }
    );
    assert_eq!(TaskKind::Noop.name(), "noop");
    ctx.cancel.cancel();
    assert_eq!(
        TaskKind::Command(sh("echo never")).run(&ctx).await,
        Outcome::Cancelled
    );
}
