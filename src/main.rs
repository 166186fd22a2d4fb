//! The `nightshift` binary: parses the command line, builds the settings, sets up tracing
//! and runs the chosen command. Thin by design: the work happens in the library crates.

mod cli;
mod commands;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::settings::{LogFormat, Overrides, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (web, worker) = match &cli.command {
        Command::Standalone { web, worker } => (Some(web), Some(worker)),
        Command::Web { web } => (Some(web), None),
        Command::Worker { worker, .. } => (None, Some(worker)),
        _ => (None, None),
    };
    let metrics_bind = match &cli.command {
        Command::Scheduler { metrics } | Command::Worker { metrics, .. } => {
            metrics.metrics_bind.clone()
        }
        _ => None,
    };
    let overrides = Overrides {
        database_url: cli.global.database_url.clone(),
        dags_folder: cli.global.dags_folder.clone(),
        bind: web.and_then(|w| w.bind.clone()),
        log_format: cli.global.log_format,
        no_migrate: cli.global.no_migrate,
        worker_queues: worker.and_then(|w| w.queues.clone()),
        worker_concurrency: worker.and_then(|w| w.concurrency),
        metrics_bind,
    };
    let settings = match Settings::load(cli.global.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli.command, settings)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(log_filter(&settings.log_level)).unwrap_or_else(|err| {
        eprintln!(
            "warning: log_level {:?} is not a valid filter ({err}); using \"info\"",
            settings.log_level
        );
        EnvFilter::new("info")
    });
    // Colour only for a person at a terminal: a file or a journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().finish()),
    };
    if let Err(err) = installed {
        eprintln!("warning: tracing was already set up ({err})");
    }
    // Libraries that use the `log` crate reach tracing from WARN up only: some log their
    // every step at INFO under ad-hoc targets (the graph layout, rust-sugiyama, does).
    if let Err(err) = tracing_log::LogTracer::builder()
        .with_max_level(tracing_log::log::LevelFilter::Warn)
        .init()
    {
        eprintln!("warning: `log` records are not forwarded to tracing ({err})");
    }
}

/// The tracing filter for `log_level`: PostgreSQL's NOTICE messages (sqlx logs them at
/// INFO, e.g. `relation "_sqlx_migrations" already exists, skipping` on every start) are
/// shown only at DEBUG or TRACE, or when the filter names sqlx itself.
fn log_filter(log_level: &str) -> String {
    let lower = log_level.to_ascii_lowercase();
    let verbose = lower
        .split(',')
        .map(str::trim)
        .any(|directive| matches!(directive, "debug" | "trace"));
    if verbose || lower.contains("sqlx") {
        log_level.to_owned()
    } else {
        format!("{log_level},sqlx::postgres::notice=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn postgres_notices_only_at_debug() {
        for (level, expected) in [
            ("info", "info,sqlx::postgres::notice=warn"),
            ("warn", "warn,sqlx::postgres::notice=warn"),
            ("debug", "debug"),
            ("trace", "trace"),
            (
                "info,nightshift=debug",
                "info,nightshift=debug,sqlx::postgres::notice=warn",
            ),
            ("info,sqlx=info", "info,sqlx=info"),
        ] {
            assert_eq!(log_filter(level), expected, "{level}");
        }
    }
}
