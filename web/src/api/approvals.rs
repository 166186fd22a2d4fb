//! `/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/approve` and `/reject`:
//! an operator's decision on an `approval` task instance awaiting input.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::model::TaskInstanceModel;
use crate::actions::{self, ApprovalRequest};
use crate::auth::Operator;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::lookup::load_run;
use crate::AppState;

/// A decision's details.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// The instance of a mapped task; -1 (the default) for an unmapped one.
    #[serde(default = "unmapped", deserialize_with = "crate::extract::int32")]
    pub map_index: i32,
    /// Why (at most 2,000 characters): kept in the audit log, the task's output
    /// (`outputs.<task_id>.comment`) and, for a rejection, its error.
    pub comment: Option<String>,
}

fn unmapped() -> i32 {
    -1
}

/// Approve an `approval` task instance awaiting input (operator): it succeeds and its
/// downstream runs. Who, when and the comment go to the audit log and the task's output.
#[utoipa::path(post,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/approve",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = ApprovalBody,
    responses((status = 200, body = TaskInstanceModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Json(body): Json<ApprovalBody>,
) -> Result<Json<TaskInstanceModel>, ApiError> {
    decide(&state, &user, (&dag_id, &run_id, &task_id), true, &body).await
}

/// Reject an `approval` task instance awaiting input (operator): it fails (no retry) with
/// the comment in its error. Who, when and the comment go to the audit log and the task's
/// output.
#[utoipa::path(post,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/reject",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = ApprovalBody,
    responses((status = 200, body = TaskInstanceModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Json(body): Json<ApprovalBody>,
) -> Result<Json<TaskInstanceModel>, ApiError> {
    decide(&state, &user, (&dag_id, &run_id, &task_id), false, &body).await
}

async fn decide(
    state: &AppState,
    user: &crate::auth::CurrentUser,
    (dag_id, run_id, task_id): (&str, &str, &str),
    approve: bool,
    body: &ApprovalBody,
) -> Result<Json<TaskInstanceModel>, ApiError> {
    let request = ApprovalRequest {
        dag_id,
        run_id,
        task_id,
        map_index: body.map_index,
        approve,
        comment: body.comment.as_deref(),
    };
    let ti = actions::decide_approval(state, user, &request).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    Ok(Json(TaskInstanceModel::new(&ti, &run)))
}
