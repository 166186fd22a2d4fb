//! The actions a person takes, shared by the API and the UI: check the role, call the
//! store's operations (`store/src/ops.rs`), and write one audit entry (who, what, where
//! from, on which DAG/run/task). Dry runs compute what would change without writing.
//!
//! Clear, mark and cancel are each a plan first (`plan_clear`, `plan_mark`,
//! `plan_cancel`): the list a confirmation shows, with its [`fingerprint`]. The action
//! computes the plan again with the same code and, given the fingerprint the person saw,
//! refuses (409) when it no longer matches, so it changes exactly what was listed.

use chrono::{DateTime, Utc};
use nightshift_core::limits::RunLimits;
use nightshift_core::plan::ClearSelection;
use nightshift_store::{
    AuditEntry, ClearPlan, DagRecord, DagRun, MarkPlan, MarkRequest, PlannedChange, Role, RunType,
    TaskInstance, TriggerParams, Wake,
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

/// A plan's identity as a confirmation showed it: each change's instance, its state and
/// try as planned, and its new state. Equal fingerprints mean the same changes.
pub fn fingerprint(changes: &[PlannedChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| {
            let ti = &c.instance;
            format!("{}:{}:{}>{}", ti.id, ti.state, ti.try_number, c.to)
        })
        .collect();
    parts.join(",")
}

/// Refuses an action whose plan is no longer the one its confirmation listed.
fn check_expected(changes: &[PlannedChange], expected: Option<&str>) -> Result<(), ApiError> {
    match expected {
        Some(seen) if seen != fingerprint(changes) => Err(ApiError::Conflict(
            "the task instances changed since this list was made: check the new list and \
             confirm again"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The changes for the audit entry: every instance with its old and new state (the first
/// 500 of a fan-out; `changed` counts them all).
fn audit_changes(changes: &[PlannedChange]) -> Value {
    let listed: Vec<Value> = changes
        .iter()
        .take(500)
        .map(|c| {
            json!({
                "task_id": c.instance.task_id,
                "map_index": c.instance.map_index,
                "try_number": c.instance.try_number,
                "from": c.instance.state,
                "to": c.to,
            })
        })
        .collect();
    Value::Array(listed)
}

/// What clearing `selection` in one run would change (the confirmation's list).
pub async fn plan_clear(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    selection: &ClearSelection,
) -> Result<ClearPlan, ApiError> {
    user.require(Role::Operator)?;
    let (_, dag) = load_dag(&state.store, dag_id).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    for task_id in &selection.task_ids {
        if !dag.tasks.contains_key(task_id) {
            return Err(ApiError::not_found("task", format!("{dag_id}.{task_id}")));
        }
    }
    Ok(state
        .store
        .plan_clear(&dag, &run, selection, Utc::now())
        .await?)
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
    if dry_run {
        let plan = plan_clear(state, user, dag_id, run_id, &selection).await?;
        return Ok(plan.changes().iter().map(|c| c.instance.clone()).collect());
    }
    clear_confirmed(state, user, dag_id, run_id, selection, None).await
}

/// Clears what [`plan_clear`] lists; with `expected` (the [`fingerprint`] a confirmation
/// showed), only if the plan is still that one.
pub async fn clear_confirmed(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    selection: ClearSelection,
    expected: Option<&str>,
) -> Result<Vec<TaskInstance>, ApiError> {
    let plan = plan_clear(state, user, dag_id, run_id, &selection).await?;
    check_expected(plan.changes(), expected)?;
    let cleared = state.store.apply_clear(&plan).await?;
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
        "keep_version": selection.keep_version,
        "cleared": cleared.len(),
        "changes": audit_changes(plan.changes()),
    });
    audit(state, user, "task.clear", target, details).await?;
    Ok(cleared)
}

/// What marking `request` would change: the marks and the downstream resets.
pub async fn plan_mark(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    request: &MarkRequest,
) -> Result<MarkPlan, ApiError> {
    user.require(Role::Operator)?;
    request.event()?;
    let (_, dag) = load_dag(&state.store, dag_id).await?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    Ok(state.store.plan_mark(&dag, &run, request).await?)
}

/// Marks the instances of a task in one run (one map index or all) success or failed, or
/// with `request.dry_run` lists the instances that would change: the store's one plan
/// either way. Both return every instance the plan changes, the marked ones first, then
/// the downstream it resets to `pending` (as stored before for a dry run, as written after).
pub async fn mark(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    request: &MarkRequest,
) -> Result<Vec<TaskInstance>, ApiError> {
    mark_confirmed(state, user, dag_id, run_id, request, None).await
}

/// Applies what [`plan_mark`] lists; with `expected` (the [`fingerprint`] a confirmation
/// showed), only if the plan is still that one. The audit entry records who marked what,
/// when, and every instance it changed.
pub async fn mark_confirmed(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    request: &MarkRequest,
    expected: Option<&str>,
) -> Result<Vec<TaskInstance>, ApiError> {
    let plan = plan_mark(state, user, dag_id, run_id, request).await?;
    if request.dry_run {
        return Ok([plan.marks(), plan.resets()].concat());
    }
    let changes = plan.changes();
    check_expected(&changes, expected)?;
    let written = state.store.apply_mark(&plan).await?;
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        task_id: Some(&request.task_id),
    };
    let action = format!("task.mark_{}", request.state);
    let details = json!({
        "map_index": request.map_index,
        "marked": plan.marks().len(),
        "reset": plan.resets().len(),
        "changes": audit_changes(&changes),
    });
    audit(state, user, &action, target, details).await?;
    Ok(written)
}

/// What cancelling a run would change: its unfinished instances and their new states.
pub async fn plan_cancel(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
) -> Result<(DagRun, Vec<PlannedChange>), ApiError> {
    user.require(Role::Operator)?;
    let run = load_run(&state.store, dag_id, run_id).await?;
    let changes = state.store.plan_cancel(&run).await?;
    Ok((run, changes))
}

/// Cancels a run: unfinished instances fail or are skipped, the run fails.
pub async fn cancel(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
) -> Result<DagRun, ApiError> {
    cancel_confirmed(state, user, dag_id, run_id, None).await
}

/// [`cancel`], only if [`plan_cancel`] still lists what the confirmation showed.
pub async fn cancel_confirmed(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    expected: Option<&str>,
) -> Result<DagRun, ApiError> {
    let (run, changes) = plan_cancel(state, user, dag_id, run_id).await?;
    if run.state.is_finished() {
        // Say why first: the list is empty because the run already ended.
        return Err(ApiError::Conflict(format!(
            "the run is already {}",
            run.state
        )));
    }
    check_expected(&changes, expected)?;
    let cancelled = state.store.cancel_run(&run, Utc::now()).await?;
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        ..Target::default()
    };
    let details = json!({ "changes": audit_changes(&changes) });
    audit(state, user, "run.cancel", target, details).await?;
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

/// The longest comment a decision keeps.
pub const MAX_APPROVAL_COMMENT: usize = 2000;

/// What a person decides on an approval awaiting input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: i32,
    pub approve: bool,
    pub comment: Option<&'a str>,
}

/// Approves or rejects an `approval` instance awaiting input (operators and admins): the
/// store writes the decision, its audit entry (who, when, the comment, from where) and
/// its output in one transaction. 409 when the instance does not await input (already
/// decided, cleared, not asked yet).
pub async fn decide_approval(
    state: &AppState,
    user: &CurrentUser,
    req: &ApprovalRequest<'_>,
) -> Result<TaskInstance, ApiError> {
    use nightshift_core::approval::Decision;
    use nightshift_core::state::TaskState;
    user.require(Role::Operator)?;
    if req
        .comment
        .is_some_and(|c| c.chars().count() > MAX_APPROVAL_COMMENT)
    {
        return Err(ApiError::BadRequest(format!(
            "the comment is longer than {MAX_APPROVAL_COMMENT} characters"
        )));
    }
    let (_, dag) = load_dag(&state.store, req.dag_id).await?;
    let run = load_run(&state.store, req.dag_id, req.run_id).await?;
    let ti =
        crate::lookup::load_task_instance(&state.store, &run, req.task_id, req.map_index).await?;
    let task = dag
        .tasks
        .get(req.task_id)
        .filter(|t| nightshift_core::approval::of(t).is_some())
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "task {} of DAG {} is not an approval",
                req.task_id, req.dag_id
            ))
        })?;
    if ti.state != TaskState::AwaitingInput {
        return Err(ApiError::Conflict(format!(
            "task {} does not await input: it is {}",
            req.task_id, ti.state
        )));
    }
    let decision = Decision::by_person(req.approve, &user.username, req.comment, Utc::now());
    let request = nightshift_store::ApprovalDecision::new(ti, run.run_id.clone(), task, decision)
        .ip(user.ip.clone());
    Ok(state.store.decide_approval(&request).await?)
}
