//! The UI's simple actions (pause, API tokens): each is a form post read through
//! [`CsrfForm`] (so the CSRF token is always checked), runs the shared action (role check,
//! store operation, audit entry) and redirects back to the page it came from. Clear, mark
//! and cancel, which confirm what they change first, are in `ui::confirm`.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::{dag_path, see_other, PageResult};
use crate::actions;
use crate::auth::CsrfForm;
use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct PauseForm {
    /// "true" to pause, "false" to unpause.
    pub paused: String,
    /// Where to go afterwards (a path on this site).
    pub back: Option<String>,
}

/// Only paths on this site, so a form cannot send people elsewhere.
pub(super) fn local(back: Option<&str>, fallback: &str) -> String {
    match back {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path.to_owned(),
        _ => fallback.to_owned(),
    }
}

pub async fn pause(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    CsrfForm { user, form }: CsrfForm<PauseForm>,
) -> PageResult {
    let paused = form.paused == "true";
    actions::set_paused(&state, &user, &dag_id, paused).await?;
    Ok(see_other(&local(form.back.as_deref(), &dag_path(&dag_id))))
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub name: String,
}

/// Creates an API token for the signed-in user and shows it once.
pub async fn create_token(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<TokenForm>,
) -> PageResult {
    let name = form.name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("give the token a name".into()).into());
    }
    let secret = crate::auth::create_api_token(&state.store, &user.username, name, None)
        .await
        .map_err(ApiError::internal)?;
    actions::audit_admin(&state, &user, "token.create", json!({ "name": name })).await?;
    super::pages::admin_page(&state, &user, Some(secret)).await
}

pub async fn delete_token(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm { user, .. }: CsrfForm<Empty>,
) -> PageResult {
    state.store.delete_api_token(user.id, id).await?;
    actions::audit_admin(&state, &user, "token.delete", json!({ "id": id })).await?;
    Ok(see_other("/admin"))
}
