//! The admins' pages: pools (list, create, change slots and description, delete) and
//! users (list, create with a role, change role, disable or enable, reset the password).
//! The router lets only admins in; every change goes through the same actions as the API
//! (`crate::admin`), so it is checked, audited and validated the same way. A bad entry
//! shows the page again with the message and a 4xx status.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use nightshift_store::{Pool, Role};
use serde::Deserialize;

use super::contexts::{PoolRow, PoolsPage, ShownPassword, UserRow, UsersPage};
use super::{render, see_other, urlencode, Layout, PageError, PageResult};
use crate::admin::{self, UserChange};
use crate::api::model::{PoolModel, UserModel};
use crate::auth::{generate_password, CsrfForm, CurrentUser};
use crate::error::ApiError;
use crate::AppState;

/// A message to show once at the top of a page.
#[derive(Debug, Default)]
struct Notice {
    error: Option<String>,
    /// A generated password, shown once.
    password: Option<ShownPassword>,
}

/// Shows `err` on the page (with its status) when it is the person's mistake; anything
/// else becomes the error page.
async fn or_show<T, F, Fut>(result: Result<T, ApiError>, page: F) -> Result<T, PageError>
where
    F: FnOnce(Notice) -> Fut,
    Fut: std::future::Future<Output = PageResult>,
{
    match result {
        Ok(value) => Ok(value),
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let notice = Notice {
                error: Some(err.to_string()),
                ..Notice::default()
            };
            let mut response = page(notice).await?;
            *response.status_mut() = status;
            Err(PageError::Shown(Box::new(response)))
        }
        Err(err) => Err(err.into()),
    }
}

/// A whole number from a form field.
fn parse_slots(value: &str) -> Result<i32, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("slots must be a whole number, not {value:?}")))
}

fn parse_role(value: &str) -> Result<Role, ApiError> {
    value
        .parse()
        .map_err(|err: nightshift_store::UnknownName| ApiError::BadRequest(err.to_string()))
}

pub async fn pools(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    pools_page(&state, &user, Notice::default()).await
}

async fn pools_page(state: &AppState, user: &CurrentUser, notice: Notice) -> PageResult {
    let pools = state.store.list_pools().await?;
    let usage = state.store.pool_usage().await?;
    let pools = pools
        .iter()
        .map(|p| PoolRow {
            pool: PoolModel::new(p, usage.iter().find(|u| u.pool == p.name)),
            href: format!("/admin/pools/{}", urlencode(&p.name)),
            default: p.name == nightshift_core::dag::DEFAULT_POOL,
        })
        .collect();
    let page = PoolsPage {
        layout: Layout::new("Pools", user),
        pools,
        error: notice.error,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewPoolForm {
    pub name: String,
    pub slots: String,
    #[serde(default)]
    pub description: String,
}

pub async fn create_pool(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<NewPoolForm>,
) -> PageResult {
    let result = match parse_slots(&form.slots) {
        Ok(slots) => {
            let pool = Pool {
                name: form.name.trim().to_owned(),
                slots,
                description: form.description.trim().to_owned(),
            };
            admin::create_pool(&state, &user, pool).await
        }
        Err(err) => Err(err),
    };
    or_show(result, |n| pools_page(&state, &user, n)).await?;
    Ok(see_other("/admin/pools"))
}

#[derive(Debug, Deserialize)]
pub struct PoolForm {
    pub slots: String,
    #[serde(default)]
    pub description: String,
}

pub async fn update_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { user, form }: CsrfForm<PoolForm>,
) -> PageResult {
    let result = match parse_slots(&form.slots) {
        Ok(slots) => {
            let description = Some(form.description.trim().to_owned());
            admin::update_pool(&state, &user, &name, Some(slots), description).await
        }
        Err(err) => Err(err),
    };
    or_show(result, |n| pools_page(&state, &user, n)).await?;
    Ok(see_other("/admin/pools"))
}

pub async fn delete_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { user, .. }: CsrfForm<super::forms::Empty>,
) -> PageResult {
    let result = admin::delete_pool(&state, &user, &name).await;
    or_show(result, |n| pools_page(&state, &user, n)).await?;
    Ok(see_other("/admin/pools"))
}

pub async fn users(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    users_page(&state, &user, Notice::default()).await
}

async fn users_page(state: &AppState, user: &CurrentUser, notice: Notice) -> PageResult {
    let users = state
        .store
        .list_users()
        .await?
        .iter()
        .map(|u| UserRow {
            user: UserModel::from(u),
            href: format!("/admin/users/{}", urlencode(&u.username)),
            is_me: u.id == user.id,
        })
        .collect();
    let page = UsersPage {
        layout: Layout::new("Users", user),
        users,
        roles: vec![Role::Viewer, Role::Operator, Role::Admin],
        min_password: admin::MIN_PASSWORD_CHARS,
        error: notice.error,
        password: notice.password,
    };
    Ok(render(&page)?.into_response())
}

/// A password typed into a form, or a generated one when the field was left empty
/// (returned second, to be shown once).
fn password_or_generated(typed: &str) -> (String, Option<String>) {
    if typed.is_empty() {
        let generated = generate_password();
        (generated.clone(), Some(generated))
    } else {
        (typed.to_owned(), None)
    }
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    pub username: String,
    pub role: String,
    /// Empty: generate one and show it once.
    #[serde(default)]
    pub password: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<NewUserForm>,
) -> PageResult {
    let username = form.username.trim();
    let (password, generated) = password_or_generated(&form.password);
    let result = match parse_role(&form.role) {
        Ok(role) => admin::create_user(&state, &user, username, password, role).await,
        Err(err) => Err(err),
    };
    let created = or_show(result, |n| users_page(&state, &user, n)).await?;
    match generated {
        Some(password) => {
            let notice = Notice {
                password: Some(ShownPassword {
                    username: created.username,
                    password,
                }),
                ..Notice::default()
            };
            users_page(&state, &user, notice).await
        }
        None => Ok(see_other("/admin/users")),
    }
}

/// The "keep API tokens" checkbox of the user forms: ticked is any value but `false`.
fn keep_tokens(field: Option<&str>) -> bool {
    field.is_some_and(|value| !value.is_empty() && value != "false")
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    pub role: String,
    /// Ticked: a new role keeps the user's API tokens (sessions end either way).
    #[serde(default)]
    pub keep_tokens: Option<String>,
}

pub async fn set_role(
    State(state): State<AppState>,
    Path(username): Path<String>,
    CsrfForm { user, form }: CsrfForm<RoleForm>,
) -> PageResult {
    let result = match parse_role(&form.role) {
        Ok(role) => {
            let change = UserChange {
                role: Some(role),
                keep_tokens: keep_tokens(form.keep_tokens.as_deref()),
                ..UserChange::default()
            };
            admin::update_user(&state, &user, &username, change).await
        }
        Err(err) => Err(err),
    };
    or_show(result, |n| users_page(&state, &user, n)).await?;
    Ok(see_other("/admin/users"))
}

#[derive(Debug, Deserialize)]
pub struct DisabledForm {
    /// "true" to disable, "false" to enable.
    pub disabled: String,
    /// Ticked: disabling keeps the user's API tokens (they work again once enabled).
    #[serde(default)]
    pub keep_tokens: Option<String>,
}

pub async fn set_disabled(
    State(state): State<AppState>,
    Path(username): Path<String>,
    CsrfForm { user, form }: CsrfForm<DisabledForm>,
) -> PageResult {
    let result = match form.disabled.as_str() {
        "true" | "false" => {
            let change = UserChange {
                disabled: Some(form.disabled == "true"),
                keep_tokens: keep_tokens(form.keep_tokens.as_deref()),
                ..UserChange::default()
            };
            admin::update_user(&state, &user, &username, change).await
        }
        other => Err(ApiError::BadRequest(format!(
            "disabled must be true or false, not {other:?}"
        ))),
    };
    or_show(result, |n| users_page(&state, &user, n)).await?;
    Ok(see_other("/admin/users"))
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    /// Empty: generate one and show it once.
    #[serde(default)]
    pub password: String,
    /// Ticked: the new password keeps the user's API tokens (sessions end either way).
    #[serde(default)]
    pub keep_tokens: Option<String>,
}

pub async fn reset_password(
    State(state): State<AppState>,
    Path(username): Path<String>,
    CsrfForm { user, form }: CsrfForm<PasswordForm>,
) -> PageResult {
    let (password, generated) = password_or_generated(&form.password);
    let change = UserChange {
        password: Some(password),
        keep_tokens: keep_tokens(form.keep_tokens.as_deref()),
        ..UserChange::default()
    };
    let result = admin::update_user(&state, &user, &username, change).await;
    let updated = or_show(result, |n| users_page(&state, &user, n)).await?;
    match generated {
        Some(password) => {
            let notice = Notice {
                password: Some(ShownPassword {
                    username: updated.username,
                    password,
                }),
                ..Notice::default()
            };
            users_page(&state, &user, notice).await
        }
        None => Ok(see_other("/admin/users")),
    }
}
