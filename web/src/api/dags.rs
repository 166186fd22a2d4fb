//! `/dags`: list (with filters), get, details (definition and load error), pause, and
//! the versions of a DAG's definition.

use axum::extract::State;
use nightshift_store::DagOverviewFilter;
use serde::Deserialize;

use super::model::{
    DagCollection, DagDetail, DagModel, DagPatch, DagVersionCollection, DagVersionModel,
    ImportErrorModel, Page,
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
    /// Only DAGs of this owner (exact match).
    pub owner: Option<String>,
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
    let filter = DagOverviewFilter {
        failing_only: params.failing.unwrap_or(false),
        paused: params.paused,
        active: params.only_active.unwrap_or(true).then_some(true),
        search: params.dag_id_pattern,
        tag: params.tag.filter(|t| !t.is_empty()),
        owner: params.owner.filter(|o| !o.is_empty()),
        limit: page.limit(),
        offset: page.offset(),
    };
    let rows = state.store.dag_overviews(&filter).await?;
    let total_entries = state.store.count_dag_overviews(&filter).await?;
    Ok(Json(DagCollection {
        dags: rows.iter().map(|row| DagModel::from(&row.dag)).collect(),
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
    params(("dag_id" = String, Path)),
    request_body = DagPatch,
    responses((status = 200, body = DagModel), (status = 403, body = Problem),
              (status = 404, body = Problem)))]
pub async fn patch_dag(
    State(state): State<AppState>,
    Operator(user): Operator,
    Path(dag_id): Path<String>,
    Json(patch): Json<DagPatch>,
) -> Result<Json<DagModel>, ApiError> {
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
