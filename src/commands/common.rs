//! Small helpers shared by the subcommands: loading a DAG's stored definition, finding a
//! run, parsing times, printing tables.

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_scheduler::loader;
use nightshift_store::{AuditEntry, DagRun, Store};
use serde_json::Value;

use crate::settings::Settings;

/// Who a command acts as in the audit log: `cli:<os user>`, the name of the process's
/// user id (from the user database), else `USER` or `LOGNAME`, read once when the command
/// starts; `cli:unknown` without any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn new(os_user: Option<&str>) -> Actor {
        let user = os_user.map(str::trim).filter(|u| !u.is_empty());
        Actor(format!("cli:{}", user.unwrap_or("unknown")))
    }

    pub fn from_env() -> Actor {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|user| user.name)
            .or_else(|| {
                ["USER", "LOGNAME"]
                    .iter()
                    .find_map(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
            });
        Actor::new(user.as_deref())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a command's action applied, for the audit log (as the web's audit entries).
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

/// Writes one audit entry for a command's action, as the web does for a person's.
pub async fn audit(
    store: &Store,
    actor: &Actor,
    action: &str,
    target: Target<'_>,
    details: Value,
) -> anyhow::Result<()> {
    store
        .append_audit(&AuditEntry {
            ts: Utc::now(),
            actor: actor.as_str().to_owned(),
            action: action.to_owned(),
            dag_id: target.dag_id.map(str::to_owned),
            run_id: target.run_id.map(str::to_owned),
            task_id: target.task_id.map(str::to_owned),
            ip: None,
            details,
        })
        .await
        .context("writing the audit log")?;
    Ok(())
}

/// The DAG's definition as the loader stored it. A DAG the store does not know yet is
/// looked for in the local DAG folder (synced into the store first).
pub async fn load_dag(store: &Store, settings: &Settings, dag_id: &str) -> anyhow::Result<Dag> {
    let mut record = store.get_dag(dag_id).await?;
    if record.is_none() && settings.dags_folder.is_dir() {
        loader::sync_folder(
            store,
            &settings.dags_folder,
            &super::connections::sync_options(settings)?,
            Utc::now(),
        )
        .await?;
        record = store.get_dag(dag_id).await?;
    }
    let record = record.ok_or_else(|| {
        anyhow!(
            "DAG {dag_id:?} not found in the database or in {} (is its file there, and valid? try `nightshift dags validate`)",
            settings.dags_folder.display()
        )
    })?;
    serde_json::from_value(record.definition)
        .with_context(|| format!("reading the stored definition of DAG {dag_id:?}"))
}

pub async fn find_run(store: &Store, dag_id: &str, run_id: &str) -> anyhow::Result<DagRun> {
    store
        .get_run_by_run_id(dag_id, run_id)
        .await?
        .ok_or_else(|| anyhow!("DAG run {run_id:?} of DAG {dag_id:?} not found"))
}

/// Parses an RFC 3339 timestamp given to `flag`.
pub fn parse_time(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag}: {value:?} is not an RFC 3339 timestamp (e.g. 2026-01-31T03:00:00Z)")
        })
}

pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(header.iter().copied());
    table
}

pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::Actor;

    #[test]
    fn the_actor_names_the_os_user() {
        assert_eq!(Actor::new(Some("alice")).as_str(), "cli:alice");
        assert_eq!(Actor::new(Some("  ")).as_str(), "cli:unknown");
        assert_eq!(Actor::new(None).as_str(), "cli:unknown");
    }
}
