//! The worker loop: claim queued tries from the configured queues up to the free slots,
//! run each on its own task, wake on new work (store wake-ups), a finished try, or the
//! poll interval; on shutdown stop claiming, let running tries finish within the grace,
//! then hand the rest back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use nightshift_store::{ClaimRequest, ComponentHeartbeat, ComponentKind, Store, Wake};
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use nightshift_core::connection::Connections;
use nightshift_core::mask::SecretSet;
use nightshift_core::secret_store::ConnectionsBackend;

use crate::attempt::{run_try, DagCache, Shared, TryControl};
use crate::clock::Clock;
use crate::kind::command::WITHHELD_ENV;
use crate::log::LogLimits;
use crate::secret_store::SecretStore;

/// How one worker process runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Unique per worker process; becomes the lease owner of its tries.
    pub id: String,
    pub hostname: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// Tries it runs at once.
    pub concurrency: usize,
    /// How long a claimed try's lease lasts without a heartbeat.
    pub lease: Duration,
    /// How often a running try's lease is extended; must be well under `lease`.
    pub heartbeat_interval: Duration,
    /// How often the worker looks for work when no wake-up came.
    pub poll_interval: Duration,
    /// How long running tries may go on after shutdown was asked for.
    pub shutdown_grace: Duration,
    pub log_limits: LogLimits,
    /// The process environment, passed in explicitly; templates read it as `env` (minus
    /// `NIGHTSHIFT_DATABASE_URL`).
    pub env: BTreeMap<String, String>,
    /// The named connections tasks may use (see [`crate::connections::load`]); their
    /// secrets are masked in logs, rendered fields, errors and outputs.
    pub connections: Connections,
    /// Where connections that are in neither `env` nor the connections file are looked
    /// up (the `connections_backend` setting: SSM Parameter Store or Secrets Manager).
    pub connections_backend: Option<ConnectionsBackend>,
    /// How long a connection or `secret()` value fetched from AWS is used before it is
    /// fetched again.
    pub secrets_ttl: Duration,
    /// The wall clock for the times the worker records (leases use the database's).
    pub clock: Clock,
}

/// Default [`WorkerConfig::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default [`WorkerConfig::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default [`WorkerConfig::poll_interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`WorkerConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default [`WorkerConfig::concurrency`] (Airflow's `worker_concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The queue a worker serves unless told otherwise.
pub const DEFAULT_QUEUE: &str = nightshift_core::dag::DEFAULT_QUEUE;

impl WorkerConfig {
    /// A worker with the defaults: the `default` queue, 16 slots, a 30 s lease
    /// heartbeated every 5 s, a 1 s poll, a 30 s shutdown grace, default log caps and an
    /// empty environment.
    pub fn new(id: impl Into<String>, hostname: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            id: id.into(),
            hostname: hostname.into(),
            queues: vec![DEFAULT_QUEUE.to_owned()],
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_limits: LogLimits::default(),
            env: BTreeMap::new(),
            connections: Connections::new(),
            connections_backend: None,
            secrets_ttl: crate::secret_store::DEFAULT_TTL,
            clock: Clock::system(),
        }
    }

    /// Checks the settings that would make the worker misbehave.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |message: String| Err(WorkerError::Config { message });
        if self.id.is_empty() {
            return bad("the worker id is empty".into());
        }
        if self.queues.is_empty() {
            return bad("the worker serves no queue".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        if self.heartbeat_interval.is_zero() || self.poll_interval.is_zero() {
            return bad("heartbeat and poll intervals must be above zero".into());
        }
        // Two missed heartbeats must still fit in one lease.
        if self.heartbeat_interval.saturating_mul(2) > self.lease {
            return bad(format!(
                "the heartbeat interval ({}) must be at most half the lease ({})",
                humantime::format_duration(self.heartbeat_interval),
                humantime::format_duration(self.lease)
            ));
        }
        Ok(())
    }
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid worker configuration: {message}")]
    Config { message: String },
}

/// A worker: claims and runs tries until its cancel token fires.
pub struct Worker {
    store: Store,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(store: Store, config: WorkerConfig) -> Worker {
        Worker { store, config }
    }

    /// Runs until `cancel` fires, then drains: no more claims, running tries get
    /// `shutdown_grace` to finish, the rest are stopped and handed back (they run again,
    /// without counting as a failed try). Returns once every try is recorded.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), WorkerError> {
        self.config.validate()?;
        let template_env = self
            .config
            .env
            .iter()
            .filter(|(k, _)| !WITHHELD_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let Some(installation) = installation_id(&self.store, &self.config, &cancel).await else {
            return Ok(());
        };
        let secrets = SecretSet::new(self.config.connections.secrets());
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            config: self.config.clone(),
            template_env,
            dags: DagCache::default(),
            installation: installation.clone(),
            secret_store: SecretStore::new(
                self.config.connections_backend.clone(),
                self.config.secrets_ttl,
                self.config.env.clone(),
                secrets.clone(),
            ),
            secrets,
        });
        let config = &shared.config;
        tracing::info!(worker = %config.id, queues = ?config.queues, concurrency = config.concurrency, "worker started");

        let stop_component = CancellationToken::new();
        let component = tokio::spawn(beat_component(
            self.store.clone(),
            config.clone(),
            stop_component.clone(),
        ));
        let lookup = {
            let known = config.connections.clone();
            let backend = shared.secret_store.clone();
            let lookup: crate::kind::external::ConnectionLookup = Arc::new(move |name: String| {
                let known = known.get(&name).cloned();
                let backend = backend.clone();
                Box::pin(async move {
                    match known {
                        Some(c) => Ok(Some(c)),
                        None => backend.connection(&name).await.map_err(|e| e.to_string()),
                    }
                })
            });
            lookup
        };
        let stopper = tokio::spawn(crate::stops::drain_loop(
            self.store.clone(),
            config.env.clone(),
            installation,
            lookup,
            config.poll_interval,
            stop_component.clone(),
        ));

        metrics::gauge!("nightshift_worker_slots").set(config.concurrency as f64);
        let mut running: JoinSet<()> = JoinSet::new();
        let mut controls: HashMap<Id, TryControl> = HashMap::new();
        let store = &shared.store;
        while !cancel.is_cancelled() {
            let free = config.concurrency.saturating_sub(running.len());
            if free > 0 {
                let request = ClaimRequest {
                    worker_id: config.id.clone(),
                    hostname: config.hostname.clone(),
                    queues: config.queues.clone(),
                    limit: i64::try_from(free).unwrap_or(i64::MAX),
                    lease: config.lease,
                    now: config.clock.now(),
                };
                // The claim writes each lease as the database's now + lease: the fence
                // counts from this instant, which is no later.
                let leased_at = tokio::time::Instant::now();
                match store.claim(&request).await {
                    Ok(claimed) => {
                        for task in claimed {
                            let control = TryControl::default();
                            let handle = running.spawn(run_try(
                                shared.clone(),
                                task,
                                control.clone(),
                                leased_at,
                            ));
                            controls.insert(handle.id(), control);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim tries; retrying at the next poll")
                    }
                }
            }
            metrics::gauge!("nightshift_worker_slots_busy").set(running.len() as f64);
            let free = config.concurrency.saturating_sub(running.len());
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    ended(&mut controls, joined);
                    // Every try that ended meanwhile too, so the next claim fills all the
                    // freed slots in one transaction rather than one claim per slot.
                    while let Some(joined) = running.try_join_next_with_id() {
                        ended(&mut controls, joined);
                    }
                }
                () = store.wakeups().woken(Wake::Workers), if free > 0 => {}
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }

        drain(&mut running, &mut controls, config.shutdown_grace).await;
        metrics::gauge!("nightshift_worker_slots_busy").set(0.0);
        stop_component.cancel();
        let _ = component.await;
        let _ = stopper.await;
        tracing::info!(worker = %config.id, "worker stopped");
        Ok(())
    }
}

/// This installation's id, read once at start (retried while the database is away);
/// `None` if `cancel` fired first.
async fn installation_id(
    store: &Store,
    config: &WorkerConfig,
    cancel: &CancellationToken,
) -> Option<String> {
    loop {
        match store.installation_id().await {
            Ok(id) => return Some(id),
            Err(error) => tracing::warn!(%error, "cannot read the installation id; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// Waits up to `grace` for running tries, then hands the rest back and waits for them.
async fn drain(running: &mut JoinSet<()>, controls: &mut HashMap<Id, TryControl>, grace: Duration) {
    if running.is_empty() {
        return;
    }
    tracing::info!(
        running = running.len(),
        grace = %humantime::format_duration(grace),
        "shutting down: waiting for running tries"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = running.join_next_with_id() => match joined {
                Some(joined) => ended(controls, joined),
                None => return,
            },
            () = &mut deadline => break,
        }
    }
    tracing::info!(
        running = running.len(),
        "grace period over: handing the remaining tries back"
    );
    for control in controls.values() {
        control.hand_back();
    }
    while let Some(joined) = running.join_next_with_id().await {
        ended(controls, joined);
    }
}

fn ended(controls: &mut HashMap<Id, TryControl>, joined: Result<(Id, ()), JoinError>) {
    let id = match joined {
        Ok((id, ())) => id,
        Err(error) => {
            // A panic is a bug in nightshift; the try's lease expires and it is reaped.
            tracing::error!(%error, "a try's task ended abnormally");
            error.id()
        }
    };
    controls.remove(&id);
}

/// Records the worker's own heartbeat (for `/health` and the UI) until `stop` fires.
async fn beat_component(store: Store, config: WorkerConfig, stop: CancellationToken) {
    let pid = i64::from(std::process::id());
    loop {
        let beat = ComponentHeartbeat {
            id: config.id.clone(),
            kind: ComponentKind::Worker,
            hostname: config.hostname.clone(),
            pid,
            now: config.clock.now(),
        };
        if let Err(error) = store.heartbeat_component(&beat).await {
            tracing::warn!(%error, "cannot record the worker's heartbeat");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.heartbeat_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        fn check(change: impl FnOnce(&mut WorkerConfig), expected: Option<&str>) {
            let mut config = WorkerConfig::new("w1", "host");
            change(&mut config);
            let got = config.validate().err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), expected);
        }
        check(|_| {}, None);
        check(
            |c| c.concurrency = 0,
            Some("invalid worker configuration: concurrency must be at least 1"),
        );
        check(
            |c| c.queues.clear(),
            Some("invalid worker configuration: the worker serves no queue"),
        );
        check(
            |c| c.heartbeat_interval = Duration::from_secs(20),
            Some("invalid worker configuration: the heartbeat interval (20s) must be at most half the lease (30s)"),
        );
        check(
            |c| c.id.clear(),
            Some("invalid worker configuration: the worker id is empty"),
        );
        check(
            |c| {
                c.lease = Duration::from_secs(2);
                c.heartbeat_interval = Duration::from_millis(500);
            },
            None,
        );
    }
}
