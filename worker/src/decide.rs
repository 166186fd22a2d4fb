//! The worker's pure decisions: which runnable [`TaskKind`] a rendered DAG task becomes,
//! and how a try's [`Outcome`] is recorded (new state through the state machine, retry
//! time, exit code, the callback to enqueue).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{self, Callback, CommandLine, Task};
use nightshift_core::retry::{can_retry, RetryPolicy};
use nightshift_core::state::TaskState;
use nightshift_store::CallbackEvent;

use crate::kind::{
    CommandProgram, CommandSpec, HttpSpec, Interrupt, Outcome, RequireSpec, SensorSpec, SqlSpec,
    TaskKind,
};

/// A task this worker cannot run yet; the try's fatal failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedKind {
    #[error(
        "ecs task: connection {connection:?} is not supported yet; remove it to use the worker's AWS credentials and region"
    )]
    EcsConnection { connection: String },
}

/// The runnable kind of a rendered task; `Err` names what this worker cannot run yet.
pub fn task_kind(kind: &dag::TaskKind) -> Result<TaskKind, UnsupportedKind> {
    match kind {
        dag::TaskKind::Command(t) => Ok(TaskKind::Command(CommandSpec {
            program: match &t.command {
                CommandLine::Shell(script) => CommandProgram::Shell(script.clone()),
                CommandLine::Argv(argv) => CommandProgram::Argv(argv.clone()),
            },
            env: t.env.clone(),
            cwd: t.cwd.as_ref().map(PathBuf::from),
            skip_on_exit_code: t.skip_on_exit_code.clone(),
        })),
        dag::TaskKind::Noop => Ok(TaskKind::Noop),
        dag::TaskKind::Ecs(t) => match &t.connection {
            // Connections (region, endpoint, credentials) reach the ecs kind in a later step;
            // until then it uses the worker's standard AWS chain and says so instead of
            // silently ignoring the field.
            Some(name) => Err(UnsupportedKind::EcsConnection {
                connection: name.clone(),
            }),
            None => Ok(TaskKind::Ecs(Box::new(t.clone()))),
        },
        // Connections are filled in by `connections::attach` once the try has them.
        dag::TaskKind::Sql(t) => Ok(TaskKind::Sql(Box::new(SqlSpec::new(t.clone())))),
        dag::TaskKind::Http(t) => Ok(TaskKind::Http(Box::new(HttpSpec::new(t.clone())))),
        dag::TaskKind::Sensor(t) => Ok(TaskKind::Sensor(Box::new(SensorSpec::new(t.clone())))),
        dag::TaskKind::Approval(t) => Ok(TaskKind::Approval(t.clone())),
        // The handle on other DAGs' runs is attached by the worker, which has the store.
        dag::TaskKind::Require(t) => Ok(TaskKind::Require(Box::new(RequireSpec::new(t.clone())))),
        dag::TaskKind::Athena(t) => Ok(TaskKind::Athena(Box::new(t.clone()))),
        dag::TaskKind::Redshift(t) => Ok(TaskKind::Redshift(Box::new(t.clone()))),
        // The connection is filled in by `connections::attach`, as for `sql`.
        dag::TaskKind::Bigquery(t) => Ok(TaskKind::Bigquery(Box::new(
            crate::kind::bigquery::BigquerySpec::new(t.clone()),
        ))),
    }
}

/// The retry policy of a task, from its resolved fields.
pub fn retry_policy(task: &Task) -> RetryPolicy {
    RetryPolicy {
        retries: task.retries,
        retry_delay: task.retry_delay,
        exponential_backoff: task.retry_exponential_backoff,
        max_retry_delay: task.max_retry_delay,
    }
}

/// How a finished try is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub state: TaskState,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub output: Option<serde_json::Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Facts about the try besides its outcome.
#[derive(Debug, Clone, Copy)]
pub struct TryFacts<'a> {
    pub try_number: u32,
    pub max_tries: u32,
    /// `None` when the task is unknown (then no retry delay applies).
    pub policy: Option<&'a RetryPolicy>,
    /// In `[0, 1)`, for the exponential backoff.
    pub jitter: f64,
    /// Whether the try ran a process (a command's success then records exit code 0).
    pub ran_process: bool,
    pub now: DateTime<Utc>,
}

/// Records `outcome`: the state comes from [`TaskState::on`]; a retryable failure with
/// tries left becomes `up_for_retry` at `now + next_retry_delay`; a try that waits
/// becomes `up_for_reschedule`, woken at `now + wake_in` (the same column: the time the
/// scheduler may schedule the instance again).
pub fn finish(outcome: &Outcome, facts: &TryFacts<'_>) -> Finish {
    let tries_left = can_retry(facts.try_number, facts.max_tries);
    let state = TaskState::Running
        .on(outcome.event(tries_left))
        // Every outcome event is legal from `running`; stay safe if that ever changes.
        .unwrap_or(TaskState::Failed);
    let delay = match (state, outcome) {
        (TaskState::UpForRetry, _) => Some(facts.policy.map_or(std::time::Duration::ZERO, |p| {
            p.next_retry_delay(facts.try_number, facts.jitter)
        })),
        (TaskState::UpForReschedule, Outcome::Reschedule { wake_in, .. }) => Some(*wake_in),
        // An approval's timeout: the scheduler decides as `on_timeout` says at that time.
        (TaskState::AwaitingInput, Outcome::AwaitInput { timeout_in, .. }) => *timeout_in,
        _ => None,
    };
    let next_retry_at = delay.map(|delay| {
        chrono::TimeDelta::from_std(delay)
            .ok()
            .and_then(|d| facts.now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    let (error, output) = match outcome {
        Outcome::Success { output } => (None, output.clone()),
        Outcome::Skipped { reason, .. } => (Some(reason.clone()), None),
        Outcome::Failed { error, .. } => (Some(error.clone()), None),
        Outcome::Cancelled => (Some(Interrupt::Cancelled.to_string()), None),
        // Not an error: why not yet is in the try's log.
        Outcome::Reschedule { .. } => (None, None),
        // What the approver is shown; the decision adds itself to it.
        Outcome::AwaitInput { message, .. } => (
            None,
            Some(nightshift_core::approval::request_output(
                message,
                facts.now,
                next_retry_at,
            )),
        ),
    };
    let exit_code = outcome
        .exit_code()
        .or((facts.ran_process && matches!(outcome, Outcome::Success { .. })).then_some(0));
    Finish {
        state,
        error,
        exit_code,
        output,
        next_retry_at,
    }
}

/// The task callback to enqueue after a try ended in `state`, if the task has one.
pub fn callback_for(task: &Task, state: TaskState) -> Option<(CallbackEvent, &Callback)> {
    let (event, callback) = match state {
        TaskState::Success => (CallbackEvent::Success, &task.on_success),
        TaskState::UpForRetry => (CallbackEvent::Retry, &task.on_retry),
        TaskState::Failed => (CallbackEvent::Failure, &task.on_failure),
        _ => return None,
    };
    callback.as_ref().map(|cb| (event, cb))
}

/// A number in `[0, 1)` for retry jitter, from the standard library's randomly seeded
/// hasher (no extra dependency; jitter needs spread, not cryptographic quality).
pub fn jitter(seed: impl std::hash::Hash) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(seed);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use nightshift_core::dag::parse_dag;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap()
    }

    #[test]
    fn outcomes_become_finishes() {
        let policy = RetryPolicy {
            retries: 2,
            retry_delay: Duration::from_secs(60),
            exponential_backoff: true,
            max_retry_delay: None,
        };
        fn check(
            outcome: Outcome,
            try_number: u32,
            ran_process: bool,
            policy: &RetryPolicy,
            expected: Finish,
        ) {
            let facts = TryFacts {
                try_number,
                max_tries: 3,
                policy: Some(policy),
                jitter: 0.5,
                ran_process,
                now: now(),
            };
            assert_eq!(
                finish(&outcome, &facts),
                expected,
                "{outcome:?} try {try_number}"
            );
        }
        let fin = |state, error: Option<&str>, exit_code, output, retry_in: Option<i64>| Finish {
            state,
            error: error.map(str::to_owned),
            exit_code,
            output,
            next_retry_at: retry_in.map(|s| now() + chrono::TimeDelta::seconds(s)),
        };
        check(
            Outcome::Success {
                output: Some(json!(1)),
            },
            1,
            true,
            &policy,
            fin(TaskState::Success, None, Some(0), Some(json!(1)), None),
        );
        check(
            Outcome::Success { output: None },
            1,
            false,
            &policy,
            fin(TaskState::Success, None, None, None, None),
        );
        check(
            Outcome::Skipped {
                reason: "exit code 99".into(),
                exit_code: Some(99),
            },
            1,
            true,
            &policy,
            fin(
                TaskState::Skipped,
                Some("exit code 99"),
                Some(99),
                None,
                None,
            ),
        );
        // Backoff: base 60s * 2^(try-1), times 1.5 for the jitter.
        let failed = |code| Outcome::Failed {
            error: "boom".into(),
            retryable: true,
            exit_code: code,
        };
        check(
            failed(Some(1)),
            1,
            true,
            &policy,
            fin(TaskState::UpForRetry, Some("boom"), Some(1), None, Some(90)),
        );
        check(
            failed(Some(1)),
            2,
            true,
            &policy,
            fin(
                TaskState::UpForRetry,
                Some("boom"),
                Some(1),
                None,
                Some(180),
            ),
        );
        check(
            failed(Some(1)),
            3,
            true,
            &policy,
            fin(TaskState::Failed, Some("boom"), Some(1), None, None),
        );
        // A cancelled try that is recorded (not handed back) is a retryable failure, even
        // of a process.
        check(
            Outcome::Cancelled,
            1,
            true,
            &policy,
            fin(
                TaskState::UpForRetry,
                Some("cancelled"),
                None,
                None,
                Some(90),
            ),
        );
        check(
            Outcome::Cancelled,
            3,
            true,
            &policy,
            fin(TaskState::Failed, Some("cancelled"), None, None, None),
        );
        // A waiting try is woken after its poke interval, on its last try too: waiting
        // is not a failure and spends no retry.
        for try_number in [1, 3] {
            check(
                Outcome::Reschedule {
                    wake_in: Duration::from_secs(30),
                    reason: "the query returned 0".into(),
                },
                try_number,
                false,
                &policy,
                fin(TaskState::UpForReschedule, None, None, None, Some(30)),
            );
        }
        // An approval asks: it awaits input until its timeout (or forever), with the
        // message as its output so far.
        let asked = |timeout: Option<i64>| {
            let at = timeout.map(|s| now() + chrono::TimeDelta::seconds(s));
            let output = nightshift_core::approval::request_output("ship it?", now(), at);
            fin(TaskState::AwaitingInput, None, None, Some(output), timeout)
        };
        for timeout in [Some(3600), None] {
            check(
                Outcome::AwaitInput {
                    message: "ship it?".into(),
                    timeout_in: timeout.map(|s| Duration::from_secs(s as u64)),
                },
                1,
                false,
                &policy,
                asked(timeout),
            );
        }
        // A try number past the budget (after a hand-back) has no tries left either.
        check(
            failed(None),
            4,
            true,
            &policy,
            fin(TaskState::Failed, Some("boom"), None, None, None),
        );
        check(
            Outcome::fatal("bad"),
            1,
            false,
            &policy,
            fin(TaskState::Failed, Some("bad"), None, None, None),
        );
    }

    #[test]
    fn an_ecs_connection_is_refused_by_name() {
        let dag = parse_dag(
            "dags/e.toml",
            r#"
[tasks.run]
type = "ecs"
connection = "aws_prod"
cluster = "etl"
task_definition = "extract"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = task_kind(&dag.tasks["run"].kind).err();
        assert_eq!(
            err,
            Some(UnsupportedKind::EcsConnection {
                connection: "aws_prod".into()
            })
        );
        assert!(err.is_some_and(|e| e
            .to_string()
            .starts_with("ecs task: connection \"aws_prod\" is not supported yet")));
    }

    #[test]
    fn kinds_map_to_runnable_specs() {
        let dag = parse_dag(
            "dags/k.toml",
            r#"
[tasks.argv]
type = "command"
command = ["echo", "hi"]
env = { A = "1" }
cwd = "/tmp"

[tasks.shell]
type = "command"
command = "echo hi"

[tasks.join]
type = "noop"

[tasks.call]
type = "http"
url = "https://example.invalid"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        fn check(task: &Task, expected: Result<TaskKind, UnsupportedKind>) {
            assert_eq!(task_kind(&task.kind), expected, "{}", task.id);
        }
        check(
            &dag.tasks["argv"],
            Ok(TaskKind::Command(CommandSpec {
                program: CommandProgram::Argv(vec!["echo".into(), "hi".into()]),
                env: [("A".to_owned(), "1".to_owned())].into(),
                cwd: Some(PathBuf::from("/tmp")),
                skip_on_exit_code: vec![99],
            })),
        );
        check(
            &dag.tasks["shell"],
            Ok(TaskKind::Command(CommandSpec::new(CommandProgram::Shell(
                "echo hi".into(),
            )))),
        );
        check(&dag.tasks["join"], Ok(TaskKind::Noop));
        let dag::TaskKind::Http(call) = &dag.tasks["call"].kind else {
            panic!("call is an http task");
        };
        check(
            &dag.tasks["call"],
            Ok(TaskKind::Http(Box::new(HttpSpec::new(call.clone())))),
        );
    }

    #[test]
    fn callbacks_follow_the_new_state() {
        let dag = parse_dag(
            "dags/c.toml",
            r#"
[tasks.t]
type = "noop"
on_failure = { slack_webhook = "https://hooks.invalid/f" }
on_retry = { url = "https://example.invalid/r" }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let task = &dag.tasks["t"];
        fn check(task: &Task, state: TaskState, expected: Option<CallbackEvent>) {
            assert_eq!(
                callback_for(task, state).map(|(e, _)| e),
                expected,
                "{state}"
            );
        }
        check(task, TaskState::Failed, Some(CallbackEvent::Failure));
        check(task, TaskState::UpForRetry, Some(CallbackEvent::Retry));
        check(task, TaskState::Success, None);
        check(task, TaskState::Skipped, None);
    }

    #[test]
    fn jitter_stays_in_range() {
        for seed in 0..1000 {
            let j = jitter(seed);
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
