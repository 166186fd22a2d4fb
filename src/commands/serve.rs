//! The long-running roles: `standalone` (everything in one process), `scheduler`,
//! `worker` and `web`. One `CancellationToken` from here stops every part on SIGTERM or
//! Ctrl-C; a `JoinSet` owns the parts.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nightshift_scheduler::loader::watch_folder;
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::Store;
use nightshift_web::serve as serve_http;
use nightshift_web::{app, ensure_admin, metrics, AppState, LoginGuard, Metrics, WebSettings};
use nightshift_worker::{Worker, WorkerConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::open_store;
use crate::settings::Settings;

/// Which parts one process runs.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub scheduler: bool,
    pub worker: bool,
    pub web: bool,
}

/// How often the DAG folder is rescanned even when no change was reported.
const DAG_RESCAN: Duration = Duration::from_secs(30);

pub async fn serve(settings: &Settings, roles: Roles) -> anyhow::Result<ExitCode> {
    let http_limits = settings.http_limits()?;
    let store = open_store(settings).await?;
    let cancel = CancellationToken::new();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut parts: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

    // Bind first, so a taken port fails the start instead of a part.
    let listener = if roles.web {
        let listener = tokio::net::TcpListener::bind(&settings.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (set --bind or NIGHTSHIFT_BIND)",
                    settings.bind
                )
            })?;
        Some(listener)
    } else {
        None
    };
    let metrics_listener = match &settings.metrics_bind {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for metrics (set --metrics-bind or NIGHTSHIFT_METRICS_BIND)")
        })?),
        None => None,
    };

    // One recorder per process: the scheduler and worker record into it, the web
    // server's `/metrics` and the `--metrics-bind` exporter render it.
    let metrics = Metrics::install()?;
    parts.spawn({
        let (metrics, cancel) = (metrics.clone(), cancel.clone());
        async move {
            metrics.upkeep(cancel).await;
            ("metrics upkeep", Ok(()))
        }
    });
    if let Some(listener) = metrics_listener {
        let router = metrics::exporter(metrics.clone(), store.clone());
        let cancel = cancel.clone();
        tracing::info!(address = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
        parts.spawn(async move {
            let served = serve_http(listener, router, http_limits, cancel.cancelled_owned()).await;
            ("metrics server", served.map_err(Into::into))
        });
    }

    {
        let (store, cancel) = (store.clone(), cancel.clone());
        parts.spawn(async move {
            (
                "wake-up listener",
                store.listen(cancel).await.map_err(Into::into),
            )
        });
    }
    if roles.scheduler {
        let options = super::connections::sync_options(settings)?;
        let (store2, dir, cancel2) = (store.clone(), settings.dags_folder.clone(), cancel.clone());
        parts.spawn(async move {
            watch_folder(store2, dir, options, DAG_RESCAN, cancel2).await;
            ("DAG loader", Ok(()))
        });
        let mut config = SchedulerConfig::new(settings.base_url());
        config.template_env = env.clone();
        config.max_map_length = settings.max_map_length;
        config.retention = settings.retention()?;
        let scheduler = Scheduler::new(store.clone(), config);
        let cancel = cancel.clone();
        parts.spawn(async move { ("scheduler", scheduler.run(cancel).await.map_err(Into::into)) });
    }
    if roles.worker {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let id = format!(
            "{hostname}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut config = WorkerConfig::new(id, hostname);
        config.queues = settings.queues();
        config.concurrency = settings.worker_concurrency;
        config.lease = settings.worker_lease()?;
        config.shutdown_grace = settings.worker_shutdown_grace()?;
        config.heartbeat_interval = (config.lease / 6).max(Duration::from_millis(100));
        config.env = env.clone();
        config.connections = super::connections::load(settings, &env)?;
        config.connections_backend = settings.connections_backend()?;
        config.secrets_ttl = settings.connections_cache_ttl()?;
        config.validate()?;
        let worker = Worker::new(store.clone(), config);
        let cancel = cancel.clone();
        parts.spawn(async move { ("worker", worker.run(cancel).await.map_err(Into::into)) });
    }
    if let Some(listener) = listener {
        announce_login(&store, settings).await?;
        let state = AppState {
            store: store.clone(),
            settings: WebSettings {
                base_url: settings.base_url(),
                secure_cookies: settings.secure_cookies(),
                limits: http_limits,
                run_limits: settings.run_limits(),
                ..WebSettings::default()
            },
            metrics: Some(metrics.clone()),
            login: LoginGuard::default(),
        };
        let router = app(state);
        let cancel = cancel.clone();
        tracing::info!(address = %settings.bind, "web server listening on {}", settings.base_url());
        parts.spawn(async move {
            // Header read and request timeouts close slow or idle clients' connections.
            let served = serve_http(listener, router, http_limits, cancel.cancelled_owned()).await;
            ("web server", served.map_err(Into::into))
        });
    }

    let signals = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            "shutting down: finishing running work (send the signal again to stop at once)"
        );
        signals.cancel();
        shutdown_signal().await;
        std::process::exit(130);
    });

    let mut failed = false;
    while let Some(joined) = parts.join_next().await {
        match joined {
            Ok((part, Ok(()))) => tracing::debug!(part, "stopped"),
            Ok((part, Err(err))) => {
                tracing::error!(
                    part,
                    error = format!("{err:#}"),
                    "stopped with an error; shutting down"
                );
                failed = true;
                cancel.cancel();
            }
            Err(err) => {
                tracing::error!(error = %err, "a part panicked; shutting down");
                failed = true;
                cancel.cancel();
            }
        }
    }
    store.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// On the first start (no users yet) creates an `admin` user and prints its password once.
async fn announce_login(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    if let Some((username, password)) = ensure_admin(store).await? {
        eprintln!();
        eprintln!("  nightshift is ready at {}", settings.base_url());
        eprintln!("  sign in as {username:?} with password {password:?}");
        eprintln!("  (shown once; add users with `nightshift users create`)");
        eprintln!();
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
