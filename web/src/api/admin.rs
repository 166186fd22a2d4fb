//! Administration: pools and users (admin only), and the audit log (`/eventLogs`).

use axum::extract::State;
use axum::http::StatusCode;
use nightshift_store::{AuditFilter, Pool, Role};
use serde::Deserialize;

use super::model::{
    EventLog, EventLogCollection, NewPool, NewUserBody, Page, PoolCollection, PoolModel, PoolPatch,
    UserCollection, UserModel, UserPatch,
};
use crate::admin::{self, UserChange};
use crate::auth::{Admin, CurrentUser};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::AppState;

async fn pool_model(state: &AppState, pool: &Pool) -> Result<PoolModel, ApiError> {
    let usage = state.store.pool_usage().await?;
    Ok(PoolModel::new(
        pool,
        usage.iter().find(|u| u.pool == pool.name),
    ))
}

/// List pools with their slot use.
#[utoipa::path(get, path = "/pools", tag = "Pool", params(Page),
    responses((status = 200, body = PoolCollection)))]
pub async fn list_pools(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(page): Query<Page>,
) -> Result<Json<PoolCollection>, ApiError> {
    let pools = state.store.list_pools().await?;
    let usage = state.store.pool_usage().await?;
    let total_entries = pools.len() as i64;
    let pools = pools
        .iter()
        .skip(page.offset() as usize)
        .take(page.limit() as usize)
        .map(|p| PoolModel::new(p, usage.iter().find(|u| u.pool == p.name)))
        .collect();
    Ok(Json(PoolCollection {
        pools,
        total_entries,
    }))
}

/// Get a pool.
#[utoipa::path(get, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 200, body = PoolModel), (status = 404, body = Problem)))]
pub async fn get_pool(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<PoolModel>, ApiError> {
    let pool = state
        .store
        .get_pool(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("pool", format!("{name:?}")))?;
    Ok(Json(pool_model(&state, &pool).await?))
}

/// Create a pool (admin).
#[utoipa::path(post, path = "/pools", tag = "Pool", request_body = NewPool,
    responses((status = 200, body = PoolModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_pool(
    State(state): State<AppState>,
    Admin(user): Admin,
    Json(body): Json<NewPool>,
) -> Result<Json<PoolModel>, ApiError> {
    let pool = Pool {
        name: body.name,
        slots: body.slots,
        description: body.description,
    };
    let pool = admin::create_pool(&state, &user, pool).await?;
    Ok(Json(pool_model(&state, &pool).await?))
}

/// Change a pool's slots or description (admin).
#[utoipa::path(patch, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)), request_body = PoolPatch,
    responses((status = 200, body = PoolModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_pool(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
    Json(body): Json<PoolPatch>,
) -> Result<Json<PoolModel>, ApiError> {
    let pool = admin::update_pool(&state, &user, &name, body.slots, body.description).await?;
    Ok(Json(pool_model(&state, &pool).await?))
}

/// Delete a pool (admin); `default_pool` cannot be deleted (409).
#[utoipa::path(delete, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn delete_pool(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin::delete_pool(&state, &user, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List users (admin).
#[utoipa::path(get, path = "/users", tag = "User", params(Page),
    responses((status = 200, body = UserCollection), (status = 403, body = Problem)))]
pub async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(page): Query<Page>,
) -> Result<Json<UserCollection>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(UserCollection {
        total_entries: users.len() as i64,
        users: users
            .iter()
            .skip(page.offset() as usize)
            .take(page.limit() as usize)
            .map(UserModel::from)
            .collect(),
    }))
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    role.parse()
        .map_err(|err: nightshift_store::UnknownName| ApiError::BadRequest(err.to_string()))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/users", tag = "User", request_body = NewUserBody,
    responses((status = 200, body = UserModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_user(
    State(state): State<AppState>,
    Admin(user): Admin,
    Json(body): Json<NewUserBody>,
) -> Result<Json<UserModel>, ApiError> {
    let role = parse_role(&body.role)?;
    let created = admin::create_user(&state, &user, &body.username, body.password, role).await?;
    Ok(Json(UserModel::from(&created)))
}

/// Change a user's role, password or disabled flag (admin). A new password, another
/// role or disabling ends the user's sessions and API tokens (`keep_tokens` keeps the
/// tokens); enabling ends sessions left from before. Admins cannot demote or disable
/// themselves (409).
#[utoipa::path(patch, path = "/users/{username}", tag = "User",
    params(("username" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = UserModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn patch_user(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(username): Path<String>,
    Json(body): Json<UserPatch>,
) -> Result<Json<UserModel>, ApiError> {
    let change = UserChange {
        role: body.role.as_deref().map(parse_role).transpose()?,
        disabled: body.disabled,
        password: body.password,
        keep_tokens: body.keep_tokens,
    };
    let updated = admin::update_user(&state, &user, &username, change).await?;
    Ok(Json(UserModel::from(&updated)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventLogParams {
    pub dag_id: Option<String>,
    /// Who did it.
    pub owner: Option<String>,
    /// What was done, e.g. `task.clear`.
    pub event: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/eventLogs", tag = "EventLog", params(EventLogParams, Page),
    responses((status = 200, body = EventLogCollection)))]
pub async fn list_event_logs(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(params): Query<EventLogParams>,
    Query(page): Query<Page>,
) -> Result<Json<EventLogCollection>, ApiError> {
    let filter = AuditFilter {
        dag_id: params.dag_id,
        actor: params.owner,
        action: params.event,
        limit: Some(page.limit()),
        offset: page.offset(),
    };
    let records = state.store.list_audit(&filter).await?;
    let total_entries = state.store.count_audit(&filter).await?;
    Ok(Json(EventLogCollection {
        event_logs: records.iter().map(EventLog::from).collect(),
        total_entries,
    }))
}
