//! Deciding an approval that awaits input (`awaiting_input`): a person's approve or
//! reject (UI, API, CLI) or its timeout (the scheduler), each written the same way, in one
//! transaction: the instance's compare-and-set (the state [`TaskState::on`] decides for
//! the decision's event) with the decision in its output, the try's attempt row closed,
//! the decision as the last line of the try's log, the audit entry, and the task's
//! callback, if any. And the scheduler's read of the approvals whose time is up.

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::approval::{Decision, Verdict};
use nightshift_core::dag::Task;
use nightshift_core::retry::RetryPolicy;
use nightshift_core::state::TaskState;
use serde_json::json;
use sqlx::types::Json;

use super::transition::{stale_try, transition_statement};
use super::{Patch, TaskInstance, Transition};
use crate::callbacks::{insert_callback, CallbackEvent, CallbackKind, NewCallback};
use crate::logs::{insert_lines, LogLine};
use crate::{in_tx, on_pool, Store, StoreError, Wake};

/// One decision on an instance awaiting input, as the decider saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalDecision {
    /// The instance as read (its state must still be `awaiting_input` at its try).
    pub instance: TaskInstance,
    /// The run's `run_id` (for the audit entry).
    pub run_id: String,
    pub decision: Decision,
    /// When a timed-out try may be tried again (`on_timeout = "fail"` with retries left).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The address the person decided from, for the audit entry.
    pub ip: Option<String>,
    /// The task's callback for the state the decision leads to, if it has one.
    pub callback: Option<NewCallback>,
}

impl ApprovalDecision {
    /// `decision` on `instance` (of run `run_id`) of `task`: a timed-out try with retries
    /// left is tried again after the task's retry delay; the task's callback for the state
    /// the decision leads to (`on_success`, `on_failure`, `on_retry`) is enqueued with it.
    pub fn new(
        instance: TaskInstance,
        run_id: String,
        task: &Task,
        decision: Decision,
    ) -> ApprovalDecision {
        let state = TaskState::AwaitingInput
            .on(decision.event())
            .unwrap_or(TaskState::Failed);
        let try_number = u32::try_from(instance.try_number).unwrap_or(0);
        let next_retry_at = (state == TaskState::UpForRetry).then(|| {
            let policy = RetryPolicy {
                retries: task.retries,
                retry_delay: task.retry_delay,
                exponential_backoff: task.retry_exponential_backoff,
                max_retry_delay: task.max_retry_delay,
            };
            let delay = policy.next_retry_delay(try_number, 0.5);
            TimeDelta::from_std(delay)
                .ok()
                .and_then(|d| decision.at.checked_add_signed(d))
                .unwrap_or(decision.at)
        });
        let (event, callback) = match state {
            TaskState::Success => (CallbackEvent::Success, &task.on_success),
            TaskState::UpForRetry => (CallbackEvent::Retry, &task.on_retry),
            _ => (CallbackEvent::Failure, &task.on_failure),
        };
        let callback = callback.as_ref().map(|callback| NewCallback {
            kind: CallbackKind::Task,
            event,
            dag_id: instance.dag_id.clone(),
            run_id: run_id.clone(),
            task_id: Some(instance.task_id.clone()),
            map_index: instance.map_index,
            try_number: instance.try_number,
            callback: callback.clone(),
            payload: json!({ "state": state, "error": decision.error() }),
            now: decision.at,
        });
        ApprovalDecision {
            instance,
            run_id,
            decision,
            next_retry_at,
            ip: None,
            callback,
        }
    }

    /// The address the person decided from.
    pub fn ip(self, ip: Option<String>) -> ApprovalDecision {
        ApprovalDecision { ip, ..self }
    }

    /// The audit action: `task.approve`, `task.reject` or `task.approval_timeout`.
    pub fn action(&self) -> &'static str {
        match self.decision.verdict {
            Verdict::Approved => "task.approve",
            Verdict::Rejected => "task.reject",
            Verdict::TimedOut => "task.approval_timeout",
        }
    }
}

impl Store {
    /// Writes `d` (see the module docs); returns the instance as written.
    /// [`StoreError::Stale`] when the instance no longer awaits input at that try (someone
    /// decided, cleared or marked it first): the second decision loses.
    pub async fn decide_approval(&self, d: &ApprovalDecision) -> Result<TaskInstance, StoreError> {
        const AUDIT_SQL: &str = "
            INSERT INTO audit_log (ts, actor, action, dag_id, run_id, task_id, ip, details)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        const ATTEMPT_SQL: &str = "
            UPDATE attempts SET state = $3, end_date = $4, error = $5
            WHERE task_instance = $1 AND try_number = $2 AND end_date IS NULL";
        let ti = &d.instance;
        let decision = &d.decision;
        let now = decision.at;
        let error = decision.error();
        let mut t = Transition::on(
            ti.id,
            TaskState::AwaitingInput,
            ti.try_number,
            decision.event(),
            now,
        )?
        .output(Patch::Set(decision.output(ti.output.as_ref())))
        .end_date(Patch::Set(now))
        .next_retry_at(d.next_retry_at.map_or(Patch::Null, Patch::Set));
        if let Some(error) = &error {
            t = t.reason(error.clone());
        }
        let log = [LogLine {
            ts: now,
            stream: "system".to_owned(),
            line: decision.log_line(),
        }];
        let details = json!({
            "map_index": ti.map_index,
            "try_number": ti.try_number,
            "decision": decision.verdict.as_str(),
            "comment": decision.comment,
            "state": t.new_state(),
        });
        let written = in_tx!(self, |tx| {
            let row: Option<TaskInstance> = transition_statement(&t, "*")
                .build_query_as()
                .fetch_optional(&mut *tx)
                .await?;
            let written =
                row.ok_or_else(|| stale_try(ti.id, TaskState::AwaitingInput, ti.try_number))?;
            sqlx::query(ATTEMPT_SQL)
                .bind(ti.id)
                .bind(ti.try_number)
                .bind(written.state.as_str())
                .bind(now)
                .bind(error.as_deref())
                .execute(&mut *tx)
                .await?;
            insert_lines(&mut *tx, ti.id, ti.try_number, &log).await?;
            sqlx::query(AUDIT_SQL)
                .bind(now)
                .bind(&decision.by)
                .bind(d.action())
                .bind(&ti.dag_id)
                .bind(&d.run_id)
                .bind(&ti.task_id)
                .bind(&d.ip)
                .bind(Json(&details))
                .execute(&mut *tx)
                .await?;
            if let Some(callback) = &d.callback {
                insert_callback(callback)
                    .build_query_scalar::<i64>()
                    .fetch_one(&mut *tx)
                    .await?;
            }
            written
        });
        self.wake(Wake::Scheduler).await;
        Ok(written)
    }

    /// Up to `limit` instances awaiting input whose timeout (`next_retry_at`) is at or
    /// before `now`, oldest first, with their run's `run_id`.
    pub async fn approvals_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(TaskInstance, String)>, StoreError> {
        // The state is written into the text (not bound) so the planner can use the
        // partial index `task_instances_awaiting_input_idx` (migration 0018), whose
        // predicate must match the query's literally.
        let sql = format!(
            "SELECT ti.*, r.run_id AS run_run_id FROM task_instances ti
             JOIN dag_runs r ON r.id = ti.run
             WHERE ti.state = '{awaiting}' AND ti.next_retry_at <= $1
             ORDER BY ti.next_retry_at, ti.id LIMIT $2",
            awaiting = TaskState::AwaitingInput.as_str(),
        );
        let rows: Vec<Due> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|r| (r.instance, r.run_id)).collect())
    }
}

/// A row of [`Store::approvals_due`].
struct Due {
    instance: TaskInstance,
    run_id: String,
}

crate::impl_from_row!(Due, |row| Due {
    instance: sqlx::FromRow::from_row(row)?,
    run_id: row.try_get("run_run_id")?,
});
