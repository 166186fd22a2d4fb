//! `/dags/{dag_id}/dagRuns`: list, trigger, get, cancel; clearing and marking task
//! instances of a run.

use axum::extract::State;
use chrono::{DateTime, Utc};
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{MarkRequest, RunQuery};
use serde::Deserialize;

use super::model::{
    ClearTaskInstances, DagRunCollection, DagRunModel, Page, TaskInstanceReferenceCollection,
    TriggerDagRun, UpdateDagRunState, UpdateTaskInstancesState,
};
use crate::actions::{self, TriggerRequest};
use crate::auth::{CurrentUser, Operator};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::lookup::{dag_record, load_run};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListParams {
    /// queued, running, success or failed; comma-separated for several.
    #[param(pattern = r"^((queued|running|success|failed)(,(queued|running|success|failed))*)?$")]
    pub state: Option<String>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
}

fn parse_states<T: std::str::FromStr>(list: Option<&str>) -> Result<Vec<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|err: T::Err| ApiError::BadRequest(err.to_string()))
        })
        .collect()
}

/// List a DAG's runs, newest logical date first (`~` as the DAG id lists every DAG's).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns", tag = "DAGRun",
    params(("dag_id" = String, Path), RunListParams, Page),
    responses((status = 200, body = DagRunCollection), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn list_dag_runs(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<RunListParams>,
    Query(page): Query<Page>,
) -> Result<Json<DagRunCollection>, ApiError> {
    let dag_id = if dag_id == "~" {
        None
    } else {
        dag_record(&state.store, &dag_id).await?;
        Some(dag_id)
    };
    let query = RunQuery {
        dag_id,
        states: parse_states::<RunState>(params.state.as_deref())?,
        logical_date_gte: params.logical_date_gte,
        logical_date_lte: params.logical_date_lte,
        limit: page.limit(),
        offset: page.offset(),
    };
    let runs = state.store.query_runs(&query).await?;
    let total_entries = state.store.count_query_runs(&query).await?;
    Ok(Json(DagRunCollection {
        dag_runs: runs.iter().map(DagRunModel::from).collect(),
        total_entries,
    }))
}

/// Trigger a run (operator). A conf that does not match the DAG's `params` (a wrong type,
/// a value outside `enum`, an unknown key) is a 400 naming the param; a run at the same
/// logical date or with the same id is a 409.
#[utoipa::path(post, path = "/dags/{dag_id}/dagRuns", tag = "DAGRun",
    params(("dag_id" = String, Path)),
    request_body = TriggerDagRun,
    responses((status = 200, body = DagRunModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn trigger_dag_run(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path(dag_id): Path<String>,
    Json(body): Json<TriggerDagRun>,
) -> Result<Json<DagRunModel>, ApiError> {
    let request = TriggerRequest {
        run_id: body.dag_run_id,
        logical_date: body.logical_date,
        conf: body.conf,
    };
    let run = actions::trigger(&state, &user, &dag_id, request).await?;
    Ok(Json(DagRunModel::from(&run)))
}

/// Get a run.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DAGRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunModel), (status = 404, body = Problem)))]
pub async fn get_dag_run(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<DagRunModel>, ApiError> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    Ok(Json(DagRunModel::from(&run)))
}

/// Change a run's state (operator): `failed` cancels it.
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DAGRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    request_body = UpdateDagRunState,
    responses((status = 200, body = DagRunModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn update_dag_run_state(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path((dag_id, run_id)): Path<(String, String)>,
    Json(body): Json<UpdateDagRunState>,
) -> Result<Json<DagRunModel>, ApiError> {
    if body.state != "failed" {
        return Err(ApiError::BadRequest(format!(
            "state {:?} cannot be set on a run: use \"failed\" to cancel it, or clear its \
             task instances to run them again",
            body.state
        )));
    }
    let run = actions::cancel(&state, &user, &dag_id, &run_id).await?;
    Ok(Json(DagRunModel::from(&run)))
}

/// Clear task instances of one run so they run again (operator); `dry_run` (the default,
/// as in Airflow) only lists them.
#[utoipa::path(post, path = "/dags/{dag_id}/clearTaskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path)),
    request_body = ClearTaskInstances,
    responses((status = 200, body = TaskInstanceReferenceCollection),
              (status = 400, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn clear_task_instances(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path(dag_id): Path<String>,
    Json(body): Json<ClearTaskInstances>,
) -> Result<Json<TaskInstanceReferenceCollection>, ApiError> {
    let task_ids = match body.task_ids {
        Some(ids) => ids,
        None => {
            let (_, dag) = crate::lookup::load_dag(&state.store, &dag_id).await?;
            dag.tasks.keys().cloned().collect()
        }
    };
    let selection = ClearSelection {
        task_ids,
        downstream: body.include_downstream,
        upstream: body.include_upstream,
        only_failed: body.only_failed,
        keep_version: body.keep_version,
    };
    let cleared = actions::clear(
        &state,
        &user,
        &dag_id,
        &body.dag_run_id,
        selection,
        body.dry_run,
    )
    .await?;
    Ok(Json(TaskInstanceReferenceCollection::new(
        &cleared,
        &body.dag_run_id,
    )))
}

/// Mark the instances of a task in one run success or failed (operator); `dry_run` (the
/// default, as in Airflow) lists exactly what the action would change: the marked instances,
/// then the downstream ones it resets to pending (marking failed resets the downstream that
/// ran; marking success resets the upstream_failed downstream). Instances already in the
/// target state are skipped; the others change in one transaction, or none does.
#[utoipa::path(post, path = "/dags/{dag_id}/updateTaskInstancesState", tag = "TaskInstance",
    params(("dag_id" = String, Path)),
    request_body = UpdateTaskInstancesState,
    responses((status = 200, body = TaskInstanceReferenceCollection),
              (status = 400, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update_task_instances_state(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path(dag_id): Path<String>,
    Json(body): Json<UpdateTaskInstancesState>,
) -> Result<Json<TaskInstanceReferenceCollection>, ApiError> {
    let new_state: TaskState = body
        .new_state
        .parse()
        .map_err(|_| ApiError::BadRequest("new_state must be success or failed".into()))?;
    let request = MarkRequest {
        task_id: body.task_id,
        map_index: body.map_index,
        state: new_state,
        dry_run: body.dry_run,
        now: Utc::now(),
    };
    let marked = actions::mark(&state, &user, &dag_id, &body.dag_run_id, &request).await?;
    Ok(Json(TaskInstanceReferenceCollection::new(
        &marked,
        &body.dag_run_id,
    )))
}
