//! Administration: pools and users (admin only), and the audit log (`/eventLogs`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use nightshift_store::{AuditFilter, NewUser, Pool, Role};
use serde::Deserialize;
use serde_json::json;

use super::model::{
    EventLog, EventLogCollection, NewPool, NewUserBody, Page, PoolCollection, PoolModel, PoolPatch,
    UserCollection, UserModel, UserPatch,
};
use crate::actions::audit_admin;
use crate::auth::{hash_password, CurrentUser};
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

fn check_slots(slots: i32) -> Result<(), ApiError> {
    if slots < 0 {
        return Err(ApiError::BadRequest(format!(
            "slots must be 0 or more, not {slots}"
        )));
    }
    Ok(())
}

/// Create a pool (admin).
#[utoipa::path(post, path = "/pools", tag = "Pool", request_body = NewPool,
    responses((status = 200, body = PoolModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<NewPool>,
) -> Result<Json<PoolModel>, ApiError> {
    user.require(Role::Admin)?;
    check_slots(body.slots)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::BadRequest("name must not be empty".into()));
    }
    if state.store.get_pool(&body.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "pool {:?} already exists",
            body.name
        )));
    }
    let pool = state
        .store
        .upsert_pool(&Pool {
            name: body.name,
            slots: body.slots,
            description: body.description,
        })
        .await?;
    let details = json!({ "pool": pool.name, "slots": pool.slots });
    audit_admin(&state, &user, "pool.create", details).await?;
    Ok(Json(pool_model(&state, &pool).await?))
}

/// Change a pool's slots or description (admin).
#[utoipa::path(patch, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)), request_body = PoolPatch,
    responses((status = 200, body = PoolModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Json(body): Json<PoolPatch>,
) -> Result<Json<PoolModel>, ApiError> {
    user.require(Role::Admin)?;
    let current = state
        .store
        .get_pool(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("pool", format!("{name:?}")))?;
    let slots = body.slots.unwrap_or(current.slots);
    check_slots(slots)?;
    let pool = state
        .store
        .upsert_pool(&Pool {
            name: current.name,
            slots,
            description: body.description.unwrap_or(current.description),
        })
        .await?;
    let details = json!({ "pool": pool.name, "slots": pool.slots });
    audit_admin(&state, &user, "pool.update", details).await?;
    Ok(Json(pool_model(&state, &pool).await?))
}

/// Delete a pool (admin); `default_pool` cannot be deleted (409).
#[utoipa::path(delete, path = "/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn delete_pool(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    state.store.delete_pool(&name).await?;
    audit_admin(&state, &user, "pool.delete", json!({ "pool": name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List users (admin).
#[utoipa::path(get, path = "/users", tag = "User", params(Page),
    responses((status = 200, body = UserCollection), (status = 403, body = Problem)))]
pub async fn list_users(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(page): Query<Page>,
) -> Result<Json<UserCollection>, ApiError> {
    user.require(Role::Admin)?;
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

async fn hash(password: String) -> Result<String, ApiError> {
    if password.len() < 8 {
        return Err(ApiError::BadRequest(
            "password must be at least 8 characters".into(),
        ));
    }
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Create a user (admin).
#[utoipa::path(post, path = "/users", tag = "User", request_body = NewUserBody,
    responses((status = 200, body = UserModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<NewUserBody>,
) -> Result<Json<UserModel>, ApiError> {
    user.require(Role::Admin)?;
    let role = parse_role(&body.role)?;
    if body.username.trim().is_empty() {
        return Err(ApiError::BadRequest("username must not be empty".into()));
    }
    let created = state
        .store
        .create_user(&NewUser {
            username: body.username,
            password_hash: hash(body.password).await?,
            role,
            now: Utc::now(),
        })
        .await?;
    let details = json!({ "user": created.username, "role": created.role });
    audit_admin(&state, &user, "user.create", details).await?;
    Ok(Json(UserModel::from(&created)))
}

/// Change a user's role, password or disabled flag (admin).
#[utoipa::path(patch, path = "/users/{username}", tag = "User",
    params(("username" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = UserModel), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn patch_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(username): Path<String>,
    Json(body): Json<UserPatch>,
) -> Result<Json<UserModel>, ApiError> {
    user.require(Role::Admin)?;
    let mut current = state
        .store
        .get_user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found("user", format!("{username:?}")))?;
    // An admin who demotes or disables themself could leave nobody to undo it.
    let demotes = body
        .role
        .as_deref()
        .is_some_and(|r| r != Role::Admin.as_str());
    if current.id == user.id && (demotes || body.disabled == Some(true)) {
        return Err(ApiError::Conflict(
            "you cannot disable your own account or remove your own admin role; ask another admin"
                .to_owned(),
        ));
    }
    if let Some(role) = &body.role {
        current = state
            .store
            .set_user_role(&username, parse_role(role)?)
            .await?;
    }
    if let Some(disabled) = body.disabled {
        current = state.store.set_user_disabled(&username, disabled).await?;
    }
    let password_changed = body.password.is_some();
    if let Some(password) = body.password {
        let hash = hash(password).await?;
        current = state.store.set_user_password_hash(&username, &hash).await?;
    }
    let details = json!({
        "user": username,
        "role": body.role,
        "disabled": body.disabled,
        "password_changed": password_changed,
    });
    audit_admin(&state, &user, "user.update", details).await?;
    Ok(Json(UserModel::from(&current)))
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
