//! `nightshift tasks approve|reject`: an operator's decision on an `approval` task
//! instance awaiting input, written by the store with its audit entry (the actor is
//! `cli:<OS user>`) exactly as the UI and the API write theirs.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use chrono::Utc;
use nightshift_core::approval::{self, Decision};
use nightshift_core::state::TaskState;
use nightshift_store::{ApprovalDecision, Store};

use super::common::{find_run, load_dag, Actor};
use crate::cli::DecideArgs;
use crate::settings::Settings;

/// Approves (`approve`) or rejects the instance `args` names.
pub async fn decide(
    store: &Store,
    settings: &Settings,
    actor: &Actor,
    args: DecideArgs,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let dag = load_dag(store, settings, &args.dag_id).await?;
    let run = find_run(store, &args.dag_id, &args.run_id).await?;
    let task = dag
        .tasks
        .get(&args.task_id)
        .ok_or_else(|| anyhow!("DAG {} has no task {:?}", args.dag_id, args.task_id))?;
    if approval::of(task).is_none() {
        bail!(
            "task {} of DAG {} is a {} task, not an approval",
            args.task_id,
            args.dag_id,
            task.kind.name()
        );
    }
    let ti = store
        .find_task_instance(run.id, &args.task_id, args.map_index)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "task instance {} (map index {}) not found in run {} of {}",
                args.task_id,
                args.map_index,
                args.run_id,
                args.dag_id
            )
        })?;
    if ti.state != TaskState::AwaitingInput {
        bail!(
            "task {} of run {} does not await input: it is {}",
            args.task_id,
            args.run_id,
            ti.state
        );
    }
    let decision =
        Decision::by_person(approve, actor.as_str(), args.comment.as_deref(), Utc::now());
    let request = ApprovalDecision::new(ti, run.run_id.clone(), task, decision);
    let written = match store.decide_approval(&request).await {
        Ok(written) => written,
        Err(err) if err.is_stale() => {
            bail!(
                "task {} was decided, cleared or marked meanwhile: {err}",
                args.task_id
            )
        }
        Err(err) => return Err(err.into()),
    };
    super::runs::print_instances(std::slice::from_ref(&written), args.output)?;
    eprintln!(
        "task {} {} ({})",
        args.task_id,
        if approve { "approved" } else { "rejected" },
        written.state
    );
    Ok(ExitCode::SUCCESS)
}
