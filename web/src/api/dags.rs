//! `/dags`: list (with filters), get, details (definition and load error), pause, and
//! the versions of a DAG's definition.

use axum::extract::State;
use nightshift_store::DagOverviewFilter;
use serde::Deserialize;

use super::model::{
    DagCollection, DagDetail, DagModel, DagPatch, DagVersionCollection, DagVersionModel,
    ImportErrorModel, Page, UpdateMask,
};
use crate::actions;
use crate::auth::{CurrentUser, Operator};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::lookup::dag_record;
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagListParams {
    /// Only DAGs whose id contains this (case-insensitive).
    pub dag_id_pattern: Option<String>,
    pub paused: Option<bool>,
    /// Only DAGs whose file still exists (default true).
    pub only_active: Option<bool>,
    /// Only DAGs whose latest run failed.
    pub failing: Option<bool>,
    /// Only DAGs with this tag (exact match).
    pub tag: Option<String>,
    /// Airflow's name for `tag`. One tag (DAGs with several tags at once are not
    /// supported: more than one is a 400).
    pub tags: Option<String>,
    /// Only DAGs of this owner (exact match).
    pub owner: Option<String>,
    /// `dag_id` (the default with this parameter), `last_parsed_time` or
    /// `next_dagrun_create_after` (`next_dagrun`); `-` in front for descending. Without
    /// it, failing DAGs (latest run failed) come first, then by id.
    #[param(pattern = r"^-?(dag_id|last_parsed_time|next_dagrun|next_dagrun_create_after)$")]
    pub order_by: Option<String>,
    /// Airflow's sparse fieldsets: not supported (every field is sent); a 400 when given.
    pub fields: Option<String>,
}

/// How a DAG list is sorted when `order_by` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DagOrder {
    DagId,
    LastParsed,
    NextRun,
}

fn dag_order(order_by: &str) -> Result<(DagOrder, bool), ApiError> {
    let (ascending, column) = match order_by.strip_prefix('-') {
        Some(column) => (false, column),
        None => (true, order_by),
    };
    let order = match column {
        "dag_id" => DagOrder::DagId,
        "last_parsed_time" => DagOrder::LastParsed,
        "next_dagrun" | "next_dagrun_create_after" => DagOrder::NextRun,
        other => {
            return Err(ApiError::BadRequest(format!(
                "DAGs cannot be ordered by {other:?}: use dag_id, last_parsed_time or \
                 next_dagrun, with - for descending"
            )))
        }
    };
    Ok((order, ascending))
}

/// List DAGs: failing ones (latest run failed) first, then by id.
#[utoipa::path(get, path = "/dags", tag = "DAG",
    params(DagListParams, Page),
    responses((status = 200, body = DagCollection), (status = 401, body = Problem)))]
pub async fn list_dags(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(params): Query<DagListParams>,
    Query(page): Query<Page>,
) -> Result<Json<DagCollection>, ApiError> {
    if params.fields.is_some() {
        return Err(ApiError::BadRequest(
            "fields is not supported: every field of a DAG is sent".to_owned(),
        ));
    }
    let tags: Vec<String> = [params.tag, params.tags]
        .into_iter()
        .flatten()
        .flat_map(|list| list.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.len() > 1 {
        return Err(ApiError::BadRequest(format!(
            "only one tag can be given (got {}): DAGs are filtered by one tag at a time",
            tags.len()
        )));
    }
    let order = params.order_by.as_deref().map(dag_order).transpose()?;
    let mut filter = DagOverviewFilter {
        failing_only: params.failing.unwrap_or(false),
        paused: params.paused,
        active: params.only_active.unwrap_or(true).then_some(true),
        search: params.dag_id_pattern,
        tag: tags.into_iter().next(),
        owner: params.owner.filter(|o| !o.is_empty()),
        limit: page.limit(),
        offset: page.offset(),
    };
    if order.is_some() {
        // Sorted here, over all matching DAGs (one row each), then paged.
        filter.limit = i64::MAX;
        filter.offset = 0;
    }
    let rows = state.store.dag_overviews(&filter).await?;
    let total_entries = state.store.count_dag_overviews(&filter).await?;
    let mut dags: Vec<DagModel> = rows.iter().map(|row| DagModel::from(&row.dag)).collect();
    if let Some((order, ascending)) = order {
        dags.sort_by(|a, b| {
            let by = match order {
                DagOrder::DagId => a.dag_id.cmp(&b.dag_id),
                DagOrder::LastParsed => a.last_parsed_time.cmp(&b.last_parsed_time),
                DagOrder::NextRun => a.next_dagrun_create_after.cmp(&b.next_dagrun_create_after),
            }
            .then_with(|| a.dag_id.cmp(&b.dag_id));
            if ascending {
                by
            } else {
                by.reverse()
            }
        });
        dags = dags
            .into_iter()
            .skip(page.offset() as usize)
            .take(page.limit() as usize)
            .collect();
    }
    Ok(Json(DagCollection {
        dags,
        total_entries,
    }))
}

/// Get a DAG.
#[utoipa::path(get, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagModel), (status = 404, body = Problem)))]
pub async fn get_dag(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Json<DagModel>, ApiError> {
    let record = dag_record(&state.store, &dag_id).await?;
    Ok(Json(DagModel::from(&record)))
}

/// Get a DAG with its definition and its file's load error.
#[utoipa::path(get, path = "/dags/{dag_id}/details", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagDetail), (status = 404, body = Problem)))]
pub async fn get_dag_details(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Json<DagDetail>, ApiError> {
    let record = dag_record(&state.store, &dag_id).await?;
    let import_errors = state
        .store
        .list_import_errors()
        .await?
        .iter()
        .filter(|e| e.file_path == record.file_path)
        .map(ImportErrorModel::from)
        .collect();
    Ok(Json(DagDetail {
        dag: DagModel::from(&record),
        definition: record.definition.clone(),
        import_errors,
    }))
}

/// Pause or unpause a DAG (operator).
#[utoipa::path(patch, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path), UpdateMask),
    request_body = DagPatch,
    responses((status = 200, body = DagModel), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn patch_dag(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path(dag_id): Path<String>,
    Query(mask): Query<UpdateMask>,
    Json(patch): Json<DagPatch>,
) -> Result<Json<DagModel>, ApiError> {
    mask.allow(&["is_paused"])?;
    let record = actions::set_paused(&state, &user, &dag_id, patch.is_paused).await?;
    Ok(Json(DagModel::from(&record)))
}

/// List the versions of a DAG, newest first: each distinct parsed definition it was
/// loaded with (comments, whitespace and key order make none).
#[utoipa::path(get, path = "/dags/{dag_id}/versions", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagVersionCollection), (status = 404, body = Problem)))]
pub async fn list_dag_versions(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Json<DagVersionCollection>, ApiError> {
    let record = dag_record(&state.store, &dag_id).await?;
    let versions = state.store.list_dag_versions(&dag_id).await?;
    Ok(Json(DagVersionCollection {
        total_entries: i64::try_from(versions.len()).unwrap_or(i64::MAX),
        dag_versions: versions
            .iter()
            .map(|v| DagVersionModel::new(v, &record.source_hash))
            .collect(),
    }))
}
