//! Clear, mark and cancel from the UI, each in two steps. Opening the action (a GET of
//! the form's address) shows its confirmation: the exact task instances it will change,
//! listed from the action's plan (`actions::plan_clear`, `plan_mark`, `plan_cancel`).
//! Confirming posts the same fields plus the plan's fingerprint; the action plans again
//! with the same code and refuses when the list changed, showing the new list with the
//! reason on the same form. With htmx the confirmation opens as a box on the page the
//! action started from and confirming refreshes that page's live part in place (no
//! reload); without it both steps are ordinary pages. No script of our own is involved.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use chrono::Utc;
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::TaskState;
use nightshift_store::{MarkRequest, PlannedChange};
use serde::Deserialize;

use super::contexts::{
    ChangeRow, CheckOption, Chrome, ConfirmBox, ConfirmPage, Confirmation, HiddenField,
};
use super::forms::local;
use super::{render, run_path, see_other, task_path, Layout, PageError, PageResult};
use crate::actions;
use crate::auth::{CsrfForm, CurrentUser};
use crate::error::ApiError;
use crate::lookup::load_dag;
use crate::AppState;

/// At most this many changes are listed one by one (a fan-out can have thousands); the
/// rest are counted.
const LISTED: usize = 200;

/// The live parts of the pages an action starts from, which confirming refreshes.
const REGIONS: [&str; 2] = ["task-live", "run-live"];

/// A checkbox: present (any value but "false") means on.
fn on(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| !v.is_empty() && v != "false")
}

fn region(value: Option<&str>) -> Option<String> {
    value.filter(|r| REGIONS.contains(r)).map(str::to_owned)
}

/// Whether htmx sent the request (it swaps a fragment into the page).
fn from_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// What the confirmation says about one action, before its changes are listed.
struct Ask {
    title: String,
    intro: String,
    action: String,
    fields: Vec<HiddenField>,
    options: Vec<CheckOption>,
    button: &'static str,
    danger: bool,
    back: String,
    region: Option<String>,
}

fn field(name: &str, value: impl Into<String>) -> HiddenField {
    HiddenField {
        name: name.to_owned(),
        value: value.into(),
    }
}

fn rows(dag_id: &str, run_id: &str, changes: &[PlannedChange]) -> Vec<ChangeRow> {
    changes
        .iter()
        .take(LISTED)
        .map(|c| ChangeRow {
            task_id: c.instance.task_id.clone(),
            map_index: c.instance.map_index,
            try_number: c.instance.try_number,
            from: c.instance.state,
            to: c.to,
            href: task_path(dag_id, run_id, &c.instance.task_id, c.instance.map_index),
        })
        .collect()
}

/// The confirmation of `ask` listing `changes`, with `error` when the last attempt was
/// refused: a box for htmx to swap in (status 200, so htmx swaps it), else a page.
fn confirmation(
    user: &CurrentUser,
    headers: &HeaderMap,
    [dag_id, run_id]: [&str; 2],
    ask: Ask,
    changes: &[PlannedChange],
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let confirm = Confirmation {
        title: ask.title.clone(),
        intro: ask.intro,
        action: ask.action,
        fields: ask.fields,
        options: ask.options,
        expect: actions::fingerprint(changes),
        csrf: Chrome::of(user).csrf,
        changes: rows(dag_id, run_id, changes),
        more: changes.len().saturating_sub(LISTED),
        total: changes.len(),
        error,
        back: ask.back,
        region: ask.region,
        button: ask.button.to_owned(),
        danger: ask.danger,
        overlay: from_htmx(headers),
    };
    if confirm.overlay {
        let html = render(&ConfirmBox { confirm })?;
        let mut response = (StatusCode::OK, html).into_response();
        if status != StatusCode::OK {
            // A refused confirmation: only the box changes (it is swapped out of band).
            response
                .headers_mut()
                .insert("hx-reswap", HeaderValue::from_static("none"));
        }
        return Ok(response);
    }
    let page = ConfirmPage {
        layout: Layout::new(ask.title, user),
        confirm,
    };
    Ok((status, render(&page)?).into_response())
}

/// Whether a refused action is shown on its confirmation (the person can act on the
/// reason there) rather than as an error page.
fn shown_inline(err: &ApiError) -> bool {
    matches!(err, ApiError::Conflict(_) | ApiError::BadRequest(_))
}

/// The fields of a clear: its confirmation's query, and its form.
#[derive(Debug, Deserialize)]
pub struct ClearForm {
    /// Empty: every task of the run.
    pub task_id: Option<String>,
    pub downstream: Option<String>,
    pub upstream: Option<String>,
    pub only_failed: Option<String>,
    /// Run the run's version of the DAG rather than the current one.
    pub keep_version: Option<String>,
    pub back: Option<String>,
    /// The live part of the page to refresh after confirming (htmx).
    pub region: Option<String>,
    /// The plan's fingerprint the confirmation showed.
    pub expect: Option<String>,
}

impl ClearForm {
    async fn selection(&self, state: &AppState, dag_id: &str) -> Result<ClearSelection, ApiError> {
        let task_ids = match self.task_id.as_deref().filter(|t| !t.is_empty()) {
            Some(task_id) => vec![task_id.to_owned()],
            None => {
                let (_, dag) = load_dag(&state.store, dag_id).await?;
                dag.tasks.keys().cloned().collect()
            }
        };
        Ok(ClearSelection {
            task_ids,
            downstream: on(&self.downstream),
            upstream: on(&self.upstream),
            only_failed: on(&self.only_failed),
            keep_version: on(&self.keep_version),
        })
    }

    fn ask(&self, dag_id: &str, run_id: &str, selection: &ClearSelection) -> Ask {
        let run_href = run_path(dag_id, run_id);
        let what = match self.task_id.as_deref().filter(|t| !t.is_empty()) {
            Some(task_id) => format!("Retry {task_id}"),
            None if selection.only_failed => "Retry the failed tasks".to_owned(),
            None => "Clear the whole run".to_owned(),
        };
        let mut scope = Vec::new();
        if selection.upstream {
            scope.push("its upstream");
        }
        if selection.downstream {
            scope.push("its downstream");
        }
        let intro = format!(
            "Clearing{}{} puts these task instances back to pending with a fresh retry \
             budget, so they run again (a running one is stopped); downstream tasks its \
             failure left behind are included. The run {run_id} runs again.",
            if scope.is_empty() {
                String::new()
            } else {
                format!(" with {}", scope.join(" and "))
            },
            if selection.only_failed {
                ", only failed ones,"
            } else {
                ""
            },
        );
        let mut fields = Vec::new();
        if let Some(task_id) = self.task_id.as_deref().filter(|t| !t.is_empty()) {
            fields.push(field("task_id", task_id));
        }
        for (name, value) in [
            ("downstream", selection.downstream),
            ("upstream", selection.upstream),
            ("only_failed", selection.only_failed),
        ] {
            if value {
                fields.push(field(name, "on"));
            }
        }
        let back = local(self.back.as_deref(), &run_href);
        fields.push(field("back", back.clone()));
        let region = region(self.region.as_deref());
        if let Some(r) = &region {
            fields.push(field("region", r.clone()));
        }
        Ask {
            title: what,
            intro,
            action: format!("{run_href}/clear"),
            fields,
            options: vec![CheckOption {
                name: "keep_version".to_owned(),
                label: "Keep the run's version: run the DAG's definition as it was when the \
                        run was created, not the version loaded now (the default)"
                    .to_owned(),
                checked: selection.keep_version,
            }],
            button: "Confirm: clear",
            danger: false,
            back,
            region,
        }
    }
}

/// The confirmation of a clear (retry, ± upstream/downstream, only failed, whole run).
pub async fn confirm_clear(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path((dag_id, run_id)): Path<(String, String)>,
    Query(form): Query<ClearForm>,
) -> PageResult {
    let selection = form.selection(&state, &dag_id).await?;
    let plan = actions::plan_clear(&state, &user, &dag_id, &run_id, &selection).await?;
    let ask = form.ask(&dag_id, &run_id, &selection);
    confirmation(
        &user,
        &headers,
        [&dag_id, &run_id],
        ask,
        plan.changes(),
        None,
        StatusCode::OK,
    )
}

/// Clears, as confirmed; a refusal (the list changed, a conflict) shows the confirmation
/// again with the reason and the current list.
pub async fn clear(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, run_id)): Path<(String, String)>,
    CsrfForm { user, form }: CsrfForm<ClearForm>,
) -> PageResult {
    let selection = form.selection(&state, &dag_id).await?;
    let expect = form.expect.as_deref();
    let done =
        actions::clear_confirmed(&state, &user, &dag_id, &run_id, selection.clone(), expect).await;
    match done {
        Ok(_) => Ok(see_other(&local(
            form.back.as_deref(),
            &run_path(&dag_id, &run_id),
        ))),
        Err(err) if shown_inline(&err) => {
            let plan = actions::plan_clear(&state, &user, &dag_id, &run_id, &selection).await?;
            let ask = form.ask(&dag_id, &run_id, &selection);
            let status = err.status();
            let ids = [dag_id.as_str(), run_id.as_str()];
            confirmation(
                &user,
                &headers,
                ids,
                ask,
                plan.changes(),
                Some(err.to_string()),
                status,
            )
        }
        Err(err) => Err(err.into()),
    }
}

/// The fields of a mark: its confirmation's query, and its form.
#[derive(Debug, Deserialize)]
pub struct MarkForm {
    /// success or failed
    pub state: String,
    /// Empty: every map index.
    pub map_index: Option<String>,
    pub back: Option<String>,
    pub region: Option<String>,
    pub expect: Option<String>,
}

impl MarkForm {
    fn request(&self, task_id: &str) -> Result<MarkRequest, ApiError> {
        let state: TaskState = self
            .state
            .parse()
            .map_err(|_| ApiError::BadRequest("state must be success or failed".into()))?;
        let map_index =
            match self.map_index.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => Some(m.parse::<i32>().map_err(|_| {
                    ApiError::BadRequest(format!("map_index {m:?} is not a number"))
                })?),
                None => None,
            };
        let request = MarkRequest {
            task_id: task_id.to_owned(),
            map_index,
            state,
            dry_run: false,
            now: Utc::now(),
        };
        request.event()?;
        Ok(request)
    }

    fn ask(&self, dag_id: &str, run_id: &str, request: &MarkRequest) -> Ask {
        let task_id = &request.task_id;
        let target = match request.map_index {
            Some(m) if m >= 0 => format!("{task_id} [{m}]"),
            _ => task_id.clone(),
        };
        let intro = if request.state == TaskState::Success {
            format!(
                "Marking {target} success records it as done without running it (a try \
                 keeps its recorded start and end; a running one is stopped now). \
                 Downstream tasks its failure left upstream_failed or skipped go back to \
                 pending and run. The run's state is decided again."
            )
        } else {
            format!(
                "Marking {target} failed records it as failed (a try keeps its recorded \
                 start and end; a running one is stopped now). Downstream tasks that ran \
                 or would run go back to pending, where their trigger rules decide again: \
                 an all_success one becomes upstream_failed, an all_done one runs. The \
                 run's state is decided again."
            )
        };
        let back = local(
            self.back.as_deref(),
            &task_path(dag_id, run_id, task_id, request.map_index.unwrap_or(-1)),
        );
        let mut fields = vec![field("state", request.state.as_str())];
        if let Some(m) = request.map_index {
            fields.push(field("map_index", m.to_string()));
        }
        fields.push(field("back", back.clone()));
        let region = region(self.region.as_deref());
        if let Some(r) = &region {
            fields.push(field("region", r.clone()));
        }
        let success = request.state == TaskState::Success;
        Ask {
            title: format!("Mark {target} {}", request.state),
            intro,
            action: format!(
                "{}/tasks/{}/mark",
                run_path(dag_id, run_id),
                super::urlencode(task_id)
            ),
            fields,
            options: Vec::new(),
            button: if success {
                "Confirm: mark success"
            } else {
                "Confirm: mark failed"
            },
            danger: !success,
            back,
            region,
        }
    }
}

/// The confirmation of a mark.
pub async fn confirm_mark(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(form): Query<MarkForm>,
) -> PageResult {
    let request = form.request(&task_id)?;
    let plan = actions::plan_mark(&state, &user, &dag_id, &run_id, &request).await?;
    let ask = form.ask(&dag_id, &run_id, &request);
    let changes = plan.changes();
    confirmation(
        &user,
        &headers,
        [&dag_id, &run_id],
        ask,
        &changes,
        None,
        StatusCode::OK,
    )
}

/// Marks, as confirmed; a refusal shows the confirmation again with the reason.
pub async fn mark(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    CsrfForm { user, form }: CsrfForm<MarkForm>,
) -> PageResult {
    let request = form.request(&task_id)?;
    let expect = form.expect.as_deref();
    let done = actions::mark_confirmed(&state, &user, &dag_id, &run_id, &request, expect).await;
    match done {
        Ok(_) => {
            let fallback = task_path(&dag_id, &run_id, &task_id, request.map_index.unwrap_or(-1));
            Ok(see_other(&local(form.back.as_deref(), &fallback)))
        }
        Err(err) if shown_inline(&err) => {
            let plan = actions::plan_mark(&state, &user, &dag_id, &run_id, &request).await?;
            let ask = form.ask(&dag_id, &run_id, &request);
            let status = err.status();
            let ids = [dag_id.as_str(), run_id.as_str()];
            let changes = plan.changes();
            confirmation(
                &user,
                &headers,
                ids,
                ask,
                &changes,
                Some(err.to_string()),
                status,
            )
        }
        Err(err) => Err(err.into()),
    }
}

/// The fields of a cancel.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    pub back: Option<String>,
    pub region: Option<String>,
    pub expect: Option<String>,
}

impl CancelForm {
    fn ask(&self, dag_id: &str, run_id: &str) -> Ask {
        let run_href = run_path(dag_id, run_id);
        let back = local(self.back.as_deref(), &run_href);
        let mut fields = vec![field("back", back.clone())];
        let region = region(self.region.as_deref());
        if let Some(r) = &region {
            fields.push(field("region", r.clone()));
        }
        Ask {
            title: format!("Cancel run {run_id}"),
            intro: "Cancelling stops the run: these unfinished task instances fail (a \
                    running one is stopped) or are skipped if they never started, and the \
                    run fails."
                .to_owned(),
            action: format!("{run_href}/cancel"),
            fields,
            options: Vec::new(),
            button: "Confirm: cancel run",
            danger: true,
            back,
            region,
        }
    }
}

/// The confirmation of cancelling a run.
pub async fn confirm_cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path((dag_id, run_id)): Path<(String, String)>,
    Query(form): Query<CancelForm>,
) -> PageResult {
    let (_, changes) = actions::plan_cancel(&state, &user, &dag_id, &run_id).await?;
    let ask = form.ask(&dag_id, &run_id);
    confirmation(
        &user,
        &headers,
        [&dag_id, &run_id],
        ask,
        &changes,
        None,
        StatusCode::OK,
    )
}

/// Cancels, as confirmed; a refusal (the run finished meanwhile, the list changed) shows
/// the confirmation again with the reason.
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, run_id)): Path<(String, String)>,
    CsrfForm { user, form }: CsrfForm<CancelForm>,
) -> PageResult {
    let expect = form.expect.as_deref();
    match actions::cancel_confirmed(&state, &user, &dag_id, &run_id, expect).await {
        Ok(_) => Ok(see_other(&local(
            form.back.as_deref(),
            &run_path(&dag_id, &run_id),
        ))),
        Err(err) if shown_inline(&err) => {
            let (_, changes) = actions::plan_cancel(&state, &user, &dag_id, &run_id).await?;
            let ask = form.ask(&dag_id, &run_id);
            let status = err.status();
            let ids = [dag_id.as_str(), run_id.as_str()];
            confirmation(
                &user,
                &headers,
                ids,
                ask,
                &changes,
                Some(err.to_string()),
                status,
            )
        }
        Err(err) => Err(PageError::Api(err)),
    }
}
