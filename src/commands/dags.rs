//! `nightshift dags …`: validating DAG files and listing DAGs.

use std::process::ExitCode;

use nightshift_scheduler::loader;
use serde_json::json;

use crate::cli::{DagsCommand, Output};
use crate::commands::common::Actor;
use crate::commands::{open_store, runs};
use crate::settings::Settings;

pub async fn run(
    command: DagsCommand,
    settings: &Settings,
    actor: &Actor,
) -> anyhow::Result<ExitCode> {
    match command {
        DagsCommand::Validate { paths, output } => validate(paths, output, settings),
        DagsCommand::List { output } => list(output, settings).await,
        DagsCommand::Trigger {
            dag_id,
            conf,
            logical_date,
            wait,
            output,
        } => {
            let store = open_store(settings).await?;
            let args = runs::TriggerArgs {
                dag_id,
                conf,
                logical_date,
                wait,
                output,
                actor: actor.clone(),
            };
            runs::trigger(&store, settings, args).await
        }
        DagsCommand::Backfill {
            dag_id,
            from,
            to,
            output,
        } => {
            runs::backfill(
                &open_store(settings).await?,
                settings,
                actor,
                &dag_id,
                &from,
                &to,
                output,
            )
            .await
        }
        DagsCommand::Pause { dag_id } => {
            runs::set_paused(&open_store(settings).await?, actor, &dag_id, true).await
        }
        DagsCommand::Unpause { dag_id } => {
            runs::set_paused(&open_store(settings).await?, actor, &dag_id, false).await
        }
    }
}

fn validate(
    paths: Vec<std::path::PathBuf>,
    output: Output,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![settings.dags_folder.clone()]
    } else {
        paths
    };
    let options = loader::ScanOptions {
        parse: nightshift_core::dag::ParseOptions {
            connections: super::connections::known_names(settings)?,
            max_tasks: settings.max_tasks_per_dag,
            // Checked once every file is read, against them and the DAG folder's DAGs.
            dags: None,
        },
        max_sql_file_bytes: settings.max_sql_file_bytes,
        dags_folder: Some(settings.dags_folder.clone()),
    };
    let scan = loader::scan_paths_with(&paths, &options);
    match output {
        Output::Json => {
            let report = json!({
                "valid": scan.dags.iter().map(|d| json!({"dag_id": d.dag.id, "file": d.file, "tasks": d.dag.tasks.len()})).collect::<Vec<_>>(),
                "errors": scan.errors.iter().map(|(file, message)| json!({"file": file, "message": message})).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Table => {
            for loaded in &scan.dags {
                println!(
                    "ok     {} ({} tasks) {}",
                    loaded.dag.id,
                    loaded.dag.tasks.len(),
                    loaded.file
                );
            }
            for message in scan.errors.values() {
                for line in message.lines() {
                    println!("error  {line}");
                }
            }
            println!(
                "{} valid, {} with errors",
                scan.dags.len(),
                scan.errors.len()
            );
        }
    }
    Ok(if scan.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn list(output: Output, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let report = loader::sync_folder(
        &store,
        &settings.dags_folder,
        &super::connections::sync_options(settings)?,
        chrono::Utc::now(),
    )
    .await?;
    for message in report.errors.values() {
        eprintln!("{message}");
    }
    let dags = store
        .list_dags(&nightshift_store::DagFilter::default())
        .await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&dags)?),
        Output::Table => {
            let mut table = super::common::table(&[
                "dag_id", "schedule", "timezone", "paused", "active", "file",
            ]);
            for dag in &dags {
                table.add_row([
                    dag.dag_id.clone(),
                    dag.schedule.clone().unwrap_or_else(|| "-".into()),
                    dag.timezone.clone(),
                    dag.is_paused.to_string(),
                    dag.is_active.to_string(),
                    dag.file_path.clone(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
