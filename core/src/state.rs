//! The task-instance state machine: the only code that knows which transitions are legal.
//!
//! Every change of a task instance's state, wherever it happens (scheduler, worker,
//! API, CLI), is computed here with [`TaskState::on`] and then written by the store as
//! one compare-and-set (`WHERE state = expected AND try_number = n`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of one task instance (one task of one DAG run, one map index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created with its run; waiting for its upstreams (Airflow's "no status").
    Pending,
    /// Its trigger rule is met; waiting for a slot (limits, pools) to be queued.
    Scheduled,
    /// Handed to a queue; a worker may claim it.
    Queued,
    /// Claimed by a worker that holds a lease on it.
    Running,
    Success,
    Failed,
    /// A try failed and another is allowed once the retry delay has passed.
    UpForRetry,
    /// A try that waits (a sensor whose condition is not true yet) gave its worker slot
    /// back and asked to be woken at `next_retry_at`; it is the same try, not a failed
    /// one, and the claim that wakes it resumes it (Airflow's reschedule mode).
    UpForReschedule,
    /// An `approval` task waits for a person (or its timeout) to decide; it holds no
    /// worker slot, and its try goes on until the decision (Airflow 3.3's name).
    AwaitingInput,
    /// Its trigger rule can no longer be met because upstreams failed.
    UpstreamFailed,
    Skipped,
    /// The task no longer exists in the DAG's current definition.
    Removed,
}

/// Something that happens to a task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// Its trigger rule is met (from `pending`), its retry delay has passed (from
    /// `up_for_retry`), or its next poke time has come (from `up_for_reschedule`).
    Schedule,
    /// The scheduler found a free slot and put it on its queue.
    Queue,
    /// A worker claimed it; this starts a new try.
    Claim,
    /// The try finished successfully.
    Succeed,
    /// The try waits for something (a sensor's condition, another DAG's run) and gives
    /// its slot back until its next poke time; the try goes on when it is claimed again.
    Reschedule,
    /// The try failed (error, non-zero exit, timeout; an approval nobody decided in
    /// time with `on_timeout = "fail"`). `retry` says whether another try is allowed.
    Fail { retry: bool },
    /// The try asked a person to decide (an `approval` task) and gives its slot back
    /// until someone approves or rejects it.
    AwaitInput,
    /// A person (or an approval's timeout with `on_timeout = "approve"`) approved it.
    Approve,
    /// A person (or an approval's timeout with `on_timeout = "reject"`) rejected it.
    Reject,
    /// The try asked to be skipped (e.g. an exit code in `skip_on_exit_code`), or the
    /// trigger rule decided the task is skipped.
    Skip,
    /// The trigger rule can no longer be met because upstreams failed.
    UpstreamFailed,
    /// The worker's lease expired; the scheduler reaps the try. `retry` as for `Fail`.
    Reap { retry: bool },
    /// A draining worker gives a running try back without it counting as a failure.
    HandBack,
    /// A person cleared the instance: it runs again as a new try.
    Clear,
    /// A person marked the instance as succeeded.
    MarkSuccess,
    /// A person marked the instance as failed (or cancelled its run).
    MarkFailed,
    /// The task vanished from the DAG definition.
    Remove,
    /// A removed task came back to the DAG definition.
    Restore,
}

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event:?} in state {from}")]
pub struct IllegalTransition {
    pub from: TaskState,
    pub event: TaskEvent,
}

impl TaskState {
    pub const ALL: [TaskState; 12] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpForReschedule,
        TaskState::AwaitingInput,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Removed,
    ];

    /// The state after `event`, or the reason it cannot happen.
    pub fn on(self, event: TaskEvent) -> Result<TaskState, IllegalTransition> {
        use TaskEvent as E;
        use TaskState as S;
        let next = match (self, event) {
            (S::Pending | S::UpForRetry | S::UpForReschedule, E::Schedule) => S::Scheduled,
            (S::Scheduled, E::Queue) => S::Queued,
            (S::Queued, E::Claim) => S::Running,
            (S::Running, E::Succeed) => S::Success,
            (S::Running, E::Reschedule) => S::UpForReschedule,
            (S::Running, E::Fail { retry: true } | E::Reap { retry: true }) => S::UpForRetry,
            (S::Running, E::Fail { retry: false } | E::Reap { retry: false }) => S::Failed,
            (S::Running, E::HandBack) => S::Scheduled,
            // An approval: the decision (a person's, or its timeout's) ends the try.
            (S::Running, E::AwaitInput) => S::AwaitingInput,
            (S::AwaitingInput, E::Approve) => S::Success,
            (S::AwaitingInput, E::Reject | E::Fail { retry: false }) => S::Failed,
            (S::AwaitingInput, E::Fail { retry: true }) => S::UpForRetry,
            // A running try may skip itself; a waiting task is skipped by its trigger rule.
            (S::Pending | S::Scheduled | S::Running, E::Skip) => S::Skipped,
            (S::Pending | S::Scheduled, E::UpstreamFailed) => S::UpstreamFailed,
            // Clearing is allowed from anywhere but a state that is already waiting to run.
            (S::Pending, E::Clear) => return Err(IllegalTransition { from: self, event }),
            (_, E::Clear) => S::Pending,
            (S::Success, E::MarkSuccess) | (S::Failed, E::MarkFailed) => {
                return Err(IllegalTransition { from: self, event })
            }
            (S::Removed, E::MarkSuccess | E::MarkFailed) => {
                return Err(IllegalTransition { from: self, event })
            }
            (_, E::MarkSuccess) => S::Success,
            (_, E::MarkFailed) => S::Failed,
            (s, E::Remove) if !s.is_finished() || s == S::UpstreamFailed || s == S::Skipped => {
                S::Removed
            }
            (S::Removed, E::Restore) => S::Pending,
            _ => return Err(IllegalTransition { from: self, event }),
        };
        Ok(next)
    }

    /// A finished instance will not change again unless a person clears or marks it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Skipped
                | TaskState::Removed
        )
    }

    /// What happens to an instance in this state when its run is stopped (a person
    /// cancels it, or it exceeds its `dagrun_timeout`): work that never started is
    /// skipped, work under way or waiting to retry or to be woken fails (a worker still
    /// running it then loses its final compare-and-set). `None` for a finished instance,
    /// left as it is.
    pub fn stop_event(self) -> Option<TaskEvent> {
        match self {
            TaskState::Pending | TaskState::Scheduled => Some(TaskEvent::Skip),
            TaskState::Queued
            | TaskState::Running
            | TaskState::UpForRetry
            | TaskState::UpForReschedule
            | TaskState::AwaitingInput => Some(TaskEvent::MarkFailed),
            _ => None,
        }
    }

    /// A try is under way: running, or waiting without a slot for its next poke or for a
    /// person's decision (its log may still grow).
    pub fn try_under_way(self) -> bool {
        matches!(
            self,
            TaskState::Running | TaskState::UpForReschedule | TaskState::AwaitingInput
        )
    }

    /// Counted against `max_active_tasks` and pool slots.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Queued | TaskState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpForReschedule => "up_for_reschedule",
            TaskState::AwaitingInput => "awaiting_input",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Removed => "removed",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?} (expected one of: pending, scheduled, queued, running, success, failed, up_for_retry, up_for_reschedule, awaiting_input, upstream_failed, skipped, removed)")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// The state of a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }

    /// The run's state after `event`, or the reason it cannot happen. The only code that
    /// knows which run transitions are legal.
    pub fn on(self, event: RunEvent) -> Result<RunState, IllegalRunTransition> {
        use RunEvent as E;
        use RunState as S;
        let next = match (self, event) {
            (S::Queued, E::Start) => S::Running,
            (S::Running, E::Succeed) => S::Success,
            (S::Running, E::Fail) => S::Failed,
            // A person stops a run that has not finished yet.
            (S::Queued | S::Running, E::Stop) => S::Failed,
            // An instance of a finished run was cleared or marked: evaluate it again.
            (S::Success | S::Failed, E::Reopen) => S::Running,
            _ => return Err(IllegalRunTransition { from: self, event }),
        };
        Ok(next)
    }

    /// Whether some event takes a run from `self` to `to` (for callers that name the
    /// target state rather than the event).
    pub fn can_become(self, to: RunState) -> bool {
        RunEvent::ALL
            .into_iter()
            .any(|event| self.on(event) == Ok(to))
    }
}

/// Something that happens to a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// The scheduler found room under `max_active_runs` and started the queued run.
    Start,
    /// Every instance finished and the run's outcome is success.
    Succeed,
    /// Every instance finished and the run's outcome is failure (or it timed out).
    Fail,
    /// A person stopped (cancelled) the run before it finished.
    Stop,
    /// An instance of the finished run was cleared or marked, so it runs again.
    Reopen,
}

impl RunEvent {
    pub const ALL: [RunEvent; 5] = [
        RunEvent::Start,
        RunEvent::Succeed,
        RunEvent::Fail,
        RunEvent::Stop,
        RunEvent::Reopen,
    ];
}

/// A run transition that the run state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal run transition: {event:?} in state {from}")]
pub struct IllegalRunTransition {
    pub from: RunState,
    pub event: RunEvent,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::TaskEvent as E;
    use super::TaskState as S;
    use super::*;

    const EVENTS: [TaskEvent; 21] = [
        E::Schedule,
        E::Queue,
        E::Claim,
        E::Succeed,
        E::Reschedule,
        E::Fail { retry: true },
        E::Fail { retry: false },
        E::Skip,
        E::UpstreamFailed,
        E::Reap { retry: true },
        E::Reap { retry: false },
        E::HandBack,
        E::Clear,
        E::MarkSuccess,
        E::MarkFailed,
        E::Remove,
        E::Restore,
        E::Queue,
        E::AwaitInput,
        E::Approve,
        E::Reject,
    ];

    /// Every legal (state, event) pair, with its outcome. Anything not listed is illegal.
    const LEGAL: &[(TaskState, TaskEvent, TaskState)] = &[
        (S::Pending, E::Schedule, S::Scheduled),
        (S::Pending, E::Skip, S::Skipped),
        (S::Pending, E::UpstreamFailed, S::UpstreamFailed),
        (S::Pending, E::MarkSuccess, S::Success),
        (S::Pending, E::MarkFailed, S::Failed),
        (S::Pending, E::Remove, S::Removed),
        (S::Scheduled, E::Queue, S::Queued),
        (S::Scheduled, E::Skip, S::Skipped),
        (S::Scheduled, E::UpstreamFailed, S::UpstreamFailed),
        (S::Scheduled, E::Clear, S::Pending),
        (S::Scheduled, E::MarkSuccess, S::Success),
        (S::Scheduled, E::MarkFailed, S::Failed),
        (S::Scheduled, E::Remove, S::Removed),
        (S::Queued, E::Claim, S::Running),
        (S::Queued, E::Clear, S::Pending),
        (S::Queued, E::MarkSuccess, S::Success),
        (S::Queued, E::MarkFailed, S::Failed),
        (S::Queued, E::Remove, S::Removed),
        (S::Running, E::Succeed, S::Success),
        (S::Running, E::Reschedule, S::UpForReschedule),
        (S::Running, E::Fail { retry: true }, S::UpForRetry),
        (S::Running, E::Fail { retry: false }, S::Failed),
        (S::Running, E::Reap { retry: true }, S::UpForRetry),
        (S::Running, E::Reap { retry: false }, S::Failed),
        (S::Running, E::HandBack, S::Scheduled),
        (S::Running, E::AwaitInput, S::AwaitingInput),
        (S::Running, E::Skip, S::Skipped),
        (S::Running, E::Clear, S::Pending),
        (S::Running, E::MarkSuccess, S::Success),
        (S::Running, E::MarkFailed, S::Failed),
        (S::Running, E::Remove, S::Removed),
        (S::Success, E::Clear, S::Pending),
        (S::Success, E::MarkFailed, S::Failed),
        (S::Failed, E::Clear, S::Pending),
        (S::Failed, E::MarkSuccess, S::Success),
        (S::UpForRetry, E::Schedule, S::Scheduled),
        (S::UpForRetry, E::Clear, S::Pending),
        (S::UpForRetry, E::MarkSuccess, S::Success),
        (S::UpForRetry, E::MarkFailed, S::Failed),
        (S::UpForRetry, E::Remove, S::Removed),
        (S::UpForReschedule, E::Schedule, S::Scheduled),
        (S::UpForReschedule, E::Clear, S::Pending),
        (S::UpForReschedule, E::MarkSuccess, S::Success),
        (S::UpForReschedule, E::MarkFailed, S::Failed),
        (S::UpForReschedule, E::Remove, S::Removed),
        (S::AwaitingInput, E::Approve, S::Success),
        (S::AwaitingInput, E::Reject, S::Failed),
        (S::AwaitingInput, E::Fail { retry: true }, S::UpForRetry),
        (S::AwaitingInput, E::Fail { retry: false }, S::Failed),
        (S::AwaitingInput, E::Clear, S::Pending),
        (S::AwaitingInput, E::MarkSuccess, S::Success),
        (S::AwaitingInput, E::MarkFailed, S::Failed),
        (S::AwaitingInput, E::Remove, S::Removed),
        (S::UpstreamFailed, E::Clear, S::Pending),
        (S::UpstreamFailed, E::MarkSuccess, S::Success),
        (S::UpstreamFailed, E::MarkFailed, S::Failed),
        (S::UpstreamFailed, E::Remove, S::Removed),
        (S::Skipped, E::Clear, S::Pending),
        (S::Skipped, E::MarkSuccess, S::Success),
        (S::Skipped, E::MarkFailed, S::Failed),
        (S::Skipped, E::Remove, S::Removed),
        (S::Removed, E::Clear, S::Pending),
        (S::Removed, E::Restore, S::Pending),
    ];

    #[test]
    fn every_state_event_pair_is_decided_as_listed() {
        for from in TaskState::ALL {
            for event in EVENTS {
                let expected = LEGAL
                    .iter()
                    .find(|(s, e, _)| *s == from && *e == event)
                    .map(|(_, _, to)| *to);
                let got = from.on(event).ok();
                assert_eq!(got, expected, "{from} on {event:?}");
            }
        }
    }

    #[test]
    fn only_claim_enters_running() {
        for from in TaskState::ALL {
            for event in EVENTS {
                if from.on(event) == Ok(S::Running) {
                    assert_eq!((from, event), (S::Queued, E::Claim));
                }
            }
        }
    }

    /// Every legal (run state, run event) pair, with its outcome. Anything else is illegal.
    const RUN_LEGAL: &[(RunState, RunEvent, RunState)] = &[
        (RunState::Queued, RunEvent::Start, RunState::Running),
        (RunState::Queued, RunEvent::Stop, RunState::Failed),
        (RunState::Running, RunEvent::Succeed, RunState::Success),
        (RunState::Running, RunEvent::Fail, RunState::Failed),
        (RunState::Running, RunEvent::Stop, RunState::Failed),
        (RunState::Success, RunEvent::Reopen, RunState::Running),
        (RunState::Failed, RunEvent::Reopen, RunState::Running),
    ];

    #[test]
    fn every_run_state_event_pair_is_decided_as_listed() {
        for from in RunState::ALL {
            for event in RunEvent::ALL {
                let expected = RUN_LEGAL
                    .iter()
                    .find(|(s, e, _)| *s == from && *e == event)
                    .map(|(_, _, to)| *to);
                let got = from.on(event).ok();
                assert_eq!(got, expected, "run {from} on {event:?}");
            }
        }
    }

    #[test]
    fn run_can_become_only_what_an_event_leads_to() {
        for from in RunState::ALL {
            for to in RunState::ALL {
                let listed = RUN_LEGAL.iter().any(|(s, _, t)| *s == from && *t == to);
                assert_eq!(from.can_become(to), listed, "run {from} -> {to}");
            }
        }
        assert!(!RunState::Success.can_become(RunState::Failed));
        assert!(!RunState::Queued.can_become(RunState::Success));
    }

    #[test]
    fn stopping_a_run_finishes_every_unfinished_instance_and_leaves_the_rest() {
        for state in TaskState::ALL {
            match state.stop_event() {
                Some(event) => {
                    let next = state.on(event).expect("a stop event is legal");
                    assert!(next.is_finished(), "{state} stops in {next}");
                    assert!(!state.is_finished(), "{state} is already finished");
                }
                None => assert!(state.is_finished(), "{state} must be stopped"),
            }
        }
        assert_eq!(S::Scheduled.stop_event(), Some(E::Skip));
        assert_eq!(S::UpForRetry.stop_event(), Some(E::MarkFailed));
        assert_eq!(S::UpForReschedule.stop_event(), Some(E::MarkFailed));
        assert_eq!(S::AwaitingInput.stop_event(), Some(E::MarkFailed));
    }

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
        }
        assert!("bogus".parse::<TaskState>().is_err());
    }
}
