//! The actions a person takes, shared by the API and the UI: check the role, call the
//! store's operations (`store/src/ops.rs`), and write one audit entry (who, what, where
//! from, on which DAG/run/task). Dry runs compute what would change without writing.

use chrono::{DateTime, Utc};
use nightshift_core::limits::RunLimits;
use nightshift_core::plan::{plan_clear, ClearSelection};
use nightshift_store::{
    instance_views, AuditEntry, DagRecord, DagRun, MarkRequest, Role, RunType, TaskInstance,
    TriggerParams, Wake,
};
use serde_json::{json, Value};

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::lookup::{load_dag, load_run};
use crate::AppState;

/// Where an action applies, for the audit log.
#[derive(Debug, Clone, Default)]
struct Target<'a> {
    dag_id: Option<&'a str>,
    run_id: Option<&'a str>,
    task_id: Option<&'a str>,
}

async fn audit(
    state: &AppState,
    user: &CurrentUser,
    action: &str,
    target: Target<'_>,
    details: Value,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&AuditEntry {
            ts: Utc::now(),
            actor: user.username.clone(),
            action: action.to_owned(),
            dag_id: target.dag_id.map(str::to_owned),
            run_id: target.run_id.map(str::to_owned),
            task_id: target.task_id.map(str::to_owned),
            ip: user.ip.clone(),
            details,
        })
        .await?;
    Ok(())
}

/// Pauses or unpauses a DAG.
pub async fn set_paused(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    paused: bool,
) -> Result<DagRecord, ApiError> {
    user.require(Role::Operator)?;
    let record = state.store.set_paused(dag_id, paused, Utc::now()).await?;
    if !paused {
        state.store.wake(Wake::Scheduler).await;
    }
    let action = if paused { "dag.pause" } else { "dag.unpause" };
    let target = Target {
        dag_id: Some(dag_id),
        ..Target::default()
    };
    audit(state, user, action, target, json!({})).await?;
    Ok(record)
}

/// What a person asks for when triggering a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerRequest {
    pub run_id: Option<String>,
    pub logical_date: Option<DateTime<Utc>>,
    pub conf: Option<Value>,
}

/// A run id given by a person, held to `limits` (letters, digits and `_.~:+-`, as Airflow
/// allows and the OpenAPI document's pattern says; not `.` or `..`; not too long).
pub fn check_run_id(limits: &RunLimits, run_id: &str) -> Result<(), ApiError> {
    limits
        .check_run_id(run_id)
        .map_err(|err| ApiError::BadRequest(err.to_string()))
}

/// Every problem [`nightshift_core::params::check_conf`] found, as one message.
pub fn conf_errors(errors: &[nightshift_core::params::ConfError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// Triggers a manual run; its conf must match the DAG's `params` (a 400 naming the param).
pub async fn trigger(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    request: TriggerRequest,
) -> Result<DagRun, ApiError> {
    user.require(Role::Operator)?;
    let (_, dag) = load_dag(&state.store, dag_id).await?;
    let limits = &state.settings.run_limits;
    if let Some(run_id) = &request.run_id {
        check_run_id(limits, run_id)?;
    }
    let conf = request.conf.unwrap_or_else(|| json!({}));
    limits
        .check_conf(&conf)
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    dag.check_conf(&conf)
        .map_err(|errors| ApiError::BadRequest(conf_errors(&errors)))?;
    let params = TriggerParams {
        run_id: request.run_id,
        logical_date: request.logical_date,
        data_interval: None,
        conf: conf.clone(),
        run_type: RunType::Manual,
        now: Utc::now(),
    };
    let run = state.store.trigger_run(&dag, &params).await?;
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(&run.run_id),
        ..Target::default()
    };
    audit(state, user, "run.trigger", target, json!({ "conf": conf })).await?;
    Ok(run)
}

/// Clears task instances of one run (or, with `dry_run`, lists what would be cleared).
pub async fn clear(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    selection: ClearSelection,
    dry_run: bool,
) -> Result<Vec<TaskInstance>, ApiError> {
    user.require(Role::Operator)?;
    let (_, dag) = load_dag(&state.store, dag_id).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    for task_id in &selection.task_ids {
        if !dag.tasks.contains_key(task_id) {
            return Err(ApiError::not_found("task", format!("{dag_id}.{task_id}")));
        }
    }
    if dry_run {
        let instances = state.store.list_task_instances(run.id).await?;
        let actions = plan_clear(&dag, &instance_views(&instances), &selection);
        return Ok(instances
            .into_iter()
            .filter(|ti| actions.iter().any(|a| a.id == ti.id))
            .collect());
    }
    let cleared = state
        .store
        .clear_task_instances(&dag, &run, &selection, Utc::now())
        .await?;
    let task_id = match selection.task_ids.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        task_id,
    };
    let details = json!({
        "task_ids": selection.task_ids,
        "downstream": selection.downstream,
        "upstream": selection.upstream,
        "only_failed": selection.only_failed,
        "cleared": cleared.len(),
    });
    audit(state, user, "task.clear", target, details).await?;
    Ok(cleared)
}

/// Marks the instances of a task in one run (one map index or all) success or failed, or
/// with `request.dry_run` lists what that would change: the store's one plan either way.
pub async fn mark(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    request: &MarkRequest,
) -> Result<Vec<TaskInstance>, ApiError> {
    user.require(Role::Operator)?;
    request.event()?;
    let (_, dag) = load_dag(&state.store, dag_id).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    let marked = state.store.mark_task_instances(&dag, &run, request).await?;
    if request.dry_run {
        return Ok(marked);
    }
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        task_id: Some(&request.task_id),
    };
    let action = format!("task.mark_{}", request.state);
    let details = json!({ "map_index": request.map_index, "marked": marked.len() });
    audit(state, user, &action, target, details).await?;
    Ok(marked)
}

/// Cancels a run: unfinished instances fail or are skipped, the run fails.
pub async fn cancel(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
) -> Result<DagRun, ApiError> {
    user.require(Role::Operator)?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    let cancelled = state.store.cancel_run(&run, Utc::now()).await?;
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        ..Target::default()
    };
    audit(state, user, "run.cancel", target, json!({})).await?;
    Ok(cancelled)
}

/// Records an administrative action (pools, users, tokens).
pub async fn audit_admin(
    state: &AppState,
    user: &CurrentUser,
    action: &str,
    details: Value,
) -> Result<(), ApiError> {
    audit(state, user, action, Target::default(), details).await
}
