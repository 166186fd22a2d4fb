//! What Airflow 2's stable REST API has and the rest of `/api/v1` did not: a DAG's
//! tasks, the batch `…/list` endpoints (`POST /dags/~/dagRuns/list`,
//! `POST /dags/~/dagRuns/~/taskInstances/list`) and `/api/v1/health`. The `~` wildcards of
//! the task-instance list are in `tasks.rs`; Airflow's names for states in `model.rs`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use chrono::{DateTime, Utc};
use nightshift_core::dag::{Dag, Task};
use nightshift_core::state::RunState;
use nightshift_store::{DagRun, RunQuery, TaskInstance, TaskInstanceQuery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{
    parse_task_state, DagRunCollection, DagRunModel, Page, TaskInstanceCollection,
    TaskInstanceModel,
};
use super::runs::{either, run_order};
use crate::auth::CurrentUser;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::lookup::load_dag;
use crate::AppState;

/// A task's kind, as Airflow's `class_ref`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassReference {
    /// The task's `type` (command, sql, http, …).
    pub class_name: String,
    /// Always `nightshift`.
    pub module_path: String,
}

/// A duration, as Airflow's `TimeDelta`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeDelta {
    #[serde(rename = "__type")]
    pub kind: String,
    pub days: i64,
    pub seconds: i64,
    pub microseconds: i64,
}

impl From<Duration> for TimeDelta {
    fn from(d: Duration) -> Self {
        let secs = d.as_secs();
        TimeDelta {
            kind: "TimeDelta".to_owned(),
            days: (secs / 86_400) as i64,
            seconds: (secs % 86_400) as i64,
            microseconds: i64::from(d.subsec_micros()),
        }
    }
}

/// One task of a DAG, shaped as Airflow 2's `Task`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskModel {
    pub task_id: String,
    /// The task's id (nightshift has no separate display names).
    pub task_display_name: String,
    pub class_ref: ClassReference,
    /// The DAG's owner (empty when it names none).
    pub owner: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// Left out when it is nightshift's `all_done_min_one_success`, which Airflow 2 lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_rule: Option<String>,
    /// Always empty.
    pub extra_links: Vec<Value>,
    /// Always false (nightshift has no `depends_on_past`).
    pub depends_on_past: bool,
    /// Always false.
    pub wait_for_downstream: bool,
    pub retries: f64,
    pub queue: String,
    pub pool: String,
    pub pool_slots: f64,
    /// The limit of one try; null without one.
    pub execution_timeout: Option<TimeDelta>,
    pub retry_delay: TimeDelta,
    pub retry_exponential_backoff: bool,
    pub priority_weight: f64,
    /// Always `absolute`: a task's priority is its own.
    pub weight_rule: String,
    /// Always empty (a try's rendered fields are on its task instance).
    pub template_fields: Vec<String>,
    pub downstream_task_ids: Vec<String>,
    /// The task's `doc`.
    pub doc_md: Option<String>,
    /// A `for_each` task (Airflow's mapped task).
    pub is_mapped: bool,
}

type Value = serde_json::Value;

impl TaskModel {
    fn new(dag: &Dag, task: &Task) -> Self {
        let trigger_rule = task.trigger_rule.as_str();
        TaskModel {
            task_id: task.id.clone(),
            task_display_name: task.id.clone(),
            class_ref: ClassReference {
                class_name: task.kind.name().to_owned(),
                module_path: "nightshift".to_owned(),
            },
            owner: dag.owner.clone().unwrap_or_default(),
            start_date: dag.start_date,
            end_date: dag.end_date,
            trigger_rule: (trigger_rule != "all_done_min_one_success")
                .then(|| trigger_rule.to_owned()),
            extra_links: Vec::new(),
            depends_on_past: false,
            wait_for_downstream: false,
            retries: f64::from(task.retries),
            queue: task.queue.clone(),
            pool: task.pool.clone(),
            pool_slots: f64::from(task.pool_slots),
            execution_timeout: task.timeout.map(TimeDelta::from),
            retry_delay: TimeDelta::from(task.retry_delay),
            retry_exponential_backoff: task.retry_exponential_backoff,
            priority_weight: f64::from(task.priority),
            weight_rule: "absolute".to_owned(),
            template_fields: Vec::new(),
            downstream_task_ids: dag
                .tasks
                .values()
                .filter(|t| t.depends_on.contains(&task.id))
                .map(|t| t.id.clone())
                .collect(),
            doc_md: task.doc.clone(),
            is_mapped: task.for_each.is_some(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskCollection {
    pub tasks: Vec<TaskModel>,
    pub total_entries: i64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskOrder {
    /// `task_id` (the default) or `-task_id`.
    #[param(pattern = "^-?task_id$")]
    pub order_by: Option<String>,
}

/// A DAG's tasks, by task id.
#[utoipa::path(get, path = "/dags/{dag_id}/tasks", tag = "DAG",
    params(("dag_id" = String, Path), TaskOrder),
    responses((status = 200, body = TaskCollection), (status = 404, body = Problem)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
    crate::extract::Query(order): crate::extract::Query<TaskOrder>,
) -> Result<Json<TaskCollection>, ApiError> {
    let (_, dag) = load_dag(&state.store, &dag_id).await?;
    let mut tasks: Vec<TaskModel> = dag
        .tasks
        .values()
        .map(|task| TaskModel::new(&dag, task))
        .collect();
    match order.order_by.as_deref() {
        None | Some("" | "task_id") => {}
        Some("-task_id") => tasks.reverse(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "tasks cannot be ordered by {other:?}: use task_id or -task_id"
            )))
        }
    }
    Ok(Json(TaskCollection {
        total_entries: tasks.len() as i64,
        tasks,
    }))
}

/// One task of a DAG.
#[utoipa::path(get, path = "/dags/{dag_id}/tasks/{task_id}", tag = "DAG",
    params(("dag_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskModel), (status = 404, body = Problem)))]
pub async fn get_task(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, task_id)): Path<(String, String)>,
) -> Result<Json<TaskModel>, ApiError> {
    let (_, dag) = load_dag(&state.store, &dag_id).await?;
    let task = dag
        .tasks
        .get(&task_id)
        .ok_or_else(|| ApiError::not_found("task", format_args!("{dag_id}/{task_id}")))?;
    Ok(Json(TaskModel::new(&dag, task)))
}

/// Airflow's `ListDagRunsForm`: runs of several DAGs at once.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDagRunsForm {
    #[serde(default, deserialize_with = "super::model::int32")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub page_offset: Option<u32>,
    /// Default 100, at most 1000.
    #[serde(default, deserialize_with = "super::model::int32")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub page_limit: Option<u32>,
    /// Default: every DAG.
    pub dag_ids: Option<Vec<String>>,
    /// queued, running, success or failed; default: any.
    pub states: Option<Vec<String>>,
    pub execution_date_gte: Option<DateTime<Utc>>,
    pub execution_date_lte: Option<DateTime<Utc>>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub start_date_gte: Option<DateTime<Utc>>,
    pub start_date_lte: Option<DateTime<Utc>>,
    pub end_date_gte: Option<DateTime<Utc>>,
    pub end_date_lte: Option<DateTime<Utc>>,
    /// As `order_by` of `GET /dags/{dag_id}/dagRuns`.
    pub order_by: Option<String>,
}

/// Runs of several DAGs (Airflow's batch list; the DAG id in the path must be `~`).
#[utoipa::path(post, path = "/dags/~/dagRuns/list", tag = "DAGRun",
    request_body = ListDagRunsForm,
    responses((status = 200, body = DagRunCollection), (status = 400, body = Problem)))]
pub async fn list_dag_runs_batch(
    State(state): State<AppState>,
    _user: CurrentUser,
    Json(form): Json<ListDagRunsForm>,
) -> Result<Json<DagRunCollection>, ApiError> {
    let page = Page {
        limit: form.page_limit,
        offset: form.page_offset,
    };
    let states = form
        .states
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse::<RunState>()
                .map_err(|err| ApiError::BadRequest(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = RunQuery {
        dag_ids: form.dag_ids.unwrap_or_default(),
        states,
        logical_date_gte: either(
            form.logical_date_gte,
            form.execution_date_gte,
            ("logical_date_gte", "execution_date_gte"),
        )?,
        logical_date_lte: either(
            form.logical_date_lte,
            form.execution_date_lte,
            ("logical_date_lte", "execution_date_lte"),
        )?,
        start_date_gte: form.start_date_gte,
        start_date_lte: form.start_date_lte,
        end_date_gte: form.end_date_gte,
        end_date_lte: form.end_date_lte,
        order: run_order(form.order_by.as_deref())?,
        limit: page.limit(),
        offset: page.offset(),
        ..RunQuery::default()
    };
    let runs = state.store.query_runs(&query).await?;
    let total_entries = state.store.count_query_runs(&query).await?;
    Ok(Json(DagRunCollection {
        dag_runs: runs.iter().map(DagRunModel::from).collect(),
        total_entries,
    }))
}

/// Airflow's `ListTaskInstanceForm`: task instances of several DAGs and runs at once.
/// The date and duration ranges and `executor` are not supported (a 400 when given).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTaskInstanceForm {
    #[serde(default, deserialize_with = "super::model::int32")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub page_offset: Option<u32>,
    /// Default 100, at most 1000.
    #[serde(default, deserialize_with = "super::model::int32")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub page_limit: Option<u32>,
    pub dag_ids: Option<Vec<String>>,
    pub dag_run_ids: Option<Vec<String>>,
    pub task_ids: Option<Vec<String>>,
    /// Task states in Airflow's words (`none` for no state yet, `deferred`) or
    /// nightshift's.
    pub state: Option<Vec<Option<String>>>,
    pub pool: Option<Vec<String>>,
    pub queue: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<String>>)]
    pub executor: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub execution_date_gte: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub execution_date_lte: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub start_date_gte: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub start_date_lte: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub end_date_gte: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub end_date_lte: Option<Value>,
    #[schema(value_type = Option<f64>)]
    pub duration_gte: Option<Value>,
    #[schema(value_type = Option<f64>)]
    pub duration_lte: Option<Value>,
}

/// Task instances of several DAGs and runs (Airflow's batch list; both ids in the path
/// must be `~`), by DAG, run, task id and map index.
#[utoipa::path(post, path = "/dags/~/dagRuns/~/taskInstances/list", tag = "TaskInstance",
    request_body = ListTaskInstanceForm,
    responses((status = 200, body = TaskInstanceCollection), (status = 400, body = Problem)))]
pub async fn list_task_instances_batch(
    State(state): State<AppState>,
    _user: CurrentUser,
    Json(form): Json<ListTaskInstanceForm>,
) -> Result<Json<TaskInstanceCollection>, ApiError> {
    let unsupported = [
        ("executor", &form.executor),
        ("execution_date_gte", &form.execution_date_gte),
        ("execution_date_lte", &form.execution_date_lte),
        ("start_date_gte", &form.start_date_gte),
        ("start_date_lte", &form.start_date_lte),
        ("end_date_gte", &form.end_date_gte),
        ("end_date_lte", &form.end_date_lte),
        ("duration_gte", &form.duration_gte),
        ("duration_lte", &form.duration_lte),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, v)| v.is_some()) {
        return Err(ApiError::BadRequest(format!(
            "{name} is not supported in task instance lists: filter by dag_ids, \\
             dag_run_ids, task_ids, state, pool and queue"
        )));
    }
    let page = Page {
        limit: form.page_limit,
        offset: form.page_offset,
    };
    let states = form
        .state
        .unwrap_or_default()
        .into_iter()
        .map(|s| parse_task_state(s.as_deref().unwrap_or("none")))
        .collect::<Result<Vec<_>, _>>()?;
    let query = TaskInstanceQuery {
        run: None,
        dag_ids: form.dag_ids.unwrap_or_default(),
        run_ids: form.dag_run_ids.unwrap_or_default(),
        task_ids: form.task_ids.unwrap_or_default(),
        states,
        pools: form.pool.unwrap_or_default(),
        queues: form.queue.unwrap_or_default(),
        limit: page.limit(),
        offset: page.offset(),
    };
    instance_page(&state, &query).await.map(Json)
}

/// A page of the instances `query` selects, each with its run's ids and dates.
pub(crate) async fn instance_page(
    state: &AppState,
    query: &TaskInstanceQuery,
) -> Result<TaskInstanceCollection, ApiError> {
    let instances = state.store.query_task_instances(query).await?;
    let total_entries = state.store.count_query_task_instances(query).await?;
    let runs = runs_of(state, &instances).await?;
    Ok(TaskInstanceCollection {
        task_instances: instances
            .iter()
            .filter_map(|ti| runs.get(&ti.run).map(|run| TaskInstanceModel::new(ti, run)))
            .collect(),
        total_entries,
    })
}

/// The runs of `instances`, by row id.
pub(crate) async fn runs_of(
    state: &AppState,
    instances: &[TaskInstance],
) -> Result<HashMap<i64, DagRun>, ApiError> {
    let mut runs = HashMap::new();
    for ti in instances {
        if runs.contains_key(&ti.run) {
            continue;
        }
        if let Some(run) = state.store.get_run(ti.run).await? {
            runs.insert(ti.run, run);
        }
    }
    Ok(runs)
}
