//! Settings: one typed struct, layered defaults < `nightshift.toml` < `NIGHTSHIFT_*`
//! environment < command-line flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use nightshift_core::secret::Secret;
use serde::{Deserialize, Serialize};

/// The config file read from the working directory unless `--config` names another.
pub const DEFAULT_CONFIG_FILE: &str = "nightshift.toml";

/// Every setting nightshift reads. Field names are the keys of `nightshift.toml` and,
/// upper-cased with a `NIGHTSHIFT_` prefix, the environment variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://nightshift.db` (the default, created when missing) or `postgres://…`.
    pub database_url: Secret,
    /// Folder of DAG files (`*.toml`, read recursively).
    pub dags_folder: PathBuf,
    /// Address of the web server (UI and API).
    pub bind: String,
    /// `text` (default) or `json` log lines on stderr.
    pub log_format: LogFormat,
    /// Tracing filter, e.g. `info` or `nightshift=debug,sqlx=warn`.
    pub log_level: String,
    /// Apply pending database migrations when a command starts.
    pub auto_migrate: bool,
    /// The UI's public address, used in links of alert callbacks (default: from `bind`).
    pub base_url: Option<String>,
    /// DAGs seen for the first time start paused (as Airflow's default).
    pub dags_paused_at_creation: bool,
    /// Queues a worker serves, comma-separated.
    pub worker_queues: String,
    /// Task tries a worker runs at once.
    pub worker_concurrency: usize,
    /// Where a scheduler or worker serves Prometheus `/metrics` (off when unset; the web
    /// server always serves `/metrics` to signed-in users and API tokens).
    pub metrics_bind: Option<String>,
    /// How long a worker's claim on a running try lasts without a heartbeat (e.g. `30s`);
    /// a worker that dies is noticed this long after its last heartbeat. Heartbeats are
    /// sent every sixth of it.
    pub worker_lease: String,
    /// How long a stopping worker (SIGTERM) lets its running tries finish before it stops
    /// them and hands them back to be run again (e.g. `30s`).
    pub worker_shutdown_grace: String,
    /// How long a web client has to send a request's headers (e.g. `10s`), counted from
    /// when its connection opens or its previous response was sent: so also how long an
    /// idle keep-alive connection stays open. The connection is closed after it.
    pub http_header_read_timeout: String,
    /// How long one web request may take, reading its body included (e.g. `60s`); a
    /// slower one is answered 408. (The UI's live log polls; nothing waits longer.)
    pub http_request_timeout: String,
    /// The largest request body the web server reads, in bytes; a larger one is 413.
    pub http_max_body_bytes: usize,
    /// The most instances a `for_each` over an upstream's output fans out to (Airflow's
    /// `max_map_length`); a longer list fails the task with an error saying so.
    pub max_map_length: usize,
    /// The most task instances one DAG may start a run with (each task once, each item of
    /// a literal `for_each` list once); a bigger DAG file is a load error.
    pub max_tasks_per_dag: usize,
    /// The largest file a DAG may reference (`sql_file`), in bytes; a bigger one is a load
    /// error.
    pub max_sql_file_bytes: u64,
    /// The largest `conf` a run may be triggered with, in bytes of compact JSON.
    pub max_conf_bytes: usize,
    /// The longest run id a person may give, in characters.
    pub max_run_id_length: usize,
    /// A TOML file of named connections (`name = "URI"` or `[name]` with `uri` and
    /// `extra`; `${VAR}` reads the environment). `NIGHTSHIFT_CONN_<NAME>` variables add
    /// to it and win over it.
    pub connections_file: Option<PathBuf>,
    /// Where connections that are neither `NIGHTSHIFT_CONN_<NAME>` variables nor in the
    /// connections file are looked up, by lower-case name after a prefix:
    /// `aws-ssm:/nightshift/connections/` (SSM Parameter Store; a `SecureString` is
    /// decrypted) or `aws-secretsmanager:nightshift/connections/` (Secrets Manager).
    pub connections_backend: Option<String>,
    /// How long a connection or `secret()` value fetched from AWS is used before it is
    /// fetched again (e.g. `5m`).
    pub connections_cache_ttl: String,
    /// Mark the web server's cookies `Secure` (sent over HTTPS only). Unset: on when
    /// `base_url` starts with `https://`.
    pub secure_cookies: Option<bool>,
    /// The scheduler deletes finished runs (with their instances, tries, logs, callbacks
    /// and missed deadlines) that ended longer ago than this, e.g. `90d`, in the
    /// background (as `nightshift db clean --older-than`). Unset: runs are kept.
    pub history_retention: Option<String>,
    /// The scheduler deletes the log lines (only) of finished runs that ended longer ago
    /// than this, e.g. `30d`: logs may be kept for less time than runs. Unset: kept.
    pub log_retention: Option<String>,
    /// The scheduler deletes audit-log entries older than this. Unset (the default): the
    /// audit log is kept.
    pub audit_retention: Option<String>,
    /// How often the background retention runs (one scheduler at a time on a database).
    pub retention_interval: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            database_url: Secret::new("sqlite://nightshift.db"),
            dags_folder: PathBuf::from("dags"),
            bind: "127.0.0.1:8080".to_owned(),
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            auto_migrate: true,
            base_url: None,
            dags_paused_at_creation: true,
            worker_queues: "default".to_owned(),
            worker_concurrency: 16,
            metrics_bind: None,
            worker_lease: "30s".to_owned(),
            worker_shutdown_grace: "30s".to_owned(),
            http_header_read_timeout: "10s".to_owned(),
            http_request_timeout: "60s".to_owned(),
            http_max_body_bytes: 2 * 1024 * 1024,
            max_map_length: 1024,
            max_tasks_per_dag: nightshift_core::dag::DEFAULT_MAX_TASKS,
            max_sql_file_bytes: nightshift_scheduler::files::DEFAULT_MAX_SQL_FILE_BYTES,
            max_conf_bytes: nightshift_core::limits::DEFAULT_MAX_CONF_BYTES,
            max_run_id_length: nightshift_core::limits::DEFAULT_MAX_RUN_ID_CHARS,
            connections_file: None,
            connections_backend: None,
            connections_cache_ttl: "5m".to_owned(),
            secure_cookies: None,
            history_retention: None,
            log_retention: None,
            audit_retention: None,
            retention_interval: "10m".to_owned(),
        }
    }
}

/// Values given on the command line; `None` means "not given", so a lower layer decides.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub dags_folder: Option<PathBuf>,
    pub bind: Option<String>,
    pub log_format: Option<LogFormat>,
    pub no_migrate: bool,
    pub worker_queues: Option<String>,
    pub worker_concurrency: Option<usize>,
    pub metrics_bind: Option<String>,
}

const ENV_KEYS: &[&str] = &[
    "history_retention",
    "log_retention",
    "audit_retention",
    "retention_interval",
    "secure_cookies",
    "connections_file",
    "connections_backend",
    "connections_cache_ttl",
    "metrics_bind",
    "worker_lease",
    "worker_shutdown_grace",
    "http_header_read_timeout",
    "http_request_timeout",
    "http_max_body_bytes",
    "max_map_length",
    "max_tasks_per_dag",
    "max_sql_file_bytes",
    "max_conf_bytes",
    "max_run_id_length",
    "database_url",
    "dags_folder",
    "bind",
    "log_format",
    "log_level",
    "auto_migrate",
    "base_url",
    "dags_paused_at_creation",
    "worker_queues",
    "worker_concurrency",
];

impl Settings {
    /// The UI's address as links should show it.
    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }

    /// Whether cookies are `Secure`: as set, or when unset whether `base_url` is https.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies.unwrap_or_else(|| {
            self.base_url
                .as_deref()
                .is_some_and(|url| url.trim().to_ascii_lowercase().starts_with("https://"))
        })
    }

    /// The limits a trigger's run id and conf are checked against.
    pub fn run_limits(&self) -> nightshift_core::limits::RunLimits {
        nightshift_core::limits::RunLimits {
            max_run_id_chars: self.max_run_id_length,
            max_conf_bytes: self.max_conf_bytes,
        }
    }

    /// The worker lease as a duration.
    pub fn worker_lease(&self) -> anyhow::Result<std::time::Duration> {
        nightshift_core::duration::parse_positive_duration(&self.worker_lease)
            .map_err(|err| anyhow::anyhow!("worker_lease: {err}"))
    }

    /// The `connections_backend`, parsed.
    pub fn connections_backend(
        &self,
    ) -> anyhow::Result<Option<nightshift_core::secret_store::ConnectionsBackend>> {
        self.connections_backend
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .map(nightshift_core::secret_store::ConnectionsBackend::parse)
            .transpose()
            .map_err(Into::into)
    }

    /// `connections_cache_ttl` as a duration.
    pub fn connections_cache_ttl(&self) -> anyhow::Result<std::time::Duration> {
        nightshift_core::duration::parse_duration(&self.connections_cache_ttl)
            .map_err(|err| anyhow::anyhow!("connections_cache_ttl: {err}"))
    }

    /// The worker's shutdown grace as a duration.
    pub fn worker_shutdown_grace(&self) -> anyhow::Result<std::time::Duration> {
        nightshift_core::duration::parse_duration(&self.worker_shutdown_grace)
            .map_err(|err| anyhow::anyhow!("worker_shutdown_grace: {err}"))
    }

    /// The scheduler's background retention, from `history_retention`, `log_retention`,
    /// `audit_retention` and `retention_interval`.
    pub fn retention(&self) -> anyhow::Result<nightshift_scheduler::retention::RetentionConfig> {
        let age = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|value| {
                    nightshift_core::duration::parse_positive_duration(value)
                        .map_err(|err| anyhow::anyhow!("{name}: {err}"))
                })
                .transpose()
        };
        let every = nightshift_core::duration::parse_positive_duration(&self.retention_interval)
            .map_err(|err| anyhow::anyhow!("retention_interval: {err}"))?;
        Ok(nightshift_scheduler::retention::RetentionConfig {
            history: age("history_retention", &self.history_retention)?,
            logs: age("log_retention", &self.log_retention)?,
            audit: age("audit_retention", &self.audit_retention)?,
            every,
            ..Default::default()
        })
    }

    /// The web server's limits per client.
    pub fn http_limits(&self) -> anyhow::Result<nightshift_web::HttpLimits> {
        let duration = |name: &str, value: &str| {
            nightshift_core::duration::parse_positive_duration(value)
                .map_err(|err| anyhow::anyhow!("{name}: {err}"))
        };
        anyhow::ensure!(
            self.http_max_body_bytes > 0,
            "http_max_body_bytes: must be more than 0"
        );
        Ok(nightshift_web::HttpLimits {
            header_read_timeout: duration(
                "http_header_read_timeout",
                &self.http_header_read_timeout,
            )?,
            request_timeout: duration("http_request_timeout", &self.http_request_timeout)?,
            max_body_bytes: self.http_max_body_bytes,
        })
    }

    /// The worker's queues, from the comma-separated setting.
    pub fn queues(&self) -> Vec<String> {
        self.worker_queues
            .split(',')
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Builds the settings from every layer. `config` is an explicit `--config` path
    /// (which must exist); otherwise `nightshift.toml` is read if present.
    pub fn load(config: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "config file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment = figment.merge(Env::prefixed("NIGHTSHIFT_").only(ENV_KEYS));
        let mut settings: Settings = figment.extract().context("reading settings")?;
        if let Some(url) = &overrides.database_url {
            settings.database_url = Secret::new(url.clone());
        }
        if let Some(dir) = &overrides.dags_folder {
            settings.dags_folder = dir.clone();
        }
        if let Some(bind) = &overrides.bind {
            settings.bind = bind.clone();
        }
        if let Some(format) = overrides.log_format {
            settings.log_format = format;
        }
        if let Some(queues) = &overrides.worker_queues {
            settings.worker_queues = queues.clone();
        }
        if let Some(concurrency) = overrides.worker_concurrency {
            settings.worker_concurrency = concurrency;
        }
        if let Some(bind) = &overrides.metrics_bind {
            settings.metrics_bind = Some(bind.clone());
        }
        if overrides.no_migrate {
            settings.auto_migrate = false;
        }
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail returns figment::Error by design
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "dags_folder = \"from_file\"\nbind = \"0.0.0.0:1\"\nlog_level = \"debug\"",
            )?;
            jail.set_env("NIGHTSHIFT_BIND", "127.0.0.1:2");
            jail.set_env("NIGHTSHIFT_DATABASE_URL", "postgres://env");
            let overrides = Overrides {
                database_url: Some("postgres://flag".into()),
                ..Overrides::default()
            };
            let s = Settings::load(Some(Path::new("custom.toml")), &overrides)
                .map_err(|e| e.to_string())?;
            assert_eq!(s.dags_folder, PathBuf::from("from_file")); // file beats default
            assert_eq!(s.bind, "127.0.0.1:2"); // env beats file
            assert_eq!(s.database_url.expose(), "postgres://flag"); // flag beats env
            assert_eq!(s.log_level, "debug");
            assert_eq!(s.log_format, LogFormat::Text); // default
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("nightshift.toml", "dag_folder = \"x\"")?;
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains("dag_folder"), "{err:#}");
            Ok(())
        });
    }

    #[test]
    fn http_limits_default_and_come_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            let load = || Settings::load(None, &Overrides::default()).map_err(|e| format!("{e:#}"));
            let limits = load()?.http_limits().map_err(|e| format!("{e:#}"))?;
            assert_eq!(limits, nightshift_web::HttpLimits::default());
            jail.create_file(
                "nightshift.toml",
                "http_header_read_timeout = \"3s\"\nhttp_max_body_bytes = 1000",
            )?;
            jail.set_env("NIGHTSHIFT_HTTP_REQUEST_TIMEOUT", "2m");
            let limits = load()?.http_limits().map_err(|e| format!("{e:#}"))?;
            assert_eq!(
                limits.header_read_timeout,
                std::time::Duration::from_secs(3)
            );
            assert_eq!(limits.request_timeout, std::time::Duration::from_secs(120));
            assert_eq!(limits.max_body_bytes, 1000);
            jail.set_env("NIGHTSHIFT_HTTP_REQUEST_TIMEOUT", "0s");
            let err = load()?.http_limits().map(|_| ()).unwrap_err();
            assert!(
                format!("{err:#}").contains("http_request_timeout"),
                "{err:#}"
            );
            Ok(())
        });
    }

    #[test]
    fn secure_cookies_is_configurable_and_follows_an_https_base_url() {
        figment::Jail::expect_with(|jail| {
            let load = || Settings::load(None, &Overrides::default()).map_err(|e| format!("{e:#}"));
            assert!(!load()?.secure_cookies(), "plain http by default");
            jail.create_file("nightshift.toml", "base_url = \"https://ns.example\"")?;
            assert!(load()?.secure_cookies(), "on for an https base_url");
            jail.set_env("NIGHTSHIFT_SECURE_COOKIES", "false");
            assert!(!load()?.secure_cookies(), "the variable wins");
            jail.create_file("nightshift.toml", "secure_cookies = true")?;
            jail.set_env("NIGHTSHIFT_SECURE_COOKIES", "true");
            assert!(load()?.secure_cookies(), "the file and the variable");
            Ok(())
        });
    }

    #[test]
    fn dag_and_run_limits_are_settings() {
        figment::Jail::expect_with(|jail| {
            let load = || Settings::load(None, &Overrides::default()).map_err(|e| format!("{e:#}"));
            let defaults = load()?;
            assert_eq!(defaults.max_tasks_per_dag, 20_000);
            assert_eq!(defaults.max_sql_file_bytes, 1024 * 1024);
            assert_eq!(
                defaults.run_limits(),
                nightshift_core::limits::RunLimits {
                    max_run_id_chars: 250,
                    max_conf_bytes: 64 * 1024,
                }
            );
            jail.create_file(
                "nightshift.toml",
                "max_tasks_per_dag = 50000\nmax_conf_bytes = 1024",
            )?;
            jail.set_env("NIGHTSHIFT_MAX_SQL_FILE_BYTES", "4096");
            jail.set_env("NIGHTSHIFT_MAX_RUN_ID_LENGTH", "64");
            let s = load()?;
            assert_eq!((s.max_tasks_per_dag, s.max_sql_file_bytes), (50_000, 4096));
            assert_eq!((s.max_conf_bytes, s.max_run_id_length), (1024, 64));
            Ok(())
        });
    }

    #[test]
    fn retention_is_off_by_default_and_comes_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            let load = || Settings::load(None, &Overrides::default()).map_err(|e| format!("{e:#}"));
            let retention = load()?.retention().map_err(|e| format!("{e:#}"))?;
            assert!(!retention.is_on(), "everything kept by default");
            assert_eq!(retention.every, std::time::Duration::from_secs(600));
            jail.create_file(
                "nightshift.toml",
                "history_retention = \"90d\"\nlog_retention = \"30d\"",
            )?;
            jail.set_env("NIGHTSHIFT_AUDIT_RETENTION", "365d");
            jail.set_env("NIGHTSHIFT_RETENTION_INTERVAL", "1h");
            let retention = load()?.retention().map_err(|e| format!("{e:#}"))?;
            let days = |n: u64| Some(std::time::Duration::from_secs(n * 86_400));
            assert_eq!(retention.history, days(90));
            assert_eq!(retention.logs, days(30));
            assert_eq!(retention.audit, days(365));
            assert_eq!(retention.every, std::time::Duration::from_secs(3_600));
            jail.set_env("NIGHTSHIFT_LOG_RETENTION", "soon");
            let err = load()?.retention().map(|_| ()).unwrap_err();
            assert!(format!("{err:#}").contains("log_retention"), "{err:#}");
            Ok(())
        });
    }

    #[test]
    fn foreign_nightshift_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("NIGHTSHIFT_CONN_WAREHOUSE", "postgres://x");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| format!("{e:#}"))?;
            assert_eq!(s.database_url.expose(), "sqlite://nightshift.db");
            Ok(())
        });
    }
}
