//! The approval form on the task page: what an `approval` instance asks (its rendered
//! message, shown escaped like every value), until when it waits, and, for operators and
//! admins, the comment box with Approve and Reject; once decided, who decided, when, and
//! why. The form posts here ([`decide`]), through the shared action that checks the role
//! again and records the decision.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use nightshift_store::TaskInstance;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{see_other, task_path, PageResult};
use crate::actions::{self, ApprovalRequest};
use crate::auth::CsrfForm;
use crate::error::ApiError;
use crate::AppState;

/// An approval as the task page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// The rendered message (secrets masked).
    pub message: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    /// When its timeout decides, if it has one.
    pub timeout_at: Option<DateTime<Utc>>,
    /// It awaits a decision: the form is shown (to those who may decide).
    pub open: bool,
    /// `approved`, `rejected` or `timed_out`, once decided.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    /// Where the form posts.
    pub action: String,
}

/// The approval of `ti` (an `approval` instance that asked), from its output (`masked`:
/// with secrets masked); `None` for any other instance.
pub(super) fn view(ti: &TaskInstance, masked: Option<&Value>, base: &str) -> Option<ApprovalView> {
    if ti.kind != "approval" {
        return None;
    }
    let output = masked?;
    let text = |key: &str| output.get(key).and_then(Value::as_str).map(str::to_owned);
    let time = |key: &str| {
        output
            .get(key)
            .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok())
    };
    Some(ApprovalView {
        message: text("message"),
        requested_at: time("requested_at"),
        timeout_at: time("timeout_at"),
        open: ti.state == TaskState::AwaitingInput,
        decision: text("decision"),
        decided_by: text("by"),
        decided_at: time("at"),
        comment: text("comment"),
        action: format!("{base}/approval"),
    })
}

/// The form's fields.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    /// `approve` or `reject` (the button pressed).
    pub decision: String,
    pub comment: Option<String>,
    pub map_index: Option<i32>,
}

/// Approves or rejects (operators and admins), then shows the task page again.
pub async fn decide(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    CsrfForm { user, form }: CsrfForm<DecisionForm>,
) -> PageResult {
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "decision must be approve or reject, not {other:?}"
            ))
            .into())
        }
    };
    let map_index = form.map_index.unwrap_or(-1);
    let request = ApprovalRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index,
        approve,
        comment: form.comment.as_deref(),
    };
    actions::decide_approval(&state, &user, &request).await?;
    Ok(see_other(&task_path(&dag_id, &run_id, &task_id, map_index)))
}
