//! Approval steps: a task of kind `approval` asks a person to approve or reject it. Its
//! worker renders the message once and the instance waits in `awaiting_input` (holding no
//! worker slot) until an operator decides, or its `timeout` decides as `on_timeout` says.
//!
//! What a decision writes is decided here, once, for every path that makes one (the UI,
//! the API, the CLI, the scheduler's timeout): the state-machine event, the task's output
//! (what downstream templates read as `outputs.<task_id>`), the error of a rejection, and
//! the log line. Pure: the time and the decider are arguments.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dag::{Callback, Dag, Task, TaskKind};
use crate::duration::format_duration;
use crate::state::TaskEvent;

/// The `approval` kind's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTask {
    /// Shown to the approver (and sent in the `approval_requested` callback): a template
    /// rendered once, when the try asks. `None`: a default text naming the task.
    pub message: Option<String>,
    /// What the task's `timeout` decides when nobody decided in time.
    pub on_timeout: OnTimeout,
}

/// What an approval's timeout decides (`on_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// A rejection: the task fails for good (no retry), as if a person had rejected it.
    Reject,
    /// An approval: the task succeeds and its downstream runs.
    Approve,
    /// A failed try: the task's retries apply (each new try asks again); the default.
    Fail,
}

impl OnTimeout {
    pub const NAMES: [&'static str; 3] = ["reject", "approve", "fail"];

    pub fn parse(text: &str) -> Option<OnTimeout> {
        match text {
            "reject" => Some(OnTimeout::Reject),
            "approve" => Some(OnTimeout::Approve),
            "fail" => Some(OnTimeout::Fail),
            _ => None,
        }
    }
}

/// The actor a timeout's decision is recorded under (audit log, output's `by`).
pub const TIMEOUT_ACTOR: &str = "timeout";

/// A person's (or the timeout's) verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
    /// Nobody decided in time and `on_timeout = "fail"`: the try failed.
    TimedOut,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
            Verdict::TimedOut => "timed_out",
        }
    }
}

/// One decision on an instance awaiting input, with everything it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Who decided: a user name, `cli:<os user>`, or [`TIMEOUT_ACTOR`].
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: Option<String>,
    /// `Fail` only: whether the task's retries allow another try.
    pub retry: bool,
}

impl Decision {
    /// A person's decision; an empty comment is no comment.
    pub fn by_person(
        approve: bool,
        by: impl Into<String>,
        comment: Option<&str>,
        at: DateTime<Utc>,
    ) -> Decision {
        Decision {
            verdict: if approve {
                Verdict::Approved
            } else {
                Verdict::Rejected
            },
            by: by.into(),
            at,
            comment: comment
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            retry: false,
        }
    }

    /// What the timeout decides for `task` (waited `waited`); `tries_left`: whether its
    /// retry budget allows another try (used by `on_timeout = "fail"` only).
    pub fn on_timeout(
        on_timeout: OnTimeout,
        waited: std::time::Duration,
        tries_left: bool,
        at: DateTime<Utc>,
    ) -> Decision {
        let verdict = match on_timeout {
            OnTimeout::Approve => Verdict::Approved,
            OnTimeout::Reject => Verdict::Rejected,
            OnTimeout::Fail => Verdict::TimedOut,
        };
        Decision {
            verdict,
            by: TIMEOUT_ACTOR.to_owned(),
            at,
            comment: Some(format!(
                "nobody decided within {} (on_timeout = \"{}\")",
                format_duration(waited),
                OnTimeout::NAMES[on_timeout as usize]
            )),
            retry: verdict == Verdict::TimedOut && tries_left,
        }
    }

    /// The state-machine event that records the decision.
    pub fn event(&self) -> TaskEvent {
        match self.verdict {
            Verdict::Approved => TaskEvent::Approve,
            Verdict::Rejected => TaskEvent::Reject,
            Verdict::TimedOut => TaskEvent::Fail { retry: self.retry },
        }
    }

    /// The error the try ends with: none for an approval; a rejection names who and why.
    pub fn error(&self) -> Option<String> {
        let comment = self
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        match self.verdict {
            Verdict::Approved => None,
            Verdict::Rejected => Some(format!("rejected by {}{comment}", self.by)),
            Verdict::TimedOut => Some(format!("timed out waiting for approval{comment}")),
        }
    }

    /// The line the try's log ends with.
    pub fn log_line(&self) -> String {
        let comment = self
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        format!(
            "{} by {} at {}{comment}",
            self.verdict.as_str(),
            self.by,
            self.at.to_rfc3339()
        )
    }

    /// The task's output after the decision: what the try recorded when it asked
    /// (`requested`, its `message`) with the decision added. Downstream templates read
    /// `outputs.<task_id>.decision`, `.approved`, `.by`, `.at`, `.comment`, `.message`.
    pub fn output(&self, requested: Option<&Value>) -> Value {
        let mut output = match requested {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        output.insert("decision".into(), json!(self.verdict.as_str()));
        output.insert("approved".into(), json!(self.verdict == Verdict::Approved));
        output.insert("by".into(), json!(self.by));
        output.insert("at".into(), json!(self.at));
        output.insert("comment".into(), json!(self.comment));
        Value::Object(output)
    }
}

/// What the try records when it asks: the rendered message, when it asked, and until when
/// (`None`: no timeout).
pub fn request_output(
    message: &str,
    requested_at: DateTime<Utc>,
    timeout_at: Option<DateTime<Utc>>,
) -> Value {
    json!({
        "message": message,
        "requested_at": requested_at,
        "timeout_at": timeout_at,
    })
}

/// The message shown when the task sets none.
pub fn default_message(dag_id: &str, task_id: &str) -> String {
    format!("Task {task_id} of DAG {dag_id} waits for approval.")
}

/// The approval fields of `task`, when it is an approval.
pub fn of(task: &Task) -> Option<&ApprovalTask> {
    match &task.kind {
        TaskKind::Approval(a) => Some(a),
        _ => None,
    }
}

/// Where an approval request is sent: the DAG's `on_approval_requested` when set, else
/// where failures go (the task's `on_failure`, then the DAG's), as for missed deadlines.
pub fn request_callback<'a>(dag: &'a Dag, task: &'a Task) -> Option<&'a Callback> {
    dag.on_approval_requested
        .as_ref()
        .or(task.on_failure.as_ref())
        .or(dag.on_failure.as_ref())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 9, 0, 0).unwrap()
    }

    #[test]
    fn decisions_write_event_error_and_output() {
        let requested = request_output("Load 42 rows?", at(), None);
        let cases = [
            (
                Decision::by_person(true, "alice", Some("  looks good "), at()),
                TaskEvent::Approve,
                None,
                json!({"decision": "approved", "approved": true, "by": "alice", "comment": "looks good"}),
            ),
            (
                Decision::by_person(false, "bob", Some(""), at()),
                TaskEvent::Reject,
                Some("rejected by bob"),
                json!({"decision": "rejected", "approved": false, "by": "bob", "comment": null}),
            ),
            (
                Decision::on_timeout(OnTimeout::Fail, Duration::from_secs(7200), true, at()),
                TaskEvent::Fail { retry: true },
                Some("timed out waiting for approval: nobody decided within 2h (on_timeout = \"fail\")"),
                json!({"decision": "timed_out", "approved": false, "by": "timeout"}),
            ),
            (
                Decision::on_timeout(OnTimeout::Reject, Duration::from_secs(60), true, at()),
                TaskEvent::Reject,
                Some("rejected by timeout: nobody decided within 1m (on_timeout = \"reject\")"),
                json!({"decision": "rejected", "by": "timeout"}),
            ),
            (
                Decision::on_timeout(OnTimeout::Approve, Duration::from_secs(60), false, at()),
                TaskEvent::Approve,
                None,
                json!({"decision": "approved", "approved": true}),
            ),
        ];
        for (decision, event, error, expected) in cases {
            assert_eq!(decision.event(), event, "{decision:?}");
            assert_eq!(decision.error().as_deref(), error, "{decision:?}");
            let output = decision.output(Some(&requested));
            assert_eq!(output["message"], "Load 42 rows?");
            for (key, value) in expected.as_object().into_iter().flatten() {
                assert_eq!(&output[key], value, "{key} of {decision:?}");
            }
        }
    }

    #[test]
    fn the_log_line_names_verdict_decider_and_comment() {
        let d = Decision::by_person(false, "cli:carol", Some("not today"), at());
        assert_eq!(
            d.log_line(),
            "rejected by cli:carol at 2026-01-02T09:00:00+00:00: not today"
        );
    }

    #[test]
    fn on_timeout_names_parse() {
        for name in OnTimeout::NAMES {
            let parsed = OnTimeout::parse(name).expect(name);
            assert_eq!(OnTimeout::NAMES[parsed as usize], name);
        }
        assert_eq!(OnTimeout::parse("maybe"), None);
    }
}
