//! A try's link to an external job (an ECS task, an Athena query, a Redshift statement,
//! a BigQuery job): what earlier tries of the instance left
//! behind for it to re-attach to, and the one store write a kind may make — recording
//! its job's id the moment the job exists.
//!
//! The worker fills this in from the claimed instance: [`ExternalJob::unaccounted`] is
//! the instance's `external_id`, which the store keeps only while no worker recorded an
//! outcome for that job (recording an outcome clears it), so it names a job whose watcher
//! died. [`ExternalJob::unrecorded_previous_try`] covers a watcher that died between
//! starting its job and storing the id.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::kind::{Interrupt, Outcome, TaskContext};

/// A stable 64-bit key of one task instance in one installation: FNV-1a over the
/// installation id (when there is one), DAG, run, task and map index. The same in every
/// worker and release; kinds build their deterministic job names and client tokens from
/// it and the try number (`ecs::started_by`, `athena::client_token`, …).
pub fn try_key(ctx: &crate::kind::TaskContext) -> u64 {
    let map_index = ctx.map_index.to_string();
    let installation: &str = &ctx.external.installation;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        installation,
        &ctx.dag_id,
        &ctx.run_id,
        &ctx.task_id,
        &map_index,
    ];
    // Without an installation id the key is what it was before ids existed.
    let skip = usize::from(installation.is_empty());
    for part in parts.iter().skip(skip) {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Why an external id could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The try is no longer this worker's (reaped, cleared or marked meanwhile).
    #[error("the try is no longer ours: {0}")]
    LeaseLost(String),
    #[error("cannot store the external id: {0}")]
    Store(String),
}

/// What stopping a given-up try's job through its kind's cancel API gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The cancel API accepted the stop; the text says what was stopped.
    Stopped(String),
    /// Nothing to stop: the job had already ended (or is unknown to its service).
    AlreadyOver(String),
}

/// Why a job could not be stopped (the next claim of the stop tries again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StopError(pub String);

/// Finds a connection by name (the worker's connections, then its connections backend):
/// for a kind whose stop of a given-up job needs its connection (`bigquery`).
pub type ConnectionLookup = Arc<
    dyn Fn(
            String,
        ) -> Pin<
            Box<
                dyn Future<Output = Result<Option<nightshift_core::connection::Connection>, String>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// Stores an external id on the running try (instance and attempt at once).
pub type Recorder = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), RecordError>> + Send>> + Send + Sync,
>;

/// What a kind that runs an external job needs from the worker.
#[derive(Clone, Default)]
pub struct ExternalJob {
    /// The id of a job an earlier try started and nobody accounted for (its worker died
    /// or was stopped before recording an outcome). A kind resumes it instead of starting
    /// a second job, unless the job shows it was stopped by nightshift itself.
    pub unaccounted: Option<String>,
    /// The previous try's number when that try ended without recording an external id:
    /// it may have started a job and died before storing the id, so a kind that names its
    /// jobs deterministically per try looks for it. `None` on a first try, or when the
    /// previous try recorded an id.
    pub unrecorded_previous_try: Option<u32>,
    /// The worker's environment (passed in explicitly, as everywhere in the worker), for
    /// the external system's client: `AWS_REGION`, `AWS_ENDPOINT_URL`, ...
    pub env: Arc<BTreeMap<String, String>>,
    /// This installation's id (`Store::installation_id`), part of every deterministic
    /// job name and client token ([`try_key`]) so that two installations sharing a cloud
    /// account never pick up each other's jobs. Empty outside a worker.
    pub installation: Arc<str>,
    recorder: Option<Recorder>,
    connections: Option<ConnectionLookup>,
}

impl ExternalJob {
    /// A link whose ids are stored by `recorder`.
    pub fn new(
        unaccounted: Option<String>,
        unrecorded_previous_try: Option<u32>,
        env: Arc<BTreeMap<String, String>>,
        recorder: Recorder,
    ) -> ExternalJob {
        ExternalJob {
            unaccounted,
            unrecorded_previous_try,
            env,
            installation: Arc::from(""),
            recorder: Some(recorder),
            connections: None,
        }
    }

    /// The same link, for the installation `id`.
    pub fn with_installation(self, id: &str) -> ExternalJob {
        ExternalJob {
            installation: Arc::from(id),
            ..self
        }
    }

    /// The same link, finding connections by name through `lookup`.
    pub fn with_connections(self, lookup: ConnectionLookup) -> ExternalJob {
        ExternalJob {
            connections: Some(lookup),
            ..self
        }
    }

    /// Connection `name`, when this link can look connections up and it exists.
    pub async fn connection(
        &self,
        name: &str,
    ) -> Result<Option<nightshift_core::connection::Connection>, String> {
        match &self.connections {
            Some(lookup) => lookup(name.to_owned()).await,
            None => Ok(None),
        }
    }

    /// A link with no earlier job and no recorder (a kind run outside a worker), reading
    /// `env`.
    pub fn detached(env: BTreeMap<String, String>) -> ExternalJob {
        ExternalJob {
            env: Arc::new(env),
            ..ExternalJob::default()
        }
    }

    /// Records `id` as this try's external job. Without a recorder (a kind run outside a
    /// worker, e.g. in a unit test) this does nothing.
    pub async fn record(&self, id: &str) -> Result<(), RecordError> {
        match &self.recorder {
            Some(recorder) => recorder(id.to_owned()).await,
            None => Ok(()),
        }
    }

    /// An environment variable of the worker, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for ExternalJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment may hold credentials: show only its size.
        f.debug_struct("ExternalJob")
            .field("unaccounted", &self.unaccounted)
            .field("unrecorded_previous_try", &self.unrecorded_previous_try)
            .field("env_vars", &self.env.len())
            .field("installation", &self.installation)
            .field("recorder", &self.recorder.is_some())
            .field("connections", &self.connections.is_some())
            .finish()
    }
}

/// One try's job outside the worker, as the kinds that start one (`ecs`, `athena`,
/// `redshift`) drive it: submitted or re-attached and followed to its end by `watch`,
/// stopped through its cancel API by `stop` when the try is interrupted.
pub(crate) trait WatchedJob {
    /// Submits (or re-attaches to) the job and follows it until it ends.
    async fn watch(&mut self) -> Outcome;
    /// Stops the job after `why` interrupted `watch`, and says what the try came to.
    async fn stop(&mut self, why: Interrupt) -> Outcome;
}

/// Runs one try of a kind with an external job: makes its clients, then watches the job,
/// stopping it on the try's timeout or cancel. A timeout or cancel while the clients are
/// made ends the try before anything was submitted; failing to make them is a retryable
/// failure.
pub(crate) async fn run_watched<C, J>(
    ctx: &TaskContext,
    clients: impl Future<Output = Result<C, String>>,
    job: impl FnOnce(C) -> J,
) -> Outcome
where
    J: WatchedJob,
{
    let interrupted = ctx.interrupted();
    tokio::pin!(interrupted);
    let clients = tokio::select! {
        biased;
        why = &mut interrupted => return why.outcome(),
        clients = clients => clients,
    };
    let mut job = match clients {
        Ok(clients) => job(clients),
        Err(error) => return Outcome::retryable(error),
    };
    let result = tokio::select! {
        biased;
        why = &mut interrupted => Err(why),
        outcome = job.watch() => Ok(outcome),
    };
    match result {
        Ok(outcome) => outcome,
        Err(why) => job.stop(why).await,
    }
}

/// How an interrupted try's job is stopped: named in the log as `job` ("Athena query
/// ID"), stopped by `call` ("StopQueryExecution"), then watched every `poll` for up to
/// `wait` until it reports its final state.
pub(crate) struct StopOrder<'a> {
    pub job: String,
    /// What the log says is done to it: "stopping", "cancelling".
    pub verb: &'a str,
    pub call: &'a str,
    pub poll: Duration,
    pub wait: Duration,
}

/// Stops the job of a try that `why` interrupted: says so in the try's log, sends the
/// stop (`request`), and waits for `final_state` (the job's end state, `None` while it
/// runs) to log how it ended. The try's outcome is the interrupt's.
pub(crate) async fn stop_interrupted<F>(
    ctx: &TaskContext,
    why: Interrupt,
    order: StopOrder<'_>,
    request: impl Future<Output = ()>,
    final_state: impl Fn() -> F,
) -> Outcome
where
    F: Future<Output = Option<String>>,
{
    let StopOrder {
        job,
        verb,
        call,
        poll,
        wait,
    } = order;
    ctx.system(format!("{why} (try {}): {verb} {job}", ctx.try_number));
    request.await;
    let waited = tokio::time::timeout(wait, async {
        loop {
            if let Some(state) = final_state().await {
                return state;
            }
            tokio::time::sleep(poll).await;
        }
    })
    .await;
    match waited {
        Ok(state) => ctx.system(format!("{job}: {state}")),
        Err(_) => ctx.system(format!(
            "{job} did not end within {}s of {call}",
            wait.as_secs()
        )),
    }
    why.outcome()
}
