//! The trigger form: one typed input per DAG param (a JSON box for a DAG without params),
//! the DAG's recent confs to re-use, and every error shown inline on the same form with
//! what was entered kept. The conf is checked by the same code as the API's and the CLI's
//! ([`nightshift_core::params::check_conf`]).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use nightshift_core::dag::Dag;
use nightshift_core::params::{input_text, ParamSpec, ParamType};
use nightshift_store::{RunFilter, RunType};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::contexts::{ParamField, ParamOption, RecentConf, TriggerPage};
use super::{dag_path, render, run_path, see_other, urlencode, Layout, PageResult};
use crate::actions::{self, check_run_id, TriggerRequest};
use crate::auth::{CsrfForm, CurrentUser};
use crate::error::ApiError;
use crate::lookup::load_dag;
use crate::AppState;

/// The form field of param `name`.
fn field_name(name: &str) -> String {
    format!("param.{name}")
}

/// How many of the DAG's recent distinct confs the form offers.
const RECENT_CONFS: usize = 5;
/// How many manual runs are looked at to find them.
const RECENT_RUNS: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct Prefill {
    /// A conf (JSON) to start from: a recent run's.
    pub conf: Option<String>,
}

pub async fn form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(prefill): Query<Prefill>,
) -> PageResult {
    let (record, dag) = load_dag(&state.store, &dag_id).await?;
    let start: Map<String, Value> = prefill
        .conf
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut entry = Entry::default();
    let specs = dag.param_specs();
    if specs.is_empty() {
        entry.conf = serde_json::to_string_pretty(&start).unwrap_or_default();
    }
    for (name, spec) in &specs {
        let value = start.get(name).unwrap_or(&spec.default);
        entry.texts.insert(name.clone(), shown(spec, value));
    }
    let page = page(&state, &user, &record.dag_id, &dag, entry).await?;
    Ok(render(&page)?.into_response())
}

/// What the form showed or was sent, and the errors to show beside it.
#[derive(Debug, Default)]
struct Entry {
    run_id: String,
    /// Each param's input text.
    texts: BTreeMap<String, String>,
    /// The JSON box (a DAG without params).
    conf: String,
    /// Errors by param.
    errors: BTreeMap<String, String>,
    run_id_error: Option<String>,
    conf_error: Option<String>,
    error: Option<String>,
}

/// `value` as param `spec`'s input shows it.
fn shown(spec: &ParamSpec, value: &Value) -> String {
    match spec.kind {
        ParamType::Json if spec.values.is_empty() => {
            serde_json::to_string_pretty(value).unwrap_or_default()
        }
        _ => input_text(value),
    }
}

fn field(name: &str, spec: &ParamSpec, entry: &Entry) -> ParamField {
    let value = entry
        .texts
        .get(name)
        .cloned()
        .unwrap_or_else(|| shown(spec, &spec.default));
    let input = if !spec.values.is_empty() {
        "select"
    } else {
        match spec.kind {
            ParamType::String | ParamType::Datetime => "text",
            ParamType::Integer | ParamType::Number => "number",
            ParamType::Boolean => "checkbox",
            ParamType::Date => "date",
            ParamType::Json => "textarea",
        }
    };
    let options = spec
        .values
        .iter()
        .map(|v| {
            let text = input_text(v);
            ParamOption {
                selected: text == value,
                value: text,
            }
        })
        .collect();
    ParamField {
        name: name.to_owned(),
        input_name: field_name(name),
        id: format!("param-{}", urlencode(name)),
        kind: spec.kind.name().to_owned(),
        input: input.to_owned(),
        step: match spec.kind {
            ParamType::Integer => Some("1".to_owned()),
            ParamType::Number => Some("any".to_owned()),
            _ => None,
        },
        placeholder: (spec.kind == ParamType::Datetime).then(|| "2026-03-01T02:00:00Z".to_owned()),
        checked: matches!(value.as_str(), "true" | "on"),
        default: input_text(&spec.default),
        description: spec.description.clone(),
        error: entry.errors.get(name).cloned(),
        options,
        value,
    }
}

async fn page(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    dag: &Dag,
    entry: Entry,
) -> Result<TriggerPage, ApiError> {
    let fields = dag
        .param_specs()
        .iter()
        .map(|(name, spec)| field(name, spec, &entry))
        .collect();
    let dag_href = dag_path(dag_id);
    Ok(TriggerPage {
        layout: Layout::new(format!("Trigger {dag_id}"), user),
        dag_id: dag_id.to_owned(),
        recent: recent_confs(state, dag_id, &dag_href).await?,
        dag_href,
        run_id: entry.run_id,
        run_id_error: entry.run_id_error,
        fields,
        conf: entry.conf,
        conf_error: entry.conf_error,
        error: entry.error,
    })
}

/// The DAG's latest distinct non-empty manual confs, each a link that prefills the form.
async fn recent_confs(
    state: &AppState,
    dag_id: &str,
    dag_href: &str,
) -> Result<Vec<RecentConf>, ApiError> {
    let filter = RunFilter {
        dag_id: Some(dag_id.to_owned()),
        run_type: Some(RunType::Manual),
        limit: Some(RECENT_RUNS),
        ..RunFilter::default()
    };
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for run in state.store.list_runs(&filter).await? {
        let empty = run.conf.as_object().is_none_or(Map::is_empty);
        if empty || seen.contains(&run.conf) {
            continue;
        }
        let text = run.conf.to_string();
        out.push(RecentConf {
            run_id: run.run_id.clone(),
            run_href: run_path(dag_id, &run.run_id),
            href: format!("{dag_href}/trigger?conf={}", urlencode(&text)),
            conf: text,
        });
        seen.push(run.conf);
        if out.len() == RECENT_CONFS {
            break;
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct TriggerForm {
    #[serde(default)]
    pub conf: String,
    pub run_id: Option<String>,
    /// The param inputs (`param.<name>`), and the CSRF token.
    #[serde(flatten)]
    pub fields: BTreeMap<String, String>,
}

pub async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    CsrfForm { user, form }: CsrfForm<TriggerForm>,
) -> PageResult {
    user.require(nightshift_store::Role::Operator)?;
    let (record, dag) = load_dag(&state.store, &dag_id).await?;
    let specs = dag.param_specs();
    let mut entry = Entry {
        run_id: form.run_id.clone().unwrap_or_default(),
        conf: form.conf.clone(),
        ..Entry::default()
    };
    let conf = if specs.is_empty() {
        read_json_box(&form.conf, &mut entry)
    } else {
        let mut conf = Map::new();
        for (name, spec) in &specs {
            // An unticked checkbox is not sent.
            let text = form.fields.get(&field_name(name)).cloned();
            let text = text.unwrap_or_else(|| match spec.kind {
                ParamType::Boolean if spec.values.is_empty() => "false".to_owned(),
                _ => String::new(),
            });
            match spec.parse_input(&text) {
                Ok(value) => {
                    conf.insert(name.clone(), value);
                }
                Err(message) => {
                    entry.errors.insert(name.clone(), message);
                }
            }
            entry.texts.insert(name.clone(), text);
        }
        Value::Object(conf)
    };
    if let Err(errors) = dag.check_conf(&conf) {
        for e in errors {
            match e.param {
                Some(param) if specs.contains_key(&param) => {
                    entry.errors.entry(param).or_insert(e.message);
                }
                _ => entry.conf_error = Some(e.to_string()),
            }
        }
    }
    let run_id = form.run_id.filter(|r| !r.trim().is_empty());
    if let Some(run_id) = &run_id {
        if let Err(err) = check_run_id(&state.settings.run_limits, run_id) {
            entry.run_id_error = Some(err.to_string());
        }
    }
    if !entry.errors.is_empty() || entry.run_id_error.is_some() || entry.conf_error.is_some() {
        entry.error = Some("The run was not triggered: see the errors below.".to_owned());
        return refused(
            &state,
            &user,
            &record.dag_id,
            &dag,
            entry,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let request = TriggerRequest {
        run_id,
        logical_date: None,
        conf: Some(conf),
    };
    match actions::trigger(&state, &user, &dag_id, request).await {
        Ok(run) => Ok(see_other(&run_path(&dag_id, &run.run_id))),
        Err(ApiError::Conflict(message)) => {
            entry.run_id_error = Some(message);
            entry.error = Some("The run was not triggered: see the errors below.".to_owned());
            refused(
                &state,
                &user,
                &record.dag_id,
                &dag,
                entry,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(ApiError::BadRequest(message)) => {
            entry.error = Some(message);
            refused(
                &state,
                &user,
                &record.dag_id,
                &dag,
                entry,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// The JSON box of a DAG without params; an error is kept in `entry`.
fn read_json_box(text: &str, entry: &mut Entry) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(conf) => conf,
        Err(err) => {
            entry.conf_error = Some(format!("conf is not valid JSON: {err}"));
            Value::Null
        }
    }
}

/// The form again, with what was entered and the errors, under `status`.
async fn refused(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    dag: &Dag,
    entry: Entry,
    status: StatusCode,
) -> PageResult {
    let page = page(state, user, dag_id, dag, entry).await?;
    let mut response = render(&page)?.into_response();
    *response.status_mut() = status;
    Ok(response)
}
