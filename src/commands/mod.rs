//! One function per subcommand; each returns the process exit code.

mod approval;
mod common;
pub mod connections;
mod dags;
mod db;
mod runs;
mod schedule;
mod serve;
mod users;

use std::process::ExitCode;

use anyhow::Context;
use nightshift_core::secret::{password_misread, redact_url, MISREAD_PASSWORD};
use nightshift_store::Store;

use crate::cli::{Command, DbCommand};
use crate::settings::Settings;

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    // Read once, here at the edge: every action a command takes is audited as this actor.
    let actor = common::Actor::from_env();
    match command {
        Command::Standalone { .. } => {
            let roles = serve::Roles {
                scheduler: true,
                worker: true,
                web: true,
            };
            serve::serve(&settings, roles).await
        }
        Command::Scheduler { .. } => {
            let roles = serve::Roles {
                scheduler: true,
                worker: false,
                web: false,
            };
            serve::serve(&settings, roles).await
        }
        Command::Worker { .. } => {
            let roles = serve::Roles {
                scheduler: false,
                worker: true,
                web: false,
            };
            serve::serve(&settings, roles).await
        }
        Command::Web { .. } => {
            let roles = serve::Roles {
                scheduler: false,
                worker: false,
                web: true,
            };
            serve::serve(&settings, roles).await
        }
        Command::Dags(command) => dags::run(command, &settings, &actor).await,
        Command::Schedule(command) => schedule::run(command),
        Command::Runs(command) => runs::runs(&open_store(&settings).await?, command).await,
        Command::Tasks(command) => {
            runs::tasks(&open_store(&settings).await?, &settings, &actor, command).await
        }
        Command::Connections(command) => connections::run(command, &settings).await,
        Command::Pools(command) => {
            runs::pools(&open_store(&settings).await?, &actor, command).await
        }
        Command::Users(command) => {
            users::users(&open_store(&settings).await?, &actor, command).await
        }
        Command::Tokens(command) => {
            users::tokens(&open_store(&settings).await?, &actor, command).await
        }
        Command::Db(DbCommand::Migrate) => {
            let store = connect(&settings).await?;
            store.migrate().await.context("applying migrations")?;
            println!(
                "database {} is up to date",
                redact_url(settings.database_url.expose())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Db(DbCommand::Clean {
            older_than,
            dag,
            keep_last,
            logs_older_than,
            audit_older_than,
            dry_run,
            output,
        }) => {
            let args = db::CleanArgs {
                older_than,
                dag,
                keep_last,
                logs_older_than,
                audit_older_than,
                dry_run,
                output,
            };
            db::clean(&open_store(&settings).await?, &actor, args).await
        }
        Command::Db(DbCommand::Vacuum) => db::vacuum(&open_store(&settings).await?).await,
    }
}

/// Connects to the configured database and, unless told not to, migrates it.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = connect(settings).await?;
    if settings.auto_migrate {
        store.migrate().await.context("applying migrations")?;
    }
    Ok(store)
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database_url.expose();
    // Before the driver parses it: a misread URL fails obscurely, or its driver logs
    // part of the password as an unknown parameter.
    if password_misread(url) {
        anyhow::bail!(
            "the database URL {} cannot be used: {MISREAD_PASSWORD}",
            redact_url(url)
        );
    }
    Store::connect(url)
        .await
        .with_context(|| format!("connecting to the database {}", redact_url(url)))
}
