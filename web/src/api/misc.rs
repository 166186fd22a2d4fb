//! DAG file load errors, the version, and `/health`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use nightshift_store::ComponentKind;

use super::model::{
    HealthInfo, ImportErrorCollection, ImportErrorModel, MetadatabaseStatus, Page, SchedulerStatus,
    VersionInfo,
};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::AppState;

/// A scheduler whose last heartbeat is older than this is reported unhealthy.
const SCHEDULER_HEALTHY_WITHIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// DAG files that failed to load, by file name.
#[utoipa::path(get, path = "/importErrors", tag = "ImportError", params(Page),
    responses((status = 200, body = ImportErrorCollection)))]
pub async fn list_import_errors(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(page): Query<Page>,
) -> Result<Json<ImportErrorCollection>, ApiError> {
    // One row per broken file: a short list, paged here.
    let errors = state.store.list_import_errors().await?;
    Ok(Json(ImportErrorCollection {
        total_entries: errors.len() as i64,
        import_errors: errors
            .iter()
            .skip(page.offset() as usize)
            .take(page.limit() as usize)
            .map(ImportErrorModel::from)
            .collect(),
    }))
}

/// The server's version.
#[utoipa::path(get, path = "/version", tag = "Monitoring",
    responses((status = 200, body = VersionInfo)))]
pub async fn version(_user: CurrentUser) -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_version: option_env!("NIGHTSHIFT_GIT_VERSION").map(str::to_owned),
    })
}

/// Whether the database answers and when a scheduler last reported; no sign-in needed.
/// 503 when the database is unreachable.
#[utoipa::path(get, path = "/health", tag = "Monitoring", security(()),
    responses((status = 200, body = HealthInfo), (status = 503, body = HealthInfo)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthInfo>) {
    let db_ok = state.store.ping().await.is_ok();
    let heartbeat = if db_ok {
        state
            .store
            .latest_heartbeat(ComponentKind::Scheduler)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let scheduler_ok = heartbeat.is_some_and(|at| Utc::now() - at < SCHEDULER_HEALTHY_WITHIN);
    let word = |ok: bool| if ok { "healthy" } else { "unhealthy" }.to_owned();
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthInfo {
            metadatabase: MetadatabaseStatus {
                status: word(db_ok),
            },
            scheduler: SchedulerStatus {
                status: word(scheduler_ok),
                latest_scheduler_heartbeat: heartbeat,
            },
        }),
    )
}
