//! `/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`: list, get, tries, logs.

use axum::extract::State;
use nightshift_core::state::TaskState;
use nightshift_store::TaskInstanceQuery;
use serde::Deserialize;

use super::model::{
    LogChunk, LogLineModel, LogMatches, Page, TaskInstanceCollection, TaskInstanceModel,
    TaskInstanceTry, TaskInstanceTryCollection,
};
use crate::auth::CurrentUser;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::lookup::{load_run, load_task_instance};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    pub task_id: Option<String>,
    /// Task states, comma-separated.
    #[param(
        pattern = r"^((pending|scheduled|queued|running|success|failed|up_for_retry|up_for_reschedule|awaiting_input|upstream_failed|skipped|removed)(,(pending|scheduled|queued|running|success|failed|up_for_retry|up_for_reschedule|awaiting_input|upstream_failed|skipped|removed))*)?$"
    )]
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapIndexParam {
    /// -1 (the default) for an unmapped task.
    pub map_index: Option<i32>,
}

/// List a run's task instances by task id and map index.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), TaskListParams, Page),
    responses((status = 200, body = TaskInstanceCollection), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn list_task_instances(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    Query(params): Query<TaskListParams>,
    Query(page): Query<Page>,
) -> Result<Json<TaskInstanceCollection>, ApiError> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let states = params
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<TaskState>()
                .map_err(|_| ApiError::BadRequest(format!("unknown task state {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = TaskInstanceQuery {
        run: run.id,
        task_id: params.task_id,
        states,
        limit: page.limit(),
        offset: page.offset(),
    };
    let instances = state.store.query_task_instances(&query).await?;
    let total_entries = state.store.count_query_task_instances(&query).await?;
    Ok(Json(TaskInstanceCollection {
        task_instances: instances
            .iter()
            .map(|ti| TaskInstanceModel::new(ti, &run))
            .collect(),
        total_entries,
    }))
}

/// Get one task instance.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
           ("task_id" = String, Path), MapIndexParam),
    responses((status = 200, body = TaskInstanceModel), (status = 404, body = Problem)))]
pub async fn get_task_instance(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<MapIndexParam>,
) -> Result<Json<TaskInstanceModel>, ApiError> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let ti =
        load_task_instance(&state.store, &run, &task_id, params.map_index.unwrap_or(-1)).await?;
    Ok(Json(TaskInstanceModel::new(&ti, &run)))
}

/// Every try of one task instance, oldest first.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
           ("task_id" = String, Path), MapIndexParam),
    responses((status = 200, body = TaskInstanceTryCollection), (status = 404, body = Problem)))]
pub async fn list_task_instance_tries(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<MapIndexParam>,
) -> Result<Json<TaskInstanceTryCollection>, ApiError> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let ti =
        load_task_instance(&state.store, &run, &task_id, params.map_index.unwrap_or(-1)).await?;
    let attempts = state.store.list_attempts(ti.id).await?;
    Ok(Json(TaskInstanceTryCollection {
        total_entries: attempts.len() as i64,
        task_instances: attempts
            .iter()
            .map(|a| TaskInstanceTry::new(a, &ti, &run))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    pub map_index: Option<i32>,
    /// The `continuation_token` of the previous chunk (default: from the start): the
    /// lines after that line number.
    #[param(pattern = "^[0-9]{0,18}$")]
    pub offset: Option<String>,
    /// Return the `limit` lines before this line number instead (paging back from the
    /// end; ignores `offset`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Lines to return (default 1000, at most 10000).
    #[serde(default, deserialize_with = "super::model::int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<u32>,
    /// Return the last `tail` lines instead (ignores `offset`).
    #[serde(default, deserialize_with = "super::model::int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub tail: Option<u32>,
}

const LOG_DEFAULT_LIMIT: u32 = 1000;
const LOG_MAX_LIMIT: u32 = 10_000;

/// A piece of one try's log. Follow a running try by passing each chunk's
/// `continuation_token` as the next `offset` until `finished` is true; page back from
/// the end with `tail`, then `before` (the first line number of the page shown).
#[utoipa::path(get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
           ("task_id" = String, Path), ("task_try_number" = i32, Path), LogParams),
    responses((status = 200, body = LogChunk), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get_log(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i32)>,
    Query(params): Query<LogParams>,
) -> Result<Json<LogChunk>, ApiError> {
    let ti = load_try(
        &state,
        (&dag_id, &run_id, &task_id),
        params.map_index,
        try_number,
    )
    .await?;
    // `tail` and `before` ignore `offset`.
    let after = match (params.tail, params.before) {
        (None, None) => continuation(params.offset.as_deref())?,
        _ => 0,
    };
    let limit = i64::from(params.limit.unwrap_or(LOG_DEFAULT_LIMIT).min(LOG_MAX_LIMIT));
    let rows = match (params.tail, params.before) {
        (Some(tail), _) => {
            let tail = i64::from(tail.min(LOG_MAX_LIMIT));
            state.store.tail_logs(ti.id, try_number, tail).await?
        }
        (None, Some(before)) => {
            state
                .store
                .read_logs_before(ti.id, try_number, before, limit)
                .await?
        }
        (None, None) => {
            state
                .store
                .read_logs(ti.id, try_number, after, limit)
                .await?
        }
    };
    let last = rows.last().map_or(after, |row| row.line_no);
    let finished = !(try_number == ti.try_number && ti.state.try_under_way());
    let lines: Vec<LogLineModel> = rows.into_iter().map(LogLineModel::from).collect();
    let content = lines
        .iter()
        .map(|l| l.line.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Json(LogChunk {
        content,
        lines,
        continuation_token: last.to_string(),
        finished,
    }))
}

/// The instance of `(dag_id, run_id, task_id)` at `map_index` (default -1) if it has
/// try `try_number`.
pub(crate) async fn load_try(
    state: &AppState,
    (dag_id, run_id, task_id): (&str, &str, &str),
    map_index: Option<i32>,
    try_number: i32,
) -> Result<nightshift_store::TaskInstance, ApiError> {
    let run = load_run(&state.store, dag_id, run_id).await?;
    let ti = load_task_instance(&state.store, &run, task_id, map_index.unwrap_or(-1)).await?;
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(ApiError::NotFound(format!(
            "task instance {dag_id}/{run_id}/{task_id} has no try {try_number} (it is at try {})",
            ti.try_number
        )));
    }
    Ok(ti)
}

/// The line number a continuation token names (0, the start, when there is none).
fn continuation(token: Option<&str>) -> Result<i64, ApiError> {
    match token {
        None | Some("") => Ok(0),
        Some(token) => token.parse().map_err(|_| {
            ApiError::BadRequest(format!("offset {token:?} is not a continuation token"))
        }),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogSearchParams {
    pub map_index: Option<i32>,
    /// The text to find, ignoring case; `%` and `_` match themselves.
    #[param(min_length = 1, max_length = 200)]
    pub q: String,
    /// The `continuation_token` of the previous matches (default: from the start).
    #[param(pattern = "^[0-9]{0,18}$")]
    pub offset: Option<String>,
    /// Matches to return (default 1000, at most 10000).
    #[serde(default, deserialize_with = "super::model::int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<u32>,
}

/// The lines of one try that contain `q` (ignoring case), searched in the database, with
/// their line numbers; pass `continuation_token` as `offset` for more.
#[utoipa::path(get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}/search",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
           ("task_id" = String, Path), ("task_try_number" = i32, Path), LogSearchParams),
    responses((status = 200, body = LogMatches), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn search_log(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i32)>,
    Query(params): Query<LogSearchParams>,
) -> Result<Json<LogMatches>, ApiError> {
    let term = crate::logs::search_term(&params.q)?;
    let ti = load_try(
        &state,
        (&dag_id, &run_id, &task_id),
        params.map_index,
        try_number,
    )
    .await?;
    let after = continuation(params.offset.as_deref())?;
    let limit = i64::from(params.limit.unwrap_or(LOG_DEFAULT_LIMIT).min(LOG_MAX_LIMIT));
    let rows = state
        .store
        .search_logs(ti.id, try_number, term, after, limit)
        .await?;
    let continuation_token = (rows.len() as i64 == limit && limit > 0)
        .then(|| rows.last().map(|r| r.line_no.to_string()))
        .flatten();
    Ok(Json(LogMatches {
        term: term.to_owned(),
        lines: rows.into_iter().map(LogLineModel::from).collect(),
        continuation_token,
    }))
}

/// Downloads one try's whole log as text, a line per line, of any size: it is read from
/// the database a page at a time while it is sent, so memory stays the same.
#[utoipa::path(get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}/download",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
           ("task_id" = String, Path), ("task_try_number" = i32, Path), MapIndexParam),
    responses((status = 200, content_type = "text/plain", body = String),
              (status = 404, body = Problem)))]
pub async fn download_log(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i32)>,
    Query(params): Query<MapIndexParam>,
) -> Result<axum::response::Response, ApiError> {
    let ti = load_try(
        &state,
        (&dag_id, &run_id, &task_id),
        params.map_index,
        try_number,
    )
    .await?;
    let name = crate::logs::file_name(&dag_id, &run_id, &task_id, ti.map_index, try_number);
    Ok(crate::logs::download(
        state.store.clone(),
        ti.id,
        try_number,
        &name,
    ))
}
