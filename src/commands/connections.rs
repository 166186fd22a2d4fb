//! `nightshift connections list|test` and `nightshift tasks render`, and loading the
//! connections (connections file + `NIGHTSHIFT_CONN_<NAME>` variables) for every role.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::Utc;
use std::sync::Arc;

use nightshift_core::connection::{Connection, Connections, ENV_PREFIX};
use nightshift_core::mask::SecretSet;
use nightshift_core::render::{self, RenderParams, RunInfo};
use nightshift_scheduler::loader::SyncOptions;
use nightshift_store::Store;
use nightshift_worker::kind::command::WITHHELD_ENV;
use nightshift_worker::kind::{bigquery, http, sql};
use nightshift_worker::secret_store::SecretStore;
use serde_json::{json, Value};

use super::common::{load_dag, parse_time, table};
use crate::cli::{ConnectionsCommand, Output};
use crate::settings::Settings;

/// How long `connections test` waits for an answer.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The process environment, as every role passes it on.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// The connections of this process: the connections file (if set) and the
/// `NIGHTSHIFT_CONN_<NAME>` variables of `env`.
pub fn load(settings: &Settings, env: &BTreeMap<String, String>) -> anyhow::Result<Connections> {
    nightshift_worker::connections::load(env, settings.connections_file.as_deref())
        .context("loading connections")
}

/// The connection names DAGs are checked against: known only when this process has a
/// connections file or a `NIGHTSHIFT_CONN_` variable (a scheduler on another machine than
/// the workers may have neither; then names are not checked).
pub fn known_names(settings: &Settings) -> anyhow::Result<Option<BTreeSet<String>>> {
    // With a connections backend, any other name may be found there when a task runs.
    if settings.connections_backend()?.is_some() {
        return Ok(None);
    }
    let env = process_env();
    let configured =
        settings.connections_file.is_some() || env.keys().any(|k| k.starts_with(ENV_PREFIX));
    if !configured {
        return Ok(None);
    }
    Ok(Some(load(settings, &env)?.names()))
}

/// How the DAG folder is synced by this process.
pub fn sync_options(settings: &Settings) -> anyhow::Result<SyncOptions> {
    Ok(SyncOptions {
        unpause_new: !settings.dags_paused_at_creation,
        connections: known_names(settings)?,
        max_tasks_per_dag: settings.max_tasks_per_dag,
        max_sql_file_bytes: settings.max_sql_file_bytes,
    })
}

/// The secret store of this process (the `connections_backend`, `secret()` values); what
/// it fetches is added to `masker`.
fn secret_store(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    masker: &SecretSet,
) -> anyhow::Result<Arc<SecretStore>> {
    Ok(SecretStore::new(
        settings.connections_backend()?,
        settings.connections_cache_ttl()?,
        env.clone(),
        masker.clone(),
    ))
}

pub async fn run(command: ConnectionsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let env = process_env();
    let connections = load(settings, &env)?;
    match command {
        ConnectionsCommand::List { output } => {
            list(&connections, output)?;
            Ok(ExitCode::SUCCESS)
        }
        ConnectionsCommand::Test { name } => {
            let name = name.to_ascii_lowercase();
            if let Some(connection) = connections.get(&name) {
                return test(connection).await;
            }
            let masker = SecretSet::new(connections.secrets());
            let store = secret_store(settings, &env, &masker)?;
            match store.connection(&name).await {
                Ok(Some(connection)) => test(&connection).await,
                Ok(None) => Err(anyhow!(
                    "no connection {name:?} (known: {})",
                    names_or_none(&connections)
                )),
                Err(e) => {
                    // The message names the connection and where it was looked up; it
                    // is masked all the same.
                    let secrets = masker.snapshot();
                    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    eprintln!(
                        "failed: {}",
                        nightshift_core::template::mask_secrets(&e.to_string(), &refs)
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn names_or_none(connections: &Connections) -> String {
    let names: Vec<String> = connections.names().into_iter().collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn list(connections: &Connections, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let rows: Vec<Value> = connections
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "kind": c.kind.as_str(),
                        "host": c.host,
                        "port": c.port,
                        "schema": c.schema,
                        "login": c.login,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Table => {
            let mut t = table(&["NAME", "KIND", "HOST", "PORT", "SCHEMA", "LOGIN"]);
            for c in connections.iter() {
                let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                t.add_row(vec![
                    c.name.clone(),
                    c.kind.to_string(),
                    dash(c.host.clone()),
                    dash(c.port.map(|p| p.to_string())),
                    dash(c.schema.clone()),
                    dash(c.login.clone()),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

async fn test(connection: &Connection) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let secrets = connection.secrets();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mask = |text: &str| nightshift_core::template::mask_secrets(text, &refs);
    let result: Result<String, String> = if connection.kind.is_database() {
        match tokio::time::timeout(TEST_TIMEOUT, sql::ping(connection)).await {
            Ok(Ok(())) => Ok("SELECT 1 answered".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", TEST_TIMEOUT.as_secs())),
        }
    } else if connection.kind.is_http() {
        match tokio::time::timeout(TEST_TIMEOUT, http::ping(connection)).await {
            Ok(Ok(status)) if status < 500 => Ok(format!("GET answered HTTP {status}")),
            Ok(Ok(status)) => Err(format!("GET answered HTTP {status}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", TEST_TIMEOUT.as_secs())),
        }
    } else if connection.kind.is_bigquery() {
        match tokio::time::timeout(TEST_TIMEOUT, bigquery::ping(connection, process_env())).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", TEST_TIMEOUT.as_secs())),
        }
    } else {
        Err(format!(
            "cannot test a {} connection (only databases, http/https and bigquery)",
            connection.kind
        ))
    };
    let took = started.elapsed().as_millis();
    match result {
        Ok(message) => {
            println!(
                "ok: {} ({}): {message} in {took} ms",
                connection.name,
                connection.display_uri()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!(
                "failed: {} ({}): {}",
                connection.name,
                connection.display_uri(),
                mask(&message)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `nightshift tasks render` needs.
#[derive(Debug)]
pub struct RenderArgs {
    pub dag_id: String,
    pub task_id: String,
    pub logical_date: Option<String>,
    pub map_index: i32,
}

/// Prints the task's rendered fields for a synthetic manual run at `logical_date`, with
/// every connection secret masked. Upstream outputs are not available (a template that
/// reads one fails and says so).
pub async fn render_task(
    store: &Store,
    settings: &Settings,
    args: RenderArgs,
) -> anyhow::Result<ExitCode> {
    let dag = load_dag(store, settings, &args.dag_id).await?;
    let task = dag.tasks.get(&args.task_id).ok_or_else(|| {
        anyhow!(
            "DAG {:?} has no task {:?} (tasks: {})",
            args.dag_id,
            args.task_id,
            dag.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let logical_date = match &args.logical_date {
        Some(t) => parse_time("--logical-date", t)?,
        None => Utc::now(),
    };
    let env = process_env();
    let mut connections = load(settings, &env)?;
    let masker = SecretSet::new(connections.secrets());
    let store = secret_store(settings, &env, &masker)?;
    let fetched = store
        .resolve(&render::task_secret_references(task))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(name) = task.kind.connection() {
        if connections.get(name).is_none() {
            if let Some(found) = store.connection(name).await.map_err(|e| anyhow!("{e}"))? {
                connections.insert(found);
            }
        }
    }
    let template_env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| !WITHHELD_ENV.contains(&k.as_str()))
        .collect();
    let run = RunInfo {
        dag_id: dag.id.clone(),
        run_id: format!("render__{}", logical_date.to_rfc3339()),
        logical_date,
        data_interval_start: logical_date,
        data_interval_end: logical_date,
        conf: json!({}),
    };
    let outputs = serde_json::Map::new();
    let secrets = masker.snapshot();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let rendered = render::render_task(&RenderParams {
        dag: &dag,
        task,
        run: &run,
        map_index: args.map_index,
        try_number: 1,
        upstream_outputs: &outputs,
        env: &template_env,
        secrets: &fetched,
    })
    .map_err(|e| {
        anyhow!(
            "cannot render task {}: {}",
            args.task_id,
            nightshift_core::template::mask_secrets(&e.to_string(), &refs)
        )
    })?;
    let fields = render::mask_fields(&rendered.fields, &refs);
    println!("# {}.{} ({})", dag.id, task.id, task.kind.name());
    if let Some(name) = task.kind.connection() {
        let what = connections
            .get(name)
            .map_or("not defined here".to_owned(), |c| {
                format!("{} {}", c.kind, c.display_uri())
            });
        println!("# connection {name}: {what}");
    }
    println!("# logical date {}", logical_date.to_rfc3339());
    if let Some(submission) = rendered.kind.submission() {
        let shown = nightshift_core::template::mask_secrets(&submission, &refs);
        println!("# would submit: {shown}");
    }
    if let Value::Object(fields) = fields {
        for (name, value) in fields {
            match value {
                Value::String(text) => println!("{name}:\n{text}"),
                other => println!("{name}: {}", serde_json::to_string_pretty(&other)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
