//! The UI's actions: each is a form post read through [`CsrfForm`] (so the CSRF token is
//! always checked), runs the shared action (role check, store operation, audit entry) and
//! redirects back to the page it came from.

use axum::extract::{Path, State};
use chrono::Utc;
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::TaskState;
use nightshift_store::MarkRequest;
use serde::Deserialize;
use serde_json::json;

use super::{dag_path, run_path, see_other, task_path, PageResult};
use crate::actions;
use crate::auth::CsrfForm;
use crate::error::ApiError;
use crate::lookup::load_dag;
use crate::AppState;

/// A checkbox: present (any value) means on.
fn on(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| !v.is_empty() && v != "false")
}

#[derive(Debug, Deserialize)]
pub struct PauseForm {
    /// "true" to pause, "false" to unpause.
    pub paused: String,
    /// Where to go afterwards (a path on this site).
    pub back: Option<String>,
}

/// Only paths on this site, so a form cannot send people elsewhere.
fn local(back: Option<&str>, fallback: &str) -> String {
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

pub async fn cancel(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    CsrfForm { user, .. }: CsrfForm<Empty>,
) -> PageResult {
    actions::cancel(&state, &user, &dag_id, &run_id).await?;
    Ok(see_other(&run_path(&dag_id, &run_id)))
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

#[derive(Debug, Deserialize)]
pub struct ClearForm {
    /// Empty: every task of the run.
    pub task_id: Option<String>,
    pub downstream: Option<String>,
    pub upstream: Option<String>,
    pub only_failed: Option<String>,
    pub back: Option<String>,
}

pub async fn clear(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    CsrfForm { user, form }: CsrfForm<ClearForm>,
) -> PageResult {
    let task_ids = match form.task_id.as_deref().filter(|t| !t.is_empty()) {
        Some(task_id) => vec![task_id.to_owned()],
        None => {
            let (_, dag) = load_dag(&state.store, &dag_id).await?;
            dag.tasks.keys().cloned().collect()
        }
    };
    let selection = ClearSelection {
        task_ids,
        downstream: on(&form.downstream),
        upstream: on(&form.upstream),
        only_failed: on(&form.only_failed),
    };
    actions::clear(&state, &user, &dag_id, &run_id, selection, false).await?;
    Ok(see_other(&local(
        form.back.as_deref(),
        &run_path(&dag_id, &run_id),
    )))
}

#[derive(Debug, Deserialize)]
pub struct MarkForm {
    /// success or failed
    pub state: String,
    /// Empty: every map index.
    pub map_index: Option<String>,
}

pub async fn mark(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    CsrfForm { user, form }: CsrfForm<MarkForm>,
) -> PageResult {
    let new_state: TaskState = form
        .state
        .parse()
        .map_err(|_| ApiError::BadRequest("state must be success or failed".into()))?;
    let map_index = match form.map_index.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(
            m.parse::<i32>()
                .map_err(|_| ApiError::BadRequest(format!("map_index {m:?} is not a number")))?,
        ),
        None => None,
    };
    let request = MarkRequest {
        task_id,
        map_index,
        state: new_state,
        dry_run: false,
        now: Utc::now(),
    };
    actions::mark(&state, &user, &dag_id, &run_id, &request).await?;
    Ok(see_other(&task_path(
        &dag_id,
        &run_id,
        &request.task_id,
        map_index.unwrap_or(-1),
    )))
}

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
