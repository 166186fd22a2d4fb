//! The command line: every subcommand and flag of `nightshift`, with its `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::LogFormat;

/// nightshift — a workflow orchestrator for nightly data pipelines.
///
/// DAGs are TOML files in the DAG folder (default ./dags). Settings come from flags,
/// then NIGHTSHIFT_* environment variables, then ./nightshift.toml, then defaults
/// (SQLite file ./nightshift.db, ./dags, 127.0.0.1:8080).
#[derive(Debug, Parser)]
#[command(name = "nightshift", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (default: ./nightshift.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [env: NIGHTSHIFT_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Folder of DAG files [env: NIGHTSHIFT_DAGS_FOLDER].
    #[arg(long, global = true, value_name = "DIR")]
    pub dags_folder: Option<PathBuf>,
    /// Log line format on stderr [env: NIGHTSHIFT_LOG_FORMAT].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Do not apply pending database migrations on start.
    #[arg(long, global = true)]
    pub no_migrate: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with DAG files and DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Explore schedule expressions.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Validate DAG files without touching the database; exits 1 if any file has errors.
    Validate {
        /// Files or folders to check (default: the DAG folder).
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Load the DAG folder into the database and list the DAGs.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Print the next fire times of a schedule, one RFC 3339 timestamp a line.
    Preview {
        /// A 5-field cron expression or a preset such as @daily.
        expression: String,
        /// IANA time zone the schedule is evaluated in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Start after this instant (RFC 3339; default: now).
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        /// How many fire times to print.
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations to the database.
    Migrate,
}

/// How list commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
