//! `/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines`: the deadlines a run (or a task of it)
//! has missed, as the scheduler recorded them.

use axum::extract::State;
use chrono::{DateTime, Utc};
use nightshift_store::DeadlineMiss;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::CurrentUser;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::lookup::load_run;
use crate::AppState;

/// A missed deadline: the run's own (`task_id` null) or one task's.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadlineMissModel {
    /// Null for the run's own deadline.
    pub task_id: Option<String>,
    /// The deadline as written: `at 09:00 (Asia/Tokyo)` or `within 2h`.
    pub deadline: String,
    /// When the deadline fell.
    pub due_at: DateTime<Utc>,
    /// When a scheduler noticed it (and sent the `deadline_missed` callback).
    pub missed_at: DateTime<Utc>,
    /// The deadline has `fail = true`: what was late was failed.
    pub fail: bool,
}

impl From<&DeadlineMiss> for DeadlineMissModel {
    fn from(m: &DeadlineMiss) -> Self {
        DeadlineMissModel {
            task_id: m.task_id.clone(),
            deadline: m.deadline.clone(),
            due_at: m.due_at,
            missed_at: m.missed_at,
            fail: m.failed,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadlineMissCollection {
    /// The run's own first, then by task id.
    pub deadline_misses: Vec<DeadlineMissModel>,
    pub total_entries: usize,
}

/// The deadlines a run missed (any role): empty when it was never late.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines", tag = "DAGRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DeadlineMissCollection), (status = 404, body = Problem)))]
pub async fn list_deadline_misses(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<DeadlineMissCollection>, ApiError> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let misses = state.store.deadline_misses(run.id).await?;
    let deadline_misses: Vec<DeadlineMissModel> = misses.iter().map(Into::into).collect();
    Ok(Json(DeadlineMissCollection {
        total_entries: deadline_misses.len(),
        deadline_misses,
    }))
}
