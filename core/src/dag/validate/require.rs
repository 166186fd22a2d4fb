//! `require` tasks: their fields as written, resolved into a [`RequireTask`], and the
//! check that a DAG does not wait for its own run.

use serde::Deserialize;

use super::*;
use crate::dag::{IfMissing, RequireTask, RerunOn};

/// A `require` task as written (besides the common fields).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequire {
    pub dag: Spanned<String>,
    pub logical_date: Option<Spanned<String>>,
    pub task: Option<Spanned<String>>,
    pub if_missing: Option<IfMissing>,
    pub rerun_on: Option<RerunOn>,
    pub ignore_failure: Option<bool>,
    pub poke_interval: Option<Spanned<String>>,
}

pub(super) fn require(
    cx: &mut Ctx<'_>,
    value: Spanned<DeValue<'_>>,
    known: &[&str],
) -> Option<RequireTask> {
    let raw: RawRequire = cx.de(value, known)?;
    let mut ok = true;
    if let Err(reason) = check_id(raw.dag.get_ref(), true) {
        cx.invalid(
            raw.dag.span(),
            format!("invalid DAG id {:?}: {reason}", raw.dag.get_ref()),
        );
        ok = false;
    }
    if let Some(task) = &raw.task {
        if let Err(reason) = check_id(task.get_ref(), false) {
            cx.invalid(
                task.span(),
                format!("invalid task id {:?}: {reason}", task.get_ref()),
            );
            ok = false;
        }
    }
    if let Some(date) = &raw.logical_date {
        if date.get_ref().trim().is_empty() {
            cx.invalid(
                date.span(),
                "logical_date is empty; leave it out to use the run's own",
            );
            ok = false;
        }
    }
    let poke_interval = match &raw.poke_interval {
        None => Some(SENSOR_DEFAULT_POKE_INTERVAL),
        Some(p) => cx.duration(Some(p), true),
    };
    if !ok {
        return None;
    }
    Some(RequireTask {
        dag: raw.dag.into_inner(),
        logical_date: raw.logical_date.map(Spanned::into_inner),
        task: raw.task.map(Spanned::into_inner),
        if_missing: raw.if_missing.unwrap_or_default(),
        rerun_on: raw.rerun_on.unwrap_or_default(),
        ignore_failure: raw.ignore_failure.unwrap_or(false),
        poke_interval: poke_interval?,
    })
}

/// A `require` task naming its own DAG without another `logical_date` would wait for the
/// run it is part of, forever.
pub(super) fn check_self_requires(cx: &mut Ctx<'_>, dag_id: &str, tasks: &BTreeMap<String, Task>) {
    for task in tasks.values() {
        let TaskKind::Require(r) = &task.kind else {
            continue;
        };
        if r.dag == dag_id && r.logical_date.is_none() {
            let span = cx.index.value_span(&["tasks", &task.id, "dag"]);
            let at = cx.at_field(span, &format!("tasks.{}.dag", task.id));
            cx.push(DagError::InvalidValue {
                at,
                message: format!(
                    "task {:?} requires its own DAG at the same logical date, so it would \
                     wait for its own run; set logical_date to another run's (e.g. \
                     \"{{{{ macros.ds_add(ds, -1) }}}}\")",
                    task.id
                ),
            });
        }
    }
}
