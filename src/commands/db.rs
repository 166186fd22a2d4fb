//! `nightshift db clean` (retention by hand, the same `Store::clean` the scheduler runs in
//! the background) and `nightshift db vacuum`.

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use nightshift_core::duration::parse_positive_duration;
use nightshift_store::{CleanRequest, Store, CLEANED_TABLES};
use serde_json::json;

use super::common::{audit, table, Actor, Target};
use crate::cli::Output;

/// The flags of `db clean`.
pub struct CleanArgs {
    pub older_than: String,
    pub dag: Option<String>,
    pub keep_last: u32,
    pub logs_older_than: Option<String>,
    pub audit_older_than: Option<String>,
    pub dry_run: bool,
    pub output: Output,
}

/// `now` minus the age given to `flag`.
fn cut_off(
    flag: &str,
    age: &str,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let age = parse_positive_duration(age).map_err(|err| anyhow::anyhow!("{flag}: {err}"))?;
    chrono::TimeDelta::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .with_context(|| format!("{flag}: too long"))
}

pub async fn clean(store: &Store, actor: &Actor, args: CleanArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let req = CleanRequest {
        runs_before: Some(cut_off("--older-than", &args.older_than, now)?),
        logs_before: args
            .logs_older_than
            .as_deref()
            .map(|age| cut_off("--logs-older-than", age, now))
            .transpose()?,
        audit_before: args
            .audit_older_than
            .as_deref()
            .map(|age| cut_off("--audit-older-than", age, now))
            .transpose()?,
        dag_id: args.dag.clone(),
        keep_last: args.keep_last,
        dry_run: args.dry_run,
        ..CleanRequest::default()
    };
    if let Some(dag_id) = &args.dag {
        anyhow::ensure!(
            store.get_dag(dag_id).await?.is_some(),
            "DAG {dag_id:?} not found in the database"
        );
    }
    let report = store.clean(&req).await.context("cleaning history")?;
    if !args.dry_run {
        audit(
            store,
            actor,
            "db.clean",
            Target {
                dag_id: args.dag.as_deref(),
                ..Target::default()
            },
            json!({
                "older_than": args.older_than,
                "logs_older_than": args.logs_older_than,
                "audit_older_than": args.audit_older_than,
                "keep_last": args.keep_last,
                "deleted": report.deleted,
            }),
        )
        .await?;
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            let mut out = table(&["table", verb]);
            for name in CLEANED_TABLES {
                out.add_row(vec![(*name).to_owned(), report.rows(name).to_string()]);
            }
            println!("{out}");
            if report.pages_freed > 0 {
                println!("gave {} pages back to the file system", report.pages_freed);
            }
            if !args.dry_run && store.sqlite_auto_vacuum().await? == Some(0) {
                eprintln!(
                    "note: this SQLite file was made without incremental auto-vacuum, so the \
                     freed space is reused but the file does not shrink; run `nightshift db \
                     vacuum` once (while nightshift is stopped) to switch it on"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn vacuum(store: &Store) -> anyhow::Result<ExitCode> {
    store.vacuum().await.context("vacuuming the database")?;
    match store.sqlite_auto_vacuum().await? {
        Some(mode) => println!("vacuumed; SQLite auto_vacuum is now {mode} (2 = incremental)"),
        None => println!("vacuumed and analyzed the history tables"),
    }
    Ok(ExitCode::SUCCESS)
}
