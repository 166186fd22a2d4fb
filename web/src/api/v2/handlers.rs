//! `/api/v2`'s handlers. Each reads from the store and acts through the same shared
//! actions as `/api/v1`, the UI and the CLI (`crate::actions`, `crate::admin`): only the
//! request and response shapes are Airflow 3's.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{
    DagOverviewFilter, DagVersion, MarkRequest, Pool, RunQuery, TaskInstanceQuery,
};
use serde::Deserialize;
use serde_json::Value;

use super::error::{Json, Path, Query, User, V2Error, V2Result};
use super::model::*;
use crate::actions::{self, TriggerRequest};
use crate::api::model::{parse_task_state, Page};
use crate::api::runs::run_order;
use crate::error::ApiError;
use crate::lookup::{dag_record, load_run, load_task_instance};
use crate::AppState;

/// Airflow 3's page parameters: `limit` (default 50) and `offset`.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page3 {
    #[serde(default, deserialize_with = "crate::api::model::int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<u32>,
    #[serde(default, deserialize_with = "crate::api::model::int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

impl Page3 {
    fn page(self) -> Page {
        Page {
            limit: Some(self.limit.unwrap_or(50)),
            offset: self.offset,
        }
    }
}

fn split(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn refuse(flags: &[(bool, &str)], why: &str) -> Result<(), ApiError> {
    match flags.iter().find(|(asked, _)| *asked) {
        Some((_, name)) => Err(ApiError::BadRequest(format!(
            "{name} is not supported: {why}"
        ))),
        None => Ok(()),
    }
}

async fn has_import_errors(state: &AppState) -> Result<Vec<String>, ApiError> {
    Ok(state
        .store
        .list_import_errors()
        .await?
        .into_iter()
        .map(|e| e.file_path)
        .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagListParams {
    /// Tags, repeated or comma-separated: one tag, or several with `tags_match_mode=any`
    /// (the default) is refused when more than one (filtering is by one tag).
    pub tags: Option<String>,
    /// `any` or `all`.
    pub tags_match_mode: Option<String>,
    /// One owner.
    pub owners: Option<String>,
    /// A SQL `LIKE` pattern of the DAG id; `%` are dropped and the rest is matched as a
    /// substring, ignoring case.
    pub dag_id_pattern: Option<String>,
    /// Leave out DAGs whose file is gone (default true).
    pub exclude_stale: Option<bool>,
    pub paused: Option<bool>,
    /// `dag_id` (default), `last_parsed_time` or `next_dagrun`; `-` for descending.
    #[param(pattern = r"^-?(dag_id|dag_display_name|last_parsed_time|next_dagrun)$")]
    pub order_by: Option<String>,
}

/// List DAGs.
#[utoipa::path(get, path = "/dags", tag = "DAG", params(DagListParams, Page3),
    responses((status = 200, body = DagCollectionResponse)))]
pub async fn list_dags(
    State(state): State<AppState>,
    _user: User,
    Query(params): Query<DagListParams>,
    Query(page): Query<Page3>,
) -> V2Result<Json<DagCollectionResponse>> {
    let tags = split(params.tags.as_deref());
    if tags.len() > 1 {
        return Err(ApiError::BadRequest(format!(
            "only one tag can be given (got {}): DAGs are filtered by one tag at a time",
            tags.len()
        ))
        .into());
    }
    if let Some(mode) = params.tags_match_mode.as_deref() {
        if !matches!(mode, "any" | "all") {
            return Err(V2Error::Validation(
                "query",
                format!("tags_match_mode {mode:?} is not any or all"),
            ));
        }
    }
    let owners = split(params.owners.as_deref());
    if owners.len() > 1 {
        return Err(ApiError::BadRequest("only one owner can be given".to_owned()).into());
    }
    let order = params.order_by.as_deref().unwrap_or("dag_id");
    let (ascending, column) = match order.strip_prefix('-') {
        Some(column) => (false, column),
        None => (true, order),
    };
    if !matches!(
        column,
        "dag_id" | "dag_display_name" | "last_parsed_time" | "next_dagrun"
    ) {
        return Err(ApiError::BadRequest(format!(
            "DAGs cannot be ordered by {column:?}: use dag_id, last_parsed_time or next_dagrun"
        ))
        .into());
    }
    let filter = DagOverviewFilter {
        failing_only: false,
        paused: params.paused,
        active: params.exclude_stale.unwrap_or(true).then_some(true),
        search: params
            .dag_id_pattern
            .map(|p| p.replace('%', ""))
            .filter(|p| !p.is_empty()),
        tag: tags.into_iter().next(),
        owner: owners.into_iter().next(),
        limit: i64::MAX,
        offset: 0,
    };
    let rows = state.store.dag_overviews(&filter).await?;
    let broken = has_import_errors(&state).await?;
    let mut dags: Vec<DagResponse> = rows
        .iter()
        .map(|row| DagResponse::new(&row.dag, broken.contains(&row.dag.file_path)))
        .collect();
    dags.sort_by(|a, b| {
        let by = match column {
            "last_parsed_time" => a.last_parsed_time.cmp(&b.last_parsed_time),
            "next_dagrun" => a.next_dagrun_run_after.cmp(&b.next_dagrun_run_after),
            _ => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.dag_id.cmp(&b.dag_id));
        if ascending {
            by
        } else {
            by.reverse()
        }
    });
    let page = page.page();
    let total_entries = dags.len() as i64;
    let dags = dags
        .into_iter()
        .skip(page.offset() as usize)
        .take(page.limit() as usize)
        .collect();
    Ok(Json(DagCollectionResponse {
        dags,
        total_entries,
    }))
}

/// Get a DAG.
#[utoipa::path(get, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagResponse), (status = 404)))]
pub async fn get_dag(
    State(state): State<AppState>,
    _user: User,
    Path(dag_id): Path<String>,
) -> V2Result<Json<DagResponse>> {
    let record = dag_record(&state.store, &dag_id).await?;
    let broken = has_import_errors(&state).await?;
    Ok(Json(DagResponse::new(
        &record,
        broken.contains(&record.file_path),
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMask {
    /// Only `is_paused` can be changed.
    pub update_mask: Option<String>,
}

/// Pause or unpause a DAG (operator).
#[utoipa::path(patch, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path), UpdateMask), request_body = DagPatchBody,
    responses((status = 200, body = DagResponse), (status = 404)))]
pub async fn patch_dag(
    State(state): State<AppState>,
    User(user): User,
    Path(dag_id): Path<String>,
    Query(mask): Query<UpdateMask>,
    Json(body): Json<DagPatchBody>,
) -> V2Result<Json<DagResponse>> {
    if let Some(field) = split(mask.update_mask.as_deref())
        .into_iter()
        .find(|f| f != "is_paused")
    {
        return Err(ApiError::BadRequest(format!(
            "update_mask names {field:?}: only is_paused can be changed"
        ))
        .into());
    }
    let record = actions::set_paused(&state, &user, &dag_id, body.is_paused).await?;
    let broken = has_import_errors(&state).await?;
    Ok(Json(DagResponse::new(
        &record,
        broken.contains(&record.file_path),
    )))
}

/// The versions of each DAG of `dag_ids`.
async fn versions_of(
    state: &AppState,
    dag_ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, Vec<DagVersion>>, ApiError> {
    let mut versions = HashMap::new();
    for dag_id in dag_ids {
        if let std::collections::hash_map::Entry::Vacant(entry) = versions.entry(dag_id) {
            let list = state.store.list_dag_versions(entry.key()).await?;
            entry.insert(list);
        }
    }
    Ok(versions)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListParams {
    /// queued, running, success or failed; repeated or comma-separated.
    pub state: Option<String>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub start_date_gte: Option<DateTime<Utc>>,
    pub start_date_lte: Option<DateTime<Utc>>,
    pub end_date_gte: Option<DateTime<Utc>>,
    pub end_date_lte: Option<DateTime<Utc>>,
    /// As in `/api/v1` (`logical_date`, `start_date`, `end_date`, `dag_run_id`, `dag_id`,
    /// `id`; `-` for descending); default `-logical_date`.
    #[param(
        pattern = r"^-?(logical_date|execution_date|run_after|start_date|end_date|dag_run_id|run_id|dag_id|id)$"
    )]
    pub order_by: Option<String>,
}

/// List a DAG's runs (`~`: every DAG's).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path), RunListParams, Page3),
    responses((status = 200, body = DagRunCollectionResponse), (status = 404)))]
pub async fn list_dag_runs(
    State(state): State<AppState>,
    _user: User,
    Path(dag_id): Path<String>,
    Query(params): Query<RunListParams>,
    Query(page): Query<Page3>,
) -> V2Result<Json<DagRunCollectionResponse>> {
    let dag_id = if dag_id == "~" {
        None
    } else {
        dag_record(&state.store, &dag_id).await?;
        Some(dag_id)
    };
    let states = split(params.state.as_deref())
        .iter()
        .map(|s| {
            s.parse::<RunState>()
                .map_err(|err| V2Error::Validation("query", err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let order_by = params
        .order_by
        .map(|o| o.replace("run_after", "logical_date"));
    let page = page.page();
    let query = RunQuery {
        dag_id,
        states,
        logical_date_gte: params.logical_date_gte,
        logical_date_lte: params.logical_date_lte,
        start_date_gte: params.start_date_gte,
        start_date_lte: params.start_date_lte,
        end_date_gte: params.end_date_gte,
        end_date_lte: params.end_date_lte,
        order: run_order(order_by.as_deref())?,
        limit: page.limit(),
        offset: page.offset(),
        ..RunQuery::default()
    };
    let runs = state.store.query_runs(&query).await?;
    let total_entries = state.store.count_query_runs(&query).await?;
    let versions = versions_of(&state, runs.iter().map(|r| r.dag_id.clone())).await?;
    Ok(Json(DagRunCollectionResponse {
        dag_runs: runs
            .iter()
            .map(|r| DagRunResponse::new(r, versions.get(&r.dag_id).map_or(&[], Vec::as_slice)))
            .collect(),
        total_entries,
    }))
}

/// Get a run.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunResponse), (status = 404)))]
pub async fn get_dag_run(
    State(state): State<AppState>,
    _user: User,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> V2Result<Json<DagRunResponse>> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let versions = state.store.list_dag_versions(&dag_id).await?;
    Ok(Json(DagRunResponse::new(&run, &versions)))
}

/// Trigger a run (operator): the shared trigger action, as `/api/v1`, the UI and the CLI.
#[utoipa::path(post, path = "/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path)), request_body = TriggerDagRunPostBody,
    responses((status = 200, body = DagRunResponse), (status = 400), (status = 404),
              (status = 409)))]
pub async fn trigger_dag_run(
    State(state): State<AppState>,
    User(user): User,
    Path(dag_id): Path<String>,
    Json(body): Json<TriggerDagRunPostBody>,
) -> V2Result<Json<DagRunResponse>> {
    refuse(
        &[
            (body.data_interval_start.is_some(), "data_interval_start"),
            (body.data_interval_end.is_some(), "data_interval_end"),
            (body.partition_key.is_some(), "partition_key"),
            (
                body.run_after.is_some() && body.run_after != body.logical_date,
                "a run_after other than the logical date",
            ),
        ],
        "nightshift derives a run's data interval and start from its logical date and the \
         DAG's schedule",
    )?;
    let request = TriggerRequest {
        run_id: body.dag_run_id,
        logical_date: body.logical_date,
        conf: body.conf,
        note: body.note,
    };
    let run = actions::trigger(&state, &user, &dag_id, request).await?;
    let versions = state.store.list_dag_versions(&dag_id).await?;
    Ok(Json(DagRunResponse::new(&run, &versions)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    pub task_id: Option<String>,
    /// Repeated or comma-separated: Airflow 3's names, `none` for no state yet.
    pub state: Option<String>,
    pub pool: Option<String>,
    pub queue: Option<String>,
}

/// List task instances of a run (`~` for the run id, or both ids, as in `/api/v1`).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), TaskListParams, Page3),
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 404)))]
pub async fn list_task_instances(
    State(state): State<AppState>,
    _user: User,
    Path((dag_id, run_id)): Path<(String, String)>,
    Query(params): Query<TaskListParams>,
    Query(page): Query<Page3>,
) -> V2Result<Json<TaskInstanceCollectionResponse>> {
    let states = split(params.state.as_deref())
        .iter()
        .map(|s| parse_task_state(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| V2Error::Validation("query", err.to_string()))?;
    let page = page.page();
    let mut query = TaskInstanceQuery {
        task_ids: params.task_id.into_iter().collect(),
        states,
        pools: split(params.pool.as_deref()),
        queues: split(params.queue.as_deref()),
        limit: page.limit(),
        offset: page.offset(),
        ..TaskInstanceQuery::default()
    };
    match (dag_id.as_str(), run_id.as_str()) {
        ("~", "~") => {}
        ("~", run_id) => query.run_ids = vec![run_id.to_owned()],
        (dag_id, "~") => {
            dag_record(&state.store, dag_id).await?;
            query.dag_ids = vec![dag_id.to_owned()];
        }
        (dag_id, run_id) => query.run = Some(load_run(&state.store, dag_id, run_id).await?.id),
    }
    let instances = state.store.query_task_instances(&query).await?;
    let total_entries = state.store.count_query_task_instances(&query).await?;
    let runs = crate::api::airflow::runs_of(&state, &instances).await?;
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: instances
            .iter()
            .filter_map(|ti| {
                runs.get(&ti.run)
                    .map(|run| TaskInstanceResponse::new(ti, run))
            })
            .collect(),
        total_entries,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapIndex {
    /// -1 (the default) for an unmapped task.
    pub map_index: Option<i32>,
}

/// Get a task instance.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
           MapIndex),
    responses((status = 200, body = TaskInstanceResponse), (status = 404)))]
pub async fn get_task_instance(
    State(state): State<AppState>,
    _user: User,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(index): Query<MapIndex>,
) -> V2Result<Json<TaskInstanceResponse>> {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let ti =
        load_task_instance(&state.store, &run, &task_id, index.map_index.unwrap_or(-1)).await?;
    Ok(Json(TaskInstanceResponse::new(&ti, &run)))
}

async fn mark(
    state: &AppState,
    user: &crate::auth::CurrentUser,
    (dag_id, run_id, task_id): (&str, &str, &str),
    map_index: Option<i32>,
    body: PatchTaskInstanceBody,
    dry_run: bool,
) -> V2Result<Json<TaskInstanceCollectionResponse>> {
    refuse(
        &[
            (body.note.is_some(), "note"),
            (body.include_upstream, "include_upstream"),
            (body.include_downstream, "include_downstream"),
            (body.include_past, "include_past"),
            (body.include_future, "include_future"),
        ],
        "nightshift marks the instances of one task in one run (marking failed resets the \
         downstream that ran; success resets the upstream_failed downstream)",
    )?;
    let new_state = match body.new_state.as_deref() {
        Some("success") => TaskState::Success,
        Some("failed") => TaskState::Failed,
        other => {
            return Err(ApiError::BadRequest(format!(
                "new_state must be success or failed, not {other:?}"
            ))
            .into())
        }
    };
    let request = MarkRequest {
        task_id: task_id.to_owned(),
        map_index,
        state: new_state,
        dry_run,
        now: Utc::now(),
    };
    let marked = actions::mark(state, user, dag_id, run_id, &request).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    Ok(Json(TaskInstanceCollectionResponse {
        total_entries: marked.len() as i64,
        task_instances: marked
            .iter()
            .map(|ti| TaskInstanceResponse::new(ti, &run))
            .collect(),
    }))
}

/// Mark a task instance success or failed (operator): the shared mark action. Answers
/// every instance it changed (the marked ones, then the downstream it reset).
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
           MapIndex, UpdateMask),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400),
              (status = 404), (status = 409)))]
pub async fn patch_task_instance(
    State(state): State<AppState>,
    User(user): User,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(index): Query<MapIndex>,
    Json(body): Json<PatchTaskInstanceBody>,
) -> V2Result<Json<TaskInstanceCollectionResponse>> {
    mark(
        &state,
        &user,
        (&dag_id, &run_id, &task_id),
        index.map_index,
        body,
        false,
    )
    .await
}

/// What marking a task instance would change, changing nothing.
#[utoipa::path(patch,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
           MapIndex, UpdateMask),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400),
              (status = 404)))]
pub async fn patch_task_instance_dry_run(
    State(state): State<AppState>,
    User(user): User,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(index): Query<MapIndex>,
    Json(body): Json<PatchTaskInstanceBody>,
) -> V2Result<Json<TaskInstanceCollectionResponse>> {
    mark(
        &state,
        &user,
        (&dag_id, &run_id, &task_id),
        index.map_index,
        body,
        true,
    )
    .await
}

/// Clear task instances of one run (operator): the shared clear action. `dry_run` and
/// `only_failed` default to true, as in Airflow 3.
#[utoipa::path(post, path = "/dags/{dag_id}/clearTaskInstances", tag = "Task Instance",
    params(("dag_id" = String, Path)), request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400),
              (status = 404), (status = 409)))]
pub async fn clear_task_instances(
    State(state): State<AppState>,
    User(user): User,
    Path(dag_id): Path<String>,
    Json(body): Json<ClearTaskInstancesBody>,
) -> V2Result<Json<TaskInstanceCollectionResponse>> {
    refuse(
        &[
            (body.only_running, "only_running"),
            (body.include_past, "include_past"),
            (body.include_future, "include_future"),
            (body.reset_dag_runs == Some(false), "reset_dag_runs = false"),
            (body.prevent_running_task, "prevent_running_task"),
            (body.note.is_some(), "note"),
        ],
        "nightshift clears the chosen task instances of one run (dag_run_id) and sets that \
         run running again",
    )?;
    let run_id = body.dag_run_id.ok_or_else(|| {
        ApiError::BadRequest("dag_run_id is required: nightshift clears one run at a time".into())
    })?;
    let task_ids = match body.task_ids {
        Some(ids) => ids
            .into_iter()
            .map(|id| match id {
                Value::String(id) => Ok(id),
                other => Err(ApiError::BadRequest(format!(
                    "task_ids entry {other}: only task ids (all their map indexes) are supported"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
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
        keep_version: body.run_on_latest_version == Some(false),
    };
    let cleared = actions::clear(&state, &user, &dag_id, &run_id, selection, body.dry_run).await?;
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    Ok(Json(TaskInstanceCollectionResponse {
        total_entries: cleared.len() as i64,
        task_instances: cleared
            .iter()
            .map(|ti| TaskInstanceResponse::new(ti, &run))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    pub map_index: Option<i32>,
    /// The `continuation_token` of the previous answer.
    pub token: Option<String>,
    /// Ignored: the whole log from `token` on is sent (at most 10,000 lines).
    #[allow(dead_code)] // accepted and ignored, as documented
    pub full_content: Option<bool>,
}

/// A try's log, one structured message per line after a line naming the try.
#[utoipa::path(get,
    path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
           ("try_number" = i32, Path), LogParams),
    responses((status = 200, body = TaskInstancesLogResponse), (status = 404)))]
pub async fn get_log(
    State(state): State<AppState>,
    _user: User,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i32)>,
    Query(params): Query<LogParams>,
) -> V2Result<Json<TaskInstancesLogResponse>> {
    let ti = crate::api::tasks::load_try(
        &state,
        (&dag_id, &run_id, &task_id),
        params.map_index,
        try_number,
    )
    .await?;
    let after = match params.token.as_deref() {
        None | Some("") => 0,
        Some(token) => token
            .parse()
            .map_err(|_| V2Error::Validation("query", format!("token {token:?} is not ours")))?,
    };
    let rows = state
        .store
        .read_logs(ti.id, try_number, after, 10_000)
        .await?;
    let last = rows.last().map_or(after, |row| row.line_no);
    let mut content = vec![StructuredLogMessage {
        event: format!("nightshift: try {try_number} of {dag_id}/{run_id}/{task_id}"),
        timestamp: None,
        stream: None,
    }];
    content.extend(rows.into_iter().map(|row| StructuredLogMessage {
        event: row.line,
        timestamp: Some(row.ts),
        stream: Some(row.stream),
    }));
    Ok(Json(TaskInstancesLogResponse {
        content,
        continuation_token: Some(last.to_string()),
    }))
}

/// DAG files that failed to load.
#[utoipa::path(get, path = "/importErrors", tag = "Import Error", params(Page3),
    responses((status = 200, body = ImportErrorCollectionResponse)))]
pub async fn list_import_errors(
    State(state): State<AppState>,
    _user: User,
    Query(page): Query<Page3>,
) -> V2Result<Json<ImportErrorCollectionResponse>> {
    let errors = state.store.list_import_errors().await?;
    let page = page.page();
    Ok(Json(ImportErrorCollectionResponse {
        total_entries: errors.len() as i64,
        import_errors: errors
            .iter()
            .skip(page.offset() as usize)
            .take(page.limit() as usize)
            .map(ImportErrorResponse::from)
            .collect(),
    }))
}

/// One file's load error, by the id the list gives.
#[utoipa::path(get, path = "/importErrors/{import_error_id}", tag = "Import Error",
    params(("import_error_id" = i64, Path)),
    responses((status = 200, body = ImportErrorResponse), (status = 404)))]
pub async fn get_import_error(
    State(state): State<AppState>,
    _user: User,
    Path(id): Path<i64>,
) -> V2Result<Json<ImportErrorResponse>> {
    let errors = state.store.list_import_errors().await?;
    errors
        .iter()
        .find(|e| import_error_id(&e.file_path) == id)
        .map(|e| Json(ImportErrorResponse::from(e)))
        .ok_or_else(|| ApiError::not_found("import error", id).into())
}

async fn pool_response(state: &AppState, pool: &Pool) -> Result<PoolResponse, ApiError> {
    let usage = state.store.pool_usage().await?;
    Ok(PoolResponse::new(
        pool,
        usage.iter().find(|u| u.pool == pool.name),
    ))
}

/// List pools.
#[utoipa::path(get, path = "/pools", tag = "Pool", params(Page3),
    responses((status = 200, body = PoolCollectionResponse)))]
pub async fn list_pools(
    State(state): State<AppState>,
    _user: User,
    Query(page): Query<Page3>,
) -> V2Result<Json<PoolCollectionResponse>> {
    let pools = state.store.list_pools().await?;
    let usage = state.store.pool_usage().await?;
    let page = page.page();
    Ok(Json(PoolCollectionResponse {
        total_entries: pools.len() as i64,
        pools: pools
            .iter()
            .skip(page.offset() as usize)
            .take(page.limit() as usize)
            .map(|p| PoolResponse::new(p, usage.iter().find(|u| u.pool == p.name)))
            .collect(),
    }))
}

/// Get a pool.
#[utoipa::path(get, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 200, body = PoolResponse), (status = 404)))]
pub async fn get_pool(
    State(state): State<AppState>,
    _user: User,
    Path(name): Path<String>,
) -> V2Result<Json<PoolResponse>> {
    let pool = state
        .store
        .get_pool(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("pool", format!("{name:?}")))?;
    Ok(Json(pool_response(&state, &pool).await?))
}

/// Create a pool (admin): answers 201.
#[utoipa::path(post, path = "/pools", tag = "Pool", request_body = PoolBody,
    responses((status = 201, body = PoolResponse), (status = 400), (status = 409)))]
pub async fn create_pool(
    State(state): State<AppState>,
    User(user): User,
    Json(body): Json<PoolBody>,
) -> V2Result<(StatusCode, Json<PoolResponse>)> {
    refuse(
        &[
            (body.include_deferred, "include_deferred"),
            (body.team_name.is_some(), "team_name"),
        ],
        "nightshift has no deferred tasks or teams",
    )?;
    let pool = Pool {
        name: body.name,
        slots: body.slots,
        description: body.description.unwrap_or_default(),
    };
    let pool = crate::admin::create_pool(&state, &user, pool).await?;
    Ok((
        StatusCode::CREATED,
        Json(pool_response(&state, &pool).await?),
    ))
}

/// Change a pool's slots or description (admin).
#[utoipa::path(patch, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path), UpdateMask), request_body = PoolPatchBody,
    responses((status = 200, body = PoolResponse), (status = 400), (status = 404)))]
pub async fn patch_pool(
    State(state): State<AppState>,
    User(user): User,
    Path(name): Path<String>,
    Json(body): Json<PoolPatchBody>,
) -> V2Result<Json<PoolResponse>> {
    refuse(
        &[
            (
                body.name.as_ref().is_some_and(|n| *n != name),
                "renaming a pool",
            ),
            (body.include_deferred == Some(true), "include_deferred"),
            (body.team_name.is_some(), "team_name"),
        ],
        "only slots and description can change",
    )?;
    let pool =
        crate::admin::update_pool(&state, &user, &name, body.slots, body.description).await?;
    Ok(Json(pool_response(&state, &pool).await?))
}

/// Delete a pool (admin): answers 204.
#[utoipa::path(delete, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete_pool(
    State(state): State<AppState>,
    User(user): User,
    Path(name): Path<String>,
) -> V2Result<StatusCode> {
    crate::admin::delete_pool(&state, &user, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server's version; no sign-in needed (as in Airflow 3).
#[utoipa::path(get, path = "/version", tag = "Version", security(()),
    responses((status = 200, body = crate::api::model::VersionInfo)))]
pub async fn version() -> Json<crate::api::model::VersionInfo> {
    Json(crate::api::model::VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_version: option_env!("NIGHTSHIFT_GIT_VERSION").map(str::to_owned),
    })
}

/// The database and scheduler health; no sign-in needed (as in Airflow 3).
#[utoipa::path(get, path = "/monitor/health", tag = "Monitor", security(()),
    responses((status = 200, body = HealthInfoResponse)))]
pub async fn health(state: State<AppState>) -> (StatusCode, Json<HealthInfoResponse>) {
    let (status, crate::extract::Json(info)) = crate::api::misc::health(state).await;
    let heartbeat = info
        .scheduler
        .latest_scheduler_heartbeat
        .map(|at| at.to_rfc3339());
    (
        status,
        Json(HealthInfoResponse {
            metadatabase: BaseInfoResponse {
                status: Some(info.metadatabase.status),
            },
            scheduler: SchedulerInfoResponse {
                status: Some(info.scheduler.status),
                latest_scheduler_heartbeat: heartbeat,
            },
            triggerer: TriggererInfoResponse {
                status: None,
                latest_triggerer_heartbeat: None,
            },
            dag_processor: None,
        }),
    )
}
