//! The `command` kind: runs a local process (an argv, or a shell script with `/bin/sh -c`)
//! in its own process group, streams its stdout and stderr into the try's log line by
//! line, and turns its exit into an [`Outcome`] the way Airflow's BashOperator does.
//!
//! - Exit code in `skip_on_exit_code` (99 by default) → skipped; 0 → success, whose
//!   output is the last non-empty stdout line (as JSON if it parses, else a string);
//!   any other code or a signal → a retryable failure.
//! - Timeout or cancel: SIGTERM to the whole process group, SIGKILL after [`KILL_GRACE`].
//! - When the main process ends, processes it left behind in its group are killed, so a
//!   task never outlives its try and never holds its output pipes open.
//! - The child inherits the worker's environment, plus the spec's `env`, plus the
//!   `NIGHTSHIFT_*` context variables (which win over both); the worker's
//!   [`WITHHELD_ENV`] are not inherited: a task never sees the metadata database's URL
//!   (and its password) unless its own `env` sets it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nightshift_core::mask::{mask_then_cut, mask_then_shorten, Limit};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{Interrupt, Outcome, TaskContext};
use crate::log::{self, LogWriter, Stream};

/// How long a process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read after the process group is gone; only a process that
/// left the group (e.g. with `setsid`) while holding the pipes can make this matter.
pub const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Variables of the worker's environment that a task's process does not inherit (nor
/// templates see): the metadata database URL holds its password.
pub const WITHHELD_ENV: &[&str] = &["NIGHTSHIFT_DATABASE_URL"];
/// Airflow BashOperator's default `skip_on_exit_code`.
pub const DEFAULT_SKIP_ON_EXIT_CODE: i32 = 99;
/// The shell for [`CommandProgram::Shell`]: POSIX `sh`, present on every machine and
/// image; a script that wants bash says `bash -c` or uses an argv.
pub const SHELL: &str = "/bin/sh";
/// At most this much of the last stderr line goes into a failure's error text.
const ERROR_STDERR_CHARS: usize = 500;

/// What to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandProgram {
    /// A program and its arguments, executed directly (the program is looked up in PATH
    /// when it has no `/`).
    Argv(Vec<String>),
    /// A script run with `/bin/sh -c SCRIPT`.
    Shell(String),
}

impl CommandProgram {
    /// The program that is actually executed.
    fn program(&self) -> Option<&str> {
        match self {
            CommandProgram::Argv(argv) => argv.first().map(String::as_str),
            CommandProgram::Shell(_) => Some(SHELL),
        }
    }

    /// How the log shows what runs: one line, or for a multi-line script the shell's
    /// line followed by the script's lines as written.
    fn describe(&self) -> Vec<String> {
        match self {
            CommandProgram::Shell(script) if script.contains('\n') => {
                std::iter::once(format!("{SHELL} -c with this script:"))
                    .chain(script.lines().map(|l| format!("  {l}")))
                    .collect()
            }
            CommandProgram::Argv(argv) => vec![argv
                .iter()
                .map(|a| {
                    if !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
                    {
                        a.clone()
                    } else {
                        format!("{a:?}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")],
            CommandProgram::Shell(script) => vec![format!("{SHELL} -c {script:?}")],
        }
    }
}

/// One `command` task, after templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: CommandProgram,
    /// Added to (and overriding) the worker's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory; the worker's own when `None`.
    pub cwd: Option<PathBuf>,
    /// Exit codes that mark the try skipped (checked before success, as in Airflow).
    pub skip_on_exit_code: Vec<i32>,
}

impl CommandSpec {
    /// A spec with no extra env, the worker's working directory and
    /// `skip_on_exit_code = [99]`.
    pub fn new(program: CommandProgram) -> Self {
        CommandSpec {
            program,
            env: BTreeMap::new(),
            cwd: None,
            skip_on_exit_code: vec![DEFAULT_SKIP_ON_EXIT_CODE],
        }
    }
}

/// Runs one try of a command to its end; see the module documentation.
#[tracing::instrument(skip_all, fields(dag_id = %ctx.dag_id, run_id = %ctx.run_id, task_id = %ctx.task_id, try_number = ctx.try_number))]
pub async fn run(spec: &CommandSpec, ctx: &TaskContext) -> Outcome {
    let Some(program) = spec.program.program().filter(|p| !p.is_empty()) else {
        let error = "command has an empty argv: nothing to run";
        ctx.system(error);
        return Outcome::fatal(error);
    };
    if ctx.cancel.is_cancelled() {
        return Interrupt::Cancelled.outcome();
    }
    if let Some(cwd) = &spec.cwd {
        match tokio::fs::metadata(cwd).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return failed_to_start(
                    ctx,
                    format!("working directory {} is not a directory", cwd.display()),
                )
            }
            Err(e) => {
                return failed_to_start(
                    ctx,
                    format!("working directory {} is not usable: {e}", cwd.display()),
                )
            }
        }
    }

    let mut cmd = command(program, spec, ctx);
    // The deadline starts before the spawn, so a slow spawn counts against the timeout.
    let interrupted = ctx.interrupted();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return failed_to_start(ctx, spawn_error(program, spec, &e)),
    };
    let mut group = ProcessGroup::of(&child);
    let pid = child
        .id()
        .map_or_else(|| "?".to_string(), |p| p.to_string());
    // A multi-line script is shown as written: one log line per script line.
    let mut description = spec.program.describe().into_iter();
    ctx.system(format!(
        "started process {pid}: {}",
        description.next().unwrap_or_default()
    ));
    description.for_each(|line| ctx.system(line));
    tracing::debug!(pid, "command started");

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut last_stdout = Vec::new();
    let mut last_stderr = Vec::new();
    let ended = {
        let pumps = log::capture(stdout, stderr, &ctx.log, |stream, bytes| {
            if bytes.iter().any(|b| !b.is_ascii_whitespace()) {
                let last = match stream {
                    Stream::Stderr => &mut last_stderr,
                    _ => &mut last_stdout,
                };
                last.clear();
                last.extend_from_slice(bytes);
            }
        });
        tokio::pin!(pumps);
        let supervise = supervise(&mut child, &group, interrupted, ctx);
        tokio::pin!(supervise);
        let mut pumps_done = false;
        let ended = loop {
            tokio::select! {
                ended = &mut supervise => break ended,
                _ = &mut pumps, if !pumps_done => pumps_done = true,
            }
        };
        // The main process is gone: nothing of the task may outlive it.
        let killed_rest = group.kill_rest();
        // Its last output is read before its end is logged, so the log shows it in order.
        let drained = pumps_done
            || tokio::time::timeout(PIPE_DRAIN_GRACE, &mut pumps)
                .await
                .is_ok();
        match &ended {
            Ended::Exited(status) | Ended::Interrupted(_, Some(status)) => {
                ctx.system(describe_status(*status));
            }
            Ended::Interrupted(_, None) => {}
            Ended::WaitFailed(e) => ctx.system(format!("lost track of the process: {e}")),
        }
        if killed_rest {
            ctx.system("killed the processes left in the task's process group");
        }
        if !drained {
            ctx.system(format!(
                "stopped reading output {} after the process ended: a process outside its group still holds stdout or stderr",
                humantime::format_duration(PIPE_DRAIN_GRACE)
            ));
        }
        ended
    };
    group.disarm();

    let outcome = match ended {
        Ended::Exited(status) => judge(
            status,
            &spec.skip_on_exit_code,
            &shown_line(&ctx.log, &last_stdout),
            &shown_line(&ctx.log, &last_stderr),
        ),
        Ended::Interrupted(why, _) => why.outcome(),
        Ended::WaitFailed(e) => Outcome::retryable(format!("lost track of the process: {e}")),
    };
    tracing::debug!(?outcome, "command ended");
    outcome
}

/// A line the pumps kept (up to [`LogWriter::read_limit`] bytes) as the log shows it:
/// secrets masked, then cut to the log's line limit. The output and the error are made
/// from it, so they never show more of a secret than the log does.
fn shown_line(log: &LogWriter, bytes: &[u8]) -> String {
    let (shown, _) = mask_then_cut(
        &String::from_utf8_lossy(bytes),
        &crate::connections::refs(&log.secrets()),
        Limit::Bytes(log.limits().max_line_bytes),
    );
    shown
}

fn command(program: &str, spec: &CommandSpec, ctx: &TaskContext) -> Command {
    let mut cmd = match &spec.program {
        CommandProgram::Argv(argv) => {
            let mut cmd = Command::new(program);
            cmd.args(argv.iter().skip(1));
            cmd
        }
        CommandProgram::Shell(script) => {
            let mut cmd = Command::new(SHELL);
            cmd.arg("-c").arg(script);
            cmd
        }
    };
    for name in WITHHELD_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(&spec.env)
        .env("NIGHTSHIFT_DAG_ID", &ctx.dag_id)
        .env("NIGHTSHIFT_RUN_ID", &ctx.run_id)
        .env("NIGHTSHIFT_TASK_ID", &ctx.task_id)
        .env("NIGHTSHIFT_TRY_NUMBER", ctx.try_number.to_string())
        .env("NIGHTSHIFT_MAP_INDEX", ctx.map_index.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // If the worker itself dies (SIGKILL, OOM), nobody is left to stop the task: have the
    // kernel kill the direct child with the worker, so a reaped try cannot finish its
    // work behind the back of the retry that replaces it.
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd
}

fn failed_to_start(ctx: &TaskContext, error: String) -> Outcome {
    ctx.system(&error);
    Outcome::retryable(error)
}

fn spawn_error(program: &str, spec: &CommandSpec, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => "no such file".to_string(),
        std::io::ErrorKind::NotFound => "program not found in PATH".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied (is it executable?): {e}")
        }
        _ => e.to_string(),
    };
    match &spec.cwd {
        Some(cwd) => format!("cannot start `{program}` in {}: {why}", cwd.display()),
        None => format!("cannot start `{program}`: {why}"),
    }
}

enum Ended {
    Exited(ExitStatus),
    /// Stopped by us; the status is `None` if waiting for it failed.
    Interrupted(Interrupt, Option<ExitStatus>),
    WaitFailed(std::io::Error),
}

/// Waits for the main process, or stops its group when the try is interrupted.
async fn supervise(
    child: &mut Child,
    group: &ProcessGroup,
    interrupted: impl std::future::Future<Output = Interrupt>,
    ctx: &TaskContext,
) -> Ended {
    let why = tokio::select! {
        status = child.wait() => return match status {
            Ok(status) => Ended::Exited(status),
            Err(e) => Ended::WaitFailed(e),
        },
        why = interrupted => why,
    };
    ctx.system(format!("{why}; sending SIGTERM to the process group"));
    group.signal(child, Signal::SIGTERM);
    let status = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            ctx.system(format!(
                "still running {} after SIGTERM; sending SIGKILL",
                humantime::format_duration(KILL_GRACE)
            ));
            group.signal(child, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    Ended::Interrupted(why, status)
}

/// The child's process group (its id is the child's pid). While armed, dropping it
/// SIGKILLs the group, so a try whose future is dropped leaves no process behind.
struct ProcessGroup {
    pgid: Option<Pid>,
    armed: bool,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        ProcessGroup { pgid, armed: true }
    }

    /// Signals the whole group; falls back to the child alone if the group is unknown.
    fn signal(&self, child: &mut Child, signal: Signal) {
        match self.pgid {
            Some(pgid) => {
                if let Err(e) = killpg(pgid, signal) {
                    if e != Errno::ESRCH {
                        tracing::warn!(%pgid, %signal, error = %e, "cannot signal process group");
                    }
                }
            }
            None => {
                let _ = child.start_kill();
            }
        }
    }

    /// SIGKILLs what is left in the group; true if something was there.
    ///
    /// Called after the main process was reaped. Its pid cannot have been reused as a
    /// group id while group members remain; if none remain, only a process that made
    /// itself a group leader with the very same recycled pid in the meantime could be
    /// hit, the same window every pid-based supervisor has.
    fn kill_rest(&self) -> bool {
        self.pgid
            .is_some_and(|pgid| killpg(pgid, Signal::SIGKILL).is_ok())
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            if let Some(pgid) = self.pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }
}

fn signal_name(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("process exited with code {code}"),
        (None, Some(sig)) => format!("process killed by {}", signal_name(sig)),
        (None, None) => format!("process ended: {status}"),
    }
}

/// The outcome of a process that ended on its own (Airflow BashOperator's rules).
fn judge(
    status: ExitStatus,
    skip_on_exit_code: &[i32],
    last_stdout: &str,
    last_stderr: &str,
) -> Outcome {
    let Some(code) = status.code() else {
        let error = match status.signal() {
            Some(sig) => format!("killed by {}", signal_name(sig)),
            None => format!("ended abnormally: {status}"),
        };
        return Outcome::retryable(error);
    };
    if skip_on_exit_code.contains(&code) {
        return Outcome::Skipped {
            reason: format!("exit code {code} is in skip_on_exit_code"),
            exit_code: Some(code),
        };
    }
    if code == 0 {
        return Outcome::Success {
            output: output_of(last_stdout),
        };
    }
    let mut error = format!("exited with code {code}");
    let stderr = last_stderr.trim();
    if !stderr.is_empty() {
        // Already masked (see `shown_line`): cutting it cannot split a secret.
        let shown = mask_then_shorten(stderr, &[], ERROR_STDERR_CHARS);
        error.push_str(&format!(": {shown}"));
    }
    Outcome::Failed {
        error,
        retryable: true,
        exit_code: Some(code),
    }
}

/// The last non-empty stdout line as JSON if it parses, else as a JSON string.
fn output_of(last_stdout: &str) -> Option<serde_json::Value> {
    let line = last_stdout.trim();
    if line.is_empty() {
        return None;
    }
    Some(serde_json::from_str(line).unwrap_or_else(|_| serde_json::Value::String(line.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn exit_statuses_become_outcomes() {
        fn check(status: ExitStatus, stdout: &str, stderr: &str, expected: Outcome) {
            assert_eq!(
                judge(status, &[99, 100], stdout, stderr),
                expected,
                "{status:?}"
            );
        }
        check(exited(0), "", "", Outcome::Success { output: None });
        check(
            exited(0),
            "done",
            "",
            Outcome::Success {
                output: Some(json!("done")),
            },
        );
        check(
            exited(99),
            "",
            "",
            Outcome::Skipped {
                reason: "exit code 99 is in skip_on_exit_code".into(),
                exit_code: Some(99),
            },
        );
        check(
            exited(100),
            "",
            "",
            Outcome::Skipped {
                reason: "exit code 100 is in skip_on_exit_code".into(),
                exit_code: Some(100),
            },
        );
        check(
            exited(1),
            "",
            "",
            Outcome::Failed {
                error: "exited with code 1".into(),
                retryable: true,
                exit_code: Some(1),
            },
        );
        check(
            exited(2),
            "",
            "  boom: no such table  ",
            Outcome::Failed {
                error: "exited with code 2: boom: no such table".into(),
                retryable: true,
                exit_code: Some(2),
            },
        );
        check(
            ExitStatus::from_raw(9),
            "",
            "",
            Outcome::retryable("killed by SIGKILL"),
        );
        check(
            ExitStatus::from_raw(15),
            "",
            "",
            Outcome::retryable("killed by SIGTERM"),
        );
    }

    #[test]
    fn skip_codes_are_checked_before_success_as_in_airflow() {
        assert_eq!(
            judge(exited(0), &[0], "x", ""),
            Outcome::Skipped {
                reason: "exit code 0 is in skip_on_exit_code".into(),
                exit_code: Some(0),
            }
        );
    }

    #[test]
    fn output_is_the_last_line_as_json_or_string() {
        fn check(line: &str, expected: Option<serde_json::Value>) {
            assert_eq!(output_of(line), expected, "{line:?}");
        }
        check("", None);
        check("   ", None);
        check("42", Some(json!(42)));
        check(r#"{"rows": 3}"#, Some(json!({"rows": 3})));
        check(r#"["a","b"]  "#, Some(json!(["a", "b"])));
        check("rows: 3", Some(json!("rows: 3")));
        check("\"quoted\"", Some(json!("quoted")));
        check("{broken", Some(json!("{broken")));
    }

    #[test]
    fn programs_describe_themselves_for_the_log() {
        fn check(p: CommandProgram, expected: &str) {
            assert_eq!(p.describe().join("\n"), expected);
        }
        check(
            CommandProgram::Argv(vec!["echo".into(), "a b".into(), "--x=1".into()]),
            "echo \"a b\" --x=1",
        );
        check(
            CommandProgram::Shell("echo hi".into()),
            "/bin/sh -c \"echo hi\"",
        );
        check(
            CommandProgram::Argv(vec!["x".into(), String::new()]),
            "x \"\"",
        );
        check(
            CommandProgram::Shell("set -e\nfor f in a b; do\n\techo \"$f\"\ndone\n".into()),
            "/bin/sh -c with this script:\n  set -e\n  for f in a b; do\n  \techo \"$f\"\n  done",
        );
    }

    #[test]
    fn signal_names_fall_back_to_numbers() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(1000), "signal 1000");
    }
}
