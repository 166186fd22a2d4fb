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
    /// Run the scheduler, a worker and the web UI in one process (embedded SQLite by
    /// default): the quickest way to use nightshift on one machine.
    Standalone {
        #[command(flatten)]
        web: WebArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Run a scheduler: loads the DAG folder (and watches it), creates runs, queues
    /// ready tasks, reaps lost workers, sends callbacks. Several may run at once.
    Scheduler {
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Run a worker: claims queued task instances from its queues and runs them.
    Worker {
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Run the web server (UI and REST API).
    Web {
        #[command(flatten)]
        web: WebArgs,
    },
    /// Work with DAG files and DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Explore schedule expressions.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
    /// Inspect DAG runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Inspect and act on task instances.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Manage pools (named slot counts that limit concurrent tasks).
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Named connections (databases, HTTP APIs) from NIGHTSHIFT_CONN_<NAME> variables and
    /// the connections file; secrets are never shown.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Manage the users of the web UI and API.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API bearer tokens for scripts.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address the web server listens on [env: NIGHTSHIFT_BIND].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (unauthenticated: bind it where
    /// only Prometheus reaches it) [env: NIGHTSHIFT_METRICS_BIND].
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to claim from, comma-separated [env: NIGHTSHIFT_WORKER_QUEUES].
    #[arg(long, value_name = "QUEUES")]
    pub queues: Option<String>,
    /// Task tries run at once [env: NIGHTSHIFT_WORKER_CONCURRENCY].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Validate DAG files without touching the database; exits 1 if any file has errors.
    ///
    /// Runs every check the scheduler's loader runs, the files a DAG references included:
    /// each `sql_file` must be a regular file of at most `max_sql_file_bytes` inside the
    /// DAG folder, and each DAG within `max_tasks_per_dag`.
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
    /// Start a run of a DAG now (it is queued; a scheduler starts it).
    Trigger {
        dag_id: String,
        /// The run's conf, a JSON object (merged over the DAG's params in templates).
        #[arg(long, value_name = "JSON")]
        conf: Option<String>,
        /// The run's logical date (RFC 3339; default: now).
        #[arg(long, value_name = "RFC3339")]
        logical_date: Option<String>,
        /// Follow the run until it finishes, print each task's final state, and exit 0
        /// only if the run succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create runs for every schedule interval starting in [FROM, TO].
    Backfill {
        dag_id: String,
        #[arg(long, value_name = "RFC3339")]
        from: String,
        #[arg(long, value_name = "RFC3339")]
        to: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Pause a DAG: no new scheduled runs; running ones finish.
    Pause { dag_id: String },
    /// Unpause a DAG.
    Unpause { dag_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the runs of a DAG, newest first; the table's `late` column names missed
    /// deadlines (`run`, or the late tasks' ids).
    List {
        dag_id: String,
        #[arg(long, default_value_t = 25)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List the task instances of a run.
    List {
        dag_id: String,
        run_id: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Clear task instances so they run again as a new try with a fresh retry budget;
    /// a finished run goes back to running. The new tries run the DAG's current version
    /// (its definition as loaded now) unless --keep-version is given.
    Clear {
        dag_id: String,
        run_id: String,
        task_id: String,
        /// Also clear every task downstream.
        #[arg(long)]
        downstream: bool,
        /// Also clear every task upstream.
        #[arg(long)]
        upstream: bool,
        /// Clear only failed or upstream_failed instances.
        #[arg(long)]
        only_failed: bool,
        /// Run the version of the DAG the run was created with (its definition then, as
        /// the run page shows it) instead of the DAG's current version.
        #[arg(long)]
        keep_version: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List every try of a task instance with its timings, worker, exit code and error.
    Attempts {
        dag_id: String,
        run_id: String,
        task_id: String,
        #[arg(long, default_value_t = -1)]
        map_index: i32,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print the log of one try of a task instance (default: the latest try).
    Logs {
        dag_id: String,
        run_id: String,
        task_id: String,
        #[arg(long, default_value_t = -1)]
        map_index: i32,
        #[arg(long = "try")]
        try_number: Option<i32>,
    },
    /// Mark a task's instances (or one map index) success or failed. Instances already in
    /// that state are left alone; the others change together, or none does.
    Mark {
        dag_id: String,
        run_id: String,
        task_id: String,
        #[arg(value_enum)]
        state: MarkState,
        /// Only this map index of a mapped task.
        #[arg(long)]
        map_index: Option<i32>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Approve an `approval` task instance that awaits input: it succeeds and its
    /// downstream runs. Who (cli:<your OS user>), when and the comment are kept in the
    /// audit log and in the task's output (`outputs.<task_id>` for downstream templates).
    Approve(DecideArgs),
    /// Reject an `approval` task instance that awaits input: it fails (no retry) with the
    /// comment in its error. Who, when and the comment are kept as for `approve`.
    Reject(DecideArgs),
    /// Print what a task would run (its rendered fields; for `athena` and `redshift`
    /// the request it would submit) for a manual run at a logical date, with connection
    /// secrets masked. Upstream outputs are not available.
    Render {
        dag_id: String,
        task_id: String,
        /// The logical date (RFC 3339; default: now).
        #[arg(long, value_name = "RFC3339")]
        logical_date: Option<String>,
        /// The `for_each` index to render (-1: not mapped).
        #[arg(long, default_value_t = -1)]
        map_index: i32,
    },
}

/// Which approval to decide, and why.
#[derive(Debug, Args)]
pub struct DecideArgs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// Why: kept in the audit log, the task's output and (for a rejection) its error.
    #[arg(long)]
    pub comment: Option<String>,
    /// The instance of a mapped task (-1: not mapped).
    #[arg(long, default_value_t = -1)]
    pub map_index: i32,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List the connections of the environment and the connections file: names, kinds,
    /// hosts; never passwords or tokens (connections_backend ones are not listed).
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Try a connection: SELECT 1 on a database, a GET of an HTTP base URL. Exits 1 when
    /// it does not answer. A name that is neither a NIGHTSHIFT_CONN_ variable nor in the
    /// connections file is looked up in the connections_backend (SSM Parameter Store or
    /// Secrets Manager), as workers do.
    Test { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MarkState {
    Success,
    Failed,
}

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// List pools with their slots and use.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create or resize a pool.
    Set {
        name: String,
        slots: i32,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a pool (default_pool cannot be deleted).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; without --password-stdin a password is generated and printed once.
    Create {
        /// 1 to 64 ASCII letters, digits, `.`, `_`, `@` or `-`.
        username: String,
        /// viewer reads; operator also triggers, retries and pauses; admin also manages
        /// users and pools.
        #[arg(long, value_enum)]
        role: UserRole,
        /// Read the password (at least 8 characters) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for USERNAME (generated and printed once unless
    /// --password-stdin) and end the user's browser sessions and API tokens: for the admin
    /// who lost the password printed at first start, or a leaked password.
    ResetPassword {
        username: String,
        /// Read the password (at least 8 characters) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Keep the user's API tokens (browser sessions end either way).
        #[arg(long)]
        keep_tokens: bool,
    },
    /// List users with their roles.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRole {
    Viewer,
    Operator,
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token acting as USERNAME (with its role); prints the token once.
    Create {
        username: String,
        /// A name to recognise the token by, e.g. "airflow-migration-script".
        name: String,
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
    /// Delete the history of finished runs that ended more than AGE ago: each run with
    /// its task instances, tries, log lines, callback requests and missed deadlines, and
    /// the stored DAG file versions no run and no current DAG refers to any more.
    ///
    /// Never deleted: unfinished runs, runs with a callback still to send, the newest
    /// scheduled run of each DAG (catch-up continues from it) and the newest --keep-last
    /// runs of each DAG. Work goes in small transactions (at most 1,000 task instances or
    /// 5,000 log lines each), so schedulers and workers keep running beside it. On SQLite
    /// the freed space goes back to the file system when the file has incremental
    /// auto-vacuum (new files do; `nightshift db vacuum` converts an older one). The
    /// scheduler does the same in the background with `history_retention`,
    /// `log_retention` and `audit_retention`.
    Clean {
        /// Delete runs that ended more than this long ago, e.g. 90d, 12h.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Only the runs (and audit entries) of this DAG.
        #[arg(long, value_name = "DAG_ID")]
        dag: Option<String>,
        /// Keep the newest N runs of each DAG, however old.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// Also delete the log lines (only) of runs that ended more than this long ago.
        #[arg(long, value_name = "AGE")]
        logs_older_than: Option<String>,
        /// Also delete audit-log entries older than this (default: keep them).
        #[arg(long, value_name = "AGE")]
        audit_older_than: Option<String>,
        /// Count what would be deleted, per table, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Give free space back: on SQLite a full VACUUM, which rewrites the file (it needs
    /// as much free disk as the file and blocks writers while it runs; run it while
    /// nightshift is stopped) and turns on incremental auto-vacuum for a file made before
    /// it, so later cleans give space back by themselves. On PostgreSQL `VACUUM
    /// (ANALYZE)` of the history tables.
    Vacuum,
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
