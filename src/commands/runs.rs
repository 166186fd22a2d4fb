//! `nightshift dags trigger|backfill|pause|unpause`, `runs list`, `tasks list|clear|mark`
//! and `pools …`: acting on runs and task instances through the store's operations.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::Utc;
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::TaskState;
use nightshift_store::{
    ComponentKind, DagRun, MarkRequest, Pool, RunFilter, RunType, Store, TaskInstance,
    TriggerParams,
};
use serde_json::Value;

use super::common::{audit, find_run, load_dag, parse_time, table, time, Actor, Target};
use crate::cli::{MarkState, Output, PoolsCommand, RunsCommand, TasksCommand};
use crate::settings::Settings;

pub struct TriggerArgs {
    pub dag_id: String,
    pub conf: Option<String>,
    pub logical_date: Option<String>,
    pub wait: bool,
    pub output: Output,
    pub actor: Actor,
}

pub async fn trigger(
    store: &Store,
    settings: &Settings,
    args: TriggerArgs,
) -> anyhow::Result<ExitCode> {
    let dag = load_dag(store, settings, &args.dag_id).await?;
    let conf: Value = match &args.conf {
        Some(text) => {
            serde_json::from_str(text).with_context(|| format!("--conf: not valid JSON: {text}"))?
        }
        None => Value::Null,
    };
    settings.run_limits().check_conf(&conf).context("--conf")?;
    if let Err(errors) = dag.check_conf(&conf) {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(anyhow!("--conf: {}", all.join("; ")));
    }
    let logical_date = args
        .logical_date
        .as_deref()
        .map(|t| parse_time("--logical-date", t))
        .transpose()?;
    let params = TriggerParams {
        run_id: None,
        logical_date,
        data_interval: None,
        conf,
        run_type: RunType::Manual,
        now: Utc::now(),
    };
    let run = store.trigger_run(&dag, &params).await?;
    let target = Target {
        dag_id: Some(&run.dag_id),
        run_id: Some(&run.run_id),
        ..Target::default()
    };
    let details = serde_json::json!({ "conf": run.conf });
    audit(store, &args.actor, "run.trigger", target, details).await?;
    if store.get_dag(&dag.id).await?.is_some_and(|d| d.is_paused) {
        eprintln!(
            "warning: DAG {} is paused: the run starts once it is unpaused (`nightshift dags unpause {}`)",
            dag.id, dag.id
        );
    }
    if !args.wait {
        print_runs(&[run], args.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "triggered {} of {}; waiting for it to finish",
        run.run_id, run.dag_id
    );
    let run = wait_for_run(store, &run).await?;
    let instances = store.list_task_instances(run.id).await?;
    print_instances(&instances, args.output)?;
    eprintln!("run {} {}", run.run_id, run.state);
    Ok(if run.state == nightshift_core::state::RunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How often `--wait` prints a progress line while the run's tasks move (and at least
/// every [`PROGRESS_QUIET`] while nothing does).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const PROGRESS_QUIET: Duration = Duration::from_secs(60);

/// One `--wait` progress line: `run X: 3/10 tasks done (2 running, 1 failed)`.
fn progress_line(run_id: &str, instances: &[TaskInstance]) -> String {
    let done = instances.iter().filter(|ti| ti.state.is_finished()).count();
    let running = instances
        .iter()
        .filter(|ti| ti.state == TaskState::Running)
        .count();
    let failed = instances
        .iter()
        .filter(|ti| matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed))
        .count();
    let mut line = format!(
        "run {run_id}: {done}/{} tasks done ({running} running",
        instances.len()
    );
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    line.push(')');
    line
}

/// Polls the run until it finished, printing a progress line (tasks done/total) every
/// few seconds while it runs; warns when no scheduler seems to be running.
async fn wait_for_run(store: &Store, run: &DagRun) -> anyhow::Result<DagRun> {
    let started = std::time::Instant::now();
    let mut warned = false;
    let mut last_line = String::new();
    let mut last_print = std::time::Instant::now();
    let mut last_check = std::time::Instant::now();
    loop {
        let current = store
            .get_run(run.id)
            .await?
            .ok_or_else(|| anyhow!("run {} vanished", run.run_id))?;
        if current.state.is_finished() {
            return Ok(current);
        }
        if last_check.elapsed() >= PROGRESS_EVERY {
            last_check = std::time::Instant::now();
            let line = progress_line(&run.run_id, &store.list_task_instances(run.id).await?);
            if line != last_line || last_print.elapsed() >= PROGRESS_QUIET {
                eprintln!("{line}");
                last_line = line;
                last_print = std::time::Instant::now();
            }
        }
        if !warned && started.elapsed() > Duration::from_secs(15) {
            let alive = store.list_components().await?.iter().any(|c| {
                c.kind == ComponentKind::Scheduler
                    && Utc::now() - c.heartbeat_at < chrono::TimeDelta::seconds(30)
            });
            if !alive {
                eprintln!("warning: no scheduler has sent a heartbeat in 30 s; start `nightshift scheduler` or `nightshift standalone`");
            }
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn backfill(
    store: &Store,
    settings: &Settings,
    actor: &Actor,
    dag_id: &str,
    from: &str,
    to: &str,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let dag = load_dag(store, settings, dag_id).await?;
    let (from, to) = (parse_time("--from", from)?, parse_time("--to", to)?);
    anyhow::ensure!(from <= to, "--from must not be after --to");
    let schedule = dag.schedule.as_ref().ok_or_else(|| {
        anyhow!("DAG {dag_id:?} has no schedule; use `dags trigger --logical-date` instead")
    })?;
    let mut created = Vec::new();
    let mut existing = 0;
    for interval in schedule.intervals_between(dag.timezone, from, to) {
        let params = TriggerParams {
            run_id: None,
            logical_date: Some(interval.start),
            data_interval: Some(interval),
            conf: Value::Null,
            run_type: RunType::Backfill,
            now: Utc::now(),
        };
        match store.trigger_run(&dag, &params).await {
            Ok(run) => created.push(run),
            Err(nightshift_store::StoreError::Conflict { .. }) => existing += 1,
            Err(err) => return Err(err.into()),
        }
    }
    let target = Target {
        dag_id: Some(dag_id),
        ..Target::default()
    };
    let details = serde_json::json!({
        "from": from,
        "to": to,
        "run_ids": created.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        "existing": existing,
    });
    audit(store, actor, "dag.backfill", target, details).await?;
    print_runs(&created, output)?;
    eprintln!(
        "{} runs created, {existing} intervals already had a run; the scheduler starts them as max_active_runs ({}) allows",
        created.len(),
        dag.max_active_runs
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn set_paused(
    store: &Store,
    actor: &Actor,
    dag_id: &str,
    paused: bool,
) -> anyhow::Result<ExitCode> {
    let dag = store.set_paused(dag_id, paused, Utc::now()).await?;
    let action = if paused { "dag.pause" } else { "dag.unpause" };
    let target = Target {
        dag_id: Some(dag_id),
        ..Target::default()
    };
    audit(store, actor, action, target, serde_json::json!({})).await?;
    println!(
        "DAG {} is {}",
        dag.dag_id,
        if dag.is_paused { "paused" } else { "unpaused" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(store: &Store, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let RunsCommand::List {
        dag_id,
        limit,
        output,
    } = command;
    let runs = store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id),
            limit: Some(limit),
            ..RunFilter::default()
        })
        .await?;
    let ids: Vec<i64> = runs.iter().map(|run| run.id).collect();
    let mut late: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for miss in store.deadline_misses_of_runs(&ids).await? {
        let what = miss.task_id.unwrap_or_else(|| "run".to_owned());
        late.entry(miss.run).or_default().push(what);
    }
    print_runs_with(&runs, Some(&late), output)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn tasks(
    store: &Store,
    settings: &Settings,
    actor: &Actor,
    command: TasksCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        TasksCommand::List {
            dag_id,
            run_id,
            output,
        } => {
            let run = find_run(store, &dag_id, &run_id).await?;
            print_instances(&store.list_task_instances(run.id).await?, output)?;
        }
        TasksCommand::Clear {
            dag_id,
            run_id,
            task_id,
            downstream,
            upstream,
            only_failed,
            keep_version,
            output,
        } => {
            let dag = load_dag(store, settings, &dag_id).await?;
            let run = find_run(store, &dag_id, &run_id).await?;
            let selection = ClearSelection {
                task_ids: vec![task_id.clone()],
                downstream,
                upstream,
                only_failed,
                keep_version,
            };
            let cleared = store
                .clear_task_instances(&dag, &run, &selection, Utc::now())
                .await?;
            let target = Target {
                dag_id: Some(&dag_id),
                run_id: Some(&run_id),
                task_id: Some(&task_id),
            };
            let details = serde_json::json!({
                "task_ids": selection.task_ids,
                "downstream": downstream,
                "upstream": upstream,
                "only_failed": only_failed,
                "keep_version": keep_version,
                "cleared": cleared.len(),
            });
            audit(store, actor, "task.clear", target, details).await?;
            print_instances(&cleared, output)?;
            eprintln!("{} task instances cleared", cleared.len());
        }
        TasksCommand::Attempts {
            dag_id,
            run_id,
            task_id,
            map_index,
            output,
        } => {
            let ti = find_instance(store, &dag_id, &run_id, &task_id, map_index).await?;
            let attempts = store.list_attempts(ti.id).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&attempts)?),
                Output::Table => {
                    let mut t = table(&["try", "state", "worker", "start", "end", "exit", "error"]);
                    for a in &attempts {
                        t.add_row([
                            a.try_number.to_string(),
                            a.state.to_string(),
                            a.worker.clone(),
                            time(Some(a.start_date)),
                            time(a.end_date),
                            a.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                            a.error.clone().unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            map_index,
            try_number,
        } => {
            let ti = find_instance(store, &dag_id, &run_id, &task_id, map_index).await?;
            let try_number = try_number.unwrap_or(ti.try_number);
            let mut after = 0;
            loop {
                let rows = store.read_logs(ti.id, try_number, after, 1000).await?;
                let Some(last) = rows.last() else { break };
                after = last.line_no;
                for row in &rows {
                    println!("{} {:6} {}", row.ts.to_rfc3339(), row.stream, row.line);
                }
            }
        }
        TasksCommand::Approve(args) => {
            return super::approval::decide(store, settings, actor, args, true).await
        }
        TasksCommand::Reject(args) => {
            return super::approval::decide(store, settings, actor, args, false).await
        }
        TasksCommand::Render {
            dag_id,
            task_id,
            logical_date,
            map_index,
        } => {
            let args = super::connections::RenderArgs {
                dag_id,
                task_id,
                logical_date,
                map_index,
            };
            return super::connections::render_task(store, settings, args).await;
        }
        TasksCommand::Mark {
            dag_id,
            run_id,
            task_id,
            state,
            map_index,
            output,
        } => {
            let dag = load_dag(store, settings, &dag_id).await?;
            let run = find_run(store, &dag_id, &run_id).await?;
            let state = match state {
                MarkState::Success => TaskState::Success,
                MarkState::Failed => TaskState::Failed,
            };
            let request = MarkRequest {
                task_id,
                map_index,
                state,
                dry_run: false,
                now: Utc::now(),
            };
            let marked = store.mark_task_instances(&dag, &run, &request).await?;
            let target = Target {
                dag_id: Some(&dag_id),
                run_id: Some(&run_id),
                task_id: Some(&request.task_id),
            };
            let details = serde_json::json!({ "map_index": map_index, "marked": marked.len() });
            let action = format!("task.mark_{state}");
            audit(store, actor, &action, target, details).await?;
            print_instances(&marked, output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn pools(
    store: &Store,
    actor: &Actor,
    command: PoolsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PoolsCommand::List { output } => {
            let mut rows = Vec::new();
            for pool in store.list_pools().await? {
                let used = store.used_slots(&pool.name).await?;
                rows.push((pool, used));
            }
            match output {
                Output::Json => {
                    let json: Vec<Value> = rows
                        .iter()
                        .map(|(p, used)| serde_json::json!({"name": p.name, "slots": p.slots, "used_slots": used, "open_slots": i64::from(p.slots) - used, "description": p.description}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json)?);
                }
                Output::Table => {
                    let mut t = table(&["pool", "slots", "used", "description"]);
                    for (p, used) in &rows {
                        t.add_row([
                            p.name.clone(),
                            p.slots.to_string(),
                            used.to_string(),
                            p.description.clone(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        PoolsCommand::Set {
            name,
            slots,
            description,
        } => {
            // A new pool's name follows the web's rules (an existing pool is only resized,
            // whatever its name).
            let new = store.get_pool(&name).await?.is_none();
            if new {
                nightshift_web::check_pool_name(&name).context("pool name")?;
            }
            let pool = store
                .upsert_pool(&Pool {
                    name,
                    slots,
                    description,
                })
                .await?;
            let action = if new { "pool.create" } else { "pool.update" };
            let details = serde_json::json!({ "pool": pool.name, "slots": pool.slots });
            audit(store, actor, action, Target::default(), details).await?;
            println!("pool {} has {} slots", pool.name, pool.slots);
        }
        PoolsCommand::Delete { name } => {
            store.delete_pool(&name).await?;
            let details = serde_json::json!({ "pool": name });
            audit(store, actor, "pool.delete", Target::default(), details).await?;
            println!("pool {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_instance(
    store: &Store,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> anyhow::Result<TaskInstance> {
    let run = find_run(store, dag_id, run_id).await?;
    store
        .find_task_instance(run.id, task_id, map_index)
        .await?
        .ok_or_else(|| anyhow!("task instance {task_id} (map index {map_index}) not found in run {run_id} of {dag_id}"))
}

fn print_runs(runs: &[DagRun], output: Output) -> anyhow::Result<()> {
    print_runs_with(runs, None, output)
}

/// Prints runs; with `late` (run row id → "run" and the task ids whose deadlines were
/// missed), the table has a `late` column (the API lists the details).
fn print_runs_with(
    runs: &[DagRun],
    late: Option<&BTreeMap<i64, Vec<String>>>,
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(runs)?),
        Output::Table => {
            let mut head = vec!["run_id", "type", "state", "logical_date", "start", "end"];
            if late.is_some() {
                head.push("late");
            }
            let mut t = table(&head);
            for run in runs {
                let mut row = vec![
                    run.run_id.clone(),
                    run.run_type.to_string(),
                    run.state.to_string(),
                    run.logical_date.to_rfc3339(),
                    time(run.start_date),
                    time(run.end_date),
                ];
                if let Some(late) = late {
                    row.push(late.get(&run.id).map(|l| l.join(", ")).unwrap_or_default());
                }
                t.add_row(row);
            }
            println!("{t}");
        }
    }
    Ok(())
}

pub(super) fn print_instances(instances: &[TaskInstance], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(instances)?),
        Output::Table => {
            let mut t = table(&["task_id", "map_index", "state", "try", "start", "end"]);
            for ti in instances {
                t.add_row([
                    ti.task_id.clone(),
                    ti.map_index.to_string(),
                    ti.state.to_string(),
                    ti.try_number.to_string(),
                    time(ti.start_date),
                    time(ti.end_date),
                ]);
            }
            println!("{t}");
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for ti in instances {
                *counts.entry(ti.state.as_str()).or_default() += 1;
            }
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            println!("{}", summary.join(", "));
        }
    }
    Ok(())
}
