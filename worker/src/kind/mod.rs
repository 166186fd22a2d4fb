//! Task kinds: what a worker runs for one try of a task instance, behind one interface.
//!
//! A kind receives a [`TaskContext`] (who it is running for, a cancel token, the try's
//! timeout and its log) and returns an [`Outcome`]. Kinds do no store access (beyond
//! recording an external job's id through [`ExternalJob`] the moment it exists): the
//! worker claims the try, builds the context, runs [`TaskKind::run`], drains the log
//! channel and records the outcome with [`Outcome::event`]. (`require` also gets a
//! narrow handle on other DAGs' runs, [`require::RequiredRuns`].) Each kind honours
//! [`TaskContext::interrupted`] itself, because stopping is kind-specific (kill a process
//! group, call ECS StopTask, ...).

pub mod approval;
pub mod athena;
pub mod aws;
pub mod bigquery;
pub mod command;
pub mod ecs;
pub mod external;
pub mod http;
pub mod noop;
pub mod redshift;
pub mod require;
pub mod sensor;
pub mod sql;
pub mod stop;

use std::future::Future;
use std::time::Duration;

use nightshift_core::state::TaskEvent;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log::{LogWriter, Stream};

pub use command::{CommandProgram, CommandSpec};
pub use external::ExternalJob;
pub use http::HttpSpec;
pub use require::RequireSpec;
pub use sensor::SensorSpec;
pub use sql::SqlSpec;

/// How one try ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The try succeeded; `output` is what downstream tasks may read (XCom-like).
    Success { output: Option<serde_json::Value> },
    /// The try asked to be skipped (e.g. an exit code in `skip_on_exit_code`, which is
    /// kept in `exit_code`).
    Skipped {
        reason: String,
        exit_code: Option<i32>,
    },
    /// The try failed. `retryable: false` is a fatal error that skips remaining retries.
    Failed {
        error: String,
        retryable: bool,
        exit_code: Option<i32>,
    },
    /// The try's cancel token stopped it before it finished ([`Interrupt::Cancelled`]):
    /// a draining worker hands such a try back; recorded, it is a retryable failure
    /// `cancelled` (it was not the task's fault).
    Cancelled,
    /// The try waits for something that is not true yet (a sensor's condition): it
    /// gives its worker slot back and asks to be woken in `wake_in`
    /// (`up_for_reschedule`). Not a failure: the same try goes on when it is claimed
    /// again, and no retry is spent. `reason` says why not yet.
    Reschedule {
        #[serde(with = "nightshift_core::duration::human")]
        wake_in: Duration,
        reason: String,
    },
    /// The try asked a person to decide (an `approval`): the instance awaits input
    /// (`awaiting_input`) without a worker slot until someone approves or rejects it, or
    /// `timeout_in` passes (`None`: no timeout). The decision ends the try.
    AwaitInput {
        message: String,
        #[serde(with = "nightshift_core::duration::human::option")]
        timeout_in: Option<Duration>,
    },
}

impl Outcome {
    /// A failure that may be retried, without an exit code.
    pub fn retryable(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable: true,
            exit_code: None,
        }
    }

    /// A failure that no retry can fix, without an exit code.
    pub fn fatal(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable: false,
            exit_code: None,
        }
    }

    /// The exit code the outcome carries (a skip or a failure of a process).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Success { .. }
            | Outcome::Cancelled
            | Outcome::Reschedule { .. }
            | Outcome::AwaitInput { .. } => None,
            Outcome::Skipped { exit_code, .. } | Outcome::Failed { exit_code, .. } => *exit_code,
        }
    }

    /// The state-machine event that records this outcome; `tries_left` says whether the
    /// task's retry budget allows another try.
    pub fn event(&self, tries_left: bool) -> TaskEvent {
        match self {
            Outcome::Success { .. } => TaskEvent::Succeed,
            Outcome::Skipped { .. } => TaskEvent::Skip,
            Outcome::Failed { retryable, .. } => TaskEvent::Fail {
                retry: *retryable && tries_left,
            },
            Outcome::Cancelled => TaskEvent::Fail { retry: tries_left },
            Outcome::Reschedule { .. } => TaskEvent::Reschedule,
            Outcome::AwaitInput { .. } => TaskEvent::AwaitInput,
        }
    }
}

/// Why a try was told to stop before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The context's cancel token fired (worker shutdown past its grace, run cancelled).
    Cancelled,
    /// The try ran longer than its timeout.
    TimedOut(Duration),
}

impl Interrupt {
    /// The outcome of a try stopped this way: a timeout is a retryable failure (it counts
    /// as a failed try, as in Airflow); a cancelled try is [`Outcome::Cancelled`] (the
    /// worker usually hands it back instead of recording it).
    pub fn outcome(self) -> Outcome {
        match self {
            Interrupt::Cancelled => Outcome::Cancelled,
            Interrupt::TimedOut(_) => Outcome::retryable(self.to_string()),
        }
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupt::Cancelled => f.write_str("cancelled"),
            Interrupt::TimedOut(d) => {
                write!(f, "timed out after {}", humantime::format_duration(*d))
            }
        }
    }
}

/// Everything a kind needs to run one try, besides its own spec.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// 1 for the first try.
    pub try_number: u32,
    /// The index of a `for_each` instance; -1 when the task is not mapped (Airflow's
    /// convention, which keeps the instance key free of NULLs).
    pub map_index: i32,
    /// Fires when the try must stop (worker shutdown, run cancelled).
    pub cancel: CancellationToken,
    /// How long the try may run, counted from when the kind starts waiting on
    /// [`interrupted`](Self::interrupted); `None` for no limit. For a try resumed after
    /// waiting without a slot ([`Outcome::Reschedule`]) it is what is left of the task's
    /// timeout, which counts from the try's first start (its first poke).
    pub timeout: Option<Duration>,
    /// The task's whole timeout, counted from the try's first start (`timeout` is what
    /// is left of it at this claim).
    pub try_timeout: Option<Duration>,
    /// How often this try was woken again after waiting without a slot (0 for a new try).
    pub wakes: u32,
    pub log: LogWriter,
    /// The try's link to an external job (an ECS task): ids left by earlier tries, and
    /// the way to record its own at once.
    pub external: ExternalJob,
}

impl TaskContext {
    /// Resolves when the try must stop: the cancel token fired or the timeout passed.
    /// The deadline is fixed when this is called, not when it is first polled.
    pub fn interrupted(&self) -> impl Future<Output = Interrupt> + Send + '_ {
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        async move {
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => Interrupt::Cancelled,
                () = timer => Interrupt::TimedOut(self.timeout.unwrap_or_default()),
            }
        }
    }

    /// Writes a line of nightshift's own to the try's log.
    pub fn system(&self, text: impl Into<String>) {
        self.log.line(Stream::System, text);
    }
}

/// A task kind with its (already templated) spec. Kinds are chosen at run time from the
/// DAG's `type`; the other kinds (sql, http, ecs, sensor) join as variants.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    Command(CommandSpec),
    Noop,
    Ecs(Box<nightshift_core::dag::EcsTask>),
    Sql(Box<SqlSpec>),
    Http(Box<HttpSpec>),
    Sensor(Box<SensorSpec>),
    Approval(nightshift_core::approval::ApprovalTask),
    Require(Box<RequireSpec>),
    Athena(Box<nightshift_core::dag::AthenaTask>),
    Redshift(Box<nightshift_core::dag::RedshiftTask>),
    Bigquery(Box<bigquery::BigquerySpec>),
}

impl TaskKind {
    /// The `type` name used in DAG files.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Command(_) => "command",
            TaskKind::Noop => "noop",
            TaskKind::Ecs(_) => "ecs",
            TaskKind::Sql(_) => "sql",
            TaskKind::Http(_) => "http",
            TaskKind::Sensor(_) => "sensor",
            TaskKind::Approval(_) => "approval",
            TaskKind::Require(_) => "require",
            TaskKind::Athena(_) => "athena",
            TaskKind::Redshift(_) => "redshift",
            TaskKind::Bigquery(_) => "bigquery",
        }
    }

    /// Runs one try to its end. Never panics on the task's behaviour; every way a try
    /// can go wrong is an [`Outcome::Failed`].
    pub async fn run(&self, ctx: &TaskContext) -> Outcome {
        match self {
            TaskKind::Command(spec) => command::run(spec, ctx).await,
            TaskKind::Noop => noop::run(ctx).await,
            TaskKind::Ecs(spec) => ecs::run(spec, ctx).await,
            TaskKind::Sql(spec) => sql::run(spec, ctx).await,
            TaskKind::Http(spec) => http::run(spec, ctx).await,
            TaskKind::Sensor(spec) => sensor::run(spec, ctx).await,
            TaskKind::Approval(spec) => approval::run(spec, ctx).await,
            TaskKind::Require(spec) => require::run(spec, ctx).await,
            TaskKind::Athena(spec) => athena::run(spec, ctx).await,
            TaskKind::Redshift(spec) => redshift::run(spec, ctx).await,
            TaskKind::Bigquery(spec) => bigquery::run(spec, ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogChannel;

    pub(crate) fn context(timeout: Option<Duration>) -> TaskContext {
        let (log, _rx) = LogChannel::new(100);
        TaskContext {
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: "t".into(),
            try_number: 1,
            map_index: -1,
            cancel: CancellationToken::new(),
            timeout,
            try_timeout: timeout,
            wakes: 0,
            log,
            external: ExternalJob::default(),
        }
    }

    #[test]
    fn outcomes_map_to_state_events() {
        fn check(outcome: Outcome, tries_left: bool, expected: TaskEvent) {
            assert_eq!(outcome.event(tries_left), expected, "{outcome:?}");
        }
        check(Outcome::Success { output: None }, false, TaskEvent::Succeed);
        check(
            Outcome::Skipped {
                reason: "x".into(),
                exit_code: None,
            },
            true,
            TaskEvent::Skip,
        );
        check(
            Outcome::retryable("x"),
            true,
            TaskEvent::Fail { retry: true },
        );
        check(
            Outcome::retryable("x"),
            false,
            TaskEvent::Fail { retry: false },
        );
        check(Outcome::fatal("x"), true, TaskEvent::Fail { retry: false });
        // Waiting is no failure: whatever the retry budget, it reschedules.
        for tries_left in [true, false] {
            check(
                Outcome::Reschedule {
                    wake_in: Duration::from_secs(60),
                    reason: "not yet".into(),
                },
                tries_left,
                TaskEvent::Reschedule,
            );
            check(
                Outcome::AwaitInput {
                    message: "ship it?".into(),
                    timeout_in: None,
                },
                tries_left,
                TaskEvent::AwaitInput,
            );
        }
    }

    #[test]
    fn interrupts_read_well() {
        fn check(i: Interrupt, expected: &str) {
            assert_eq!(i.to_string(), expected);
        }
        check(Interrupt::Cancelled, "cancelled");
        check(
            Interrupt::TimedOut(Duration::from_secs(7200)),
            "timed out after 2h",
        );
        check(
            Interrupt::TimedOut(Duration::from_millis(1500)),
            "timed out after 1s 500ms",
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interrupted_fires_on_timeout_or_cancel() {
        let ctx = context(Some(Duration::from_secs(60)));
        assert_eq!(
            ctx.interrupted().await,
            Interrupt::TimedOut(Duration::from_secs(60))
        );

        let ctx = context(None);
        let waiting = ctx.interrupted();
        ctx.cancel.cancel();
        assert_eq!(waiting.await, Interrupt::Cancelled);
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_means_no_deadline() {
        let ctx = context(None);
        let r = tokio::time::timeout(Duration::from_secs(365 * 86400), ctx.interrupted()).await;
        assert!(
            r.is_err(),
            "an untimed, uncancelled try must not be interrupted"
        );
    }

    #[test]
    fn outcome_serializes_with_a_tag() {
        let json = serde_json::to_value(Outcome::Failed {
            error: "boom".into(),
            retryable: true,
            exit_code: Some(1),
        })
        .unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"outcome": "failed", "error": "boom", "retryable": true, "exit_code": 1})
        );
    }
}
