//! One claimed try, from start to its recorded end: load the DAG, render the task, run
//! its kind while the lease is heartbeated and the log drained, then record the outcome
//! (or hand the try back, or walk away when the lease was lost).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use nightshift_core::dag::{Callback, Dag, Task};
use nightshift_core::render::{self, RenderParams, RunInfo};
use nightshift_store::{
    CallbackEvent, CallbackKind, FinishError, NewCallback, RunningTry, Store, StoreError,
    TaskInstance, TryLease, TryOutcome, TryProgress, Wake,
};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connections;
use crate::decide::{self, TryFacts};
use crate::heartbeat::Heartbeat;
use crate::kind::external::{ExternalJob, RecordError};
use crate::kind::{Outcome, TaskContext, TaskKind};
use crate::log::LogChannel;
use crate::log_drain;
use crate::runtime::WorkerConfig;
use crate::secret_store::{FetchError, SecretStore};
use nightshift_core::mask::SecretSet;

/// What every try of one worker shares.
pub(crate) struct Shared {
    pub store: Store,
    pub config: WorkerConfig,
    /// The environment templates see: the worker's, minus the withheld variables.
    pub template_env: BTreeMap<String, String>,
    pub dags: DagCache,
    /// This installation's id (`Store::installation_id`), for external jobs' names.
    pub installation: String,
    /// The secrets masked as `***` in everything a try stores: the connections', and
    /// every value fetched from a secret store since the worker started.
    pub secrets: SecretSet,
    /// Connections from the `connections_backend` and `secret()` values.
    pub secret_store: Arc<SecretStore>,
}

/// Parsed DAG definitions by DAG id and version (`source_hash`): the version loaded now
/// and one more (a try a person's clear kept on its run's version), so neither evicts
/// the other while both run.
#[derive(Default)]
pub(crate) struct DagCache {
    dags: Mutex<HashMap<String, Versions>>,
    /// Held while a definition is fetched: tries that start together after a DAG changed
    /// wait for one fetch instead of each reading a definition that may be megabytes.
    fetching: tokio::sync::Mutex<()>,
}

/// Versions kept per DAG.
const VERSIONS_CACHED: usize = 2;

/// One DAG's cached versions, most recently fetched first: (`source_hash`, definition).
type Versions = Vec<(String, Arc<Dag>)>;

/// Why a try could not read its DAG's definition; retryable (the store may answer, or a
/// fixed definition be loaded, by the next try).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DefinitionError {
    #[error("cannot read DAG {dag_id}: {source}")]
    Read { dag_id: String, source: StoreError },
    #[error("the stored definition of DAG {dag_id} does not read: {source}")]
    Parse {
        dag_id: String,
        source: serde_json::Error,
    },
}

impl DagCache {
    /// The definition of `dag_id`'s version `hash` (the one the claim recorded on the
    /// try's attempt row: exactly this version runs); `Ok(None)` when the DAG is gone
    /// (`hash` is `None`) or that version's definition was never kept.
    async fn get(
        &self,
        store: &Store,
        dag_id: &str,
        hash: Option<&str>,
        patience: std::time::Duration,
    ) -> Result<Option<Arc<Dag>>, DefinitionError> {
        let Some(hash) = hash else {
            return Ok(None);
        };
        if let Some(dag) = self.cached(dag_id, hash) {
            return Ok(Some(dag));
        }
        let _fetching = self.fetching.lock().await;
        if let Some(dag) = self.cached(dag_id, hash) {
            return Ok(Some(dag));
        }
        let Some(definition) = retry_store(patience, || store.get_dag_definition(dag_id, hash))
            .await
            .map_err(|source| DefinitionError::Read {
                dag_id: dag_id.to_owned(),
                source,
            })?
        else {
            return Ok(None);
        };
        let dag: Dag =
            serde_json::from_value(definition).map_err(|source| DefinitionError::Parse {
                dag_id: dag_id.to_owned(),
                source,
            })?;
        let dag = Arc::new(dag);
        let mut cache = self.lock();
        let versions = cache.entry(dag_id.to_owned()).or_default();
        versions.insert(0, (hash.to_owned(), dag.clone()));
        versions.truncate(VERSIONS_CACHED);
        Ok(Some(dag))
    }

    fn cached(&self, dag_id: &str, hash: &str) -> Option<Arc<Dag>> {
        self.lock()
            .get(dag_id)?
            .iter()
            .find(|(cached_hash, _)| cached_hash == hash)
            .map(|(_, dag)| dag.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Versions>> {
        // The map holds only parsed copies of stored data; a poisoned one is still good.
        self.dags.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The runtime's handle on one try: it can ask the try to stop and be handed back.
#[derive(Clone, Default)]
pub(crate) struct TryControl {
    /// The try's own cancel token (its [`TaskContext::cancel`]).
    cancel: CancellationToken,
    hand_back: Arc<AtomicBool>,
}

impl TryControl {
    /// Stops the try and gives it back for another worker (shutdown past its grace).
    pub fn hand_back(&self) {
        self.hand_back.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    fn handing_back(&self) -> bool {
        self.hand_back.load(Ordering::SeqCst)
    }
}

/// How a try ended, as the worker sees it; each end is recorded its own way.
enum TryEnd {
    /// The kind ran, or the try could not start: its outcome is recorded.
    Finished(Box<Finished>),
    /// The worker is draining and its stop interrupted the kind: the try is given back,
    /// to run again without counting against the retry budget.
    HandedBack,
    /// The lease was lost (another try or a person took over): nothing is recorded.
    LeaseLost,
}

/// What a try that finished leaves to record.
struct Finished {
    outcome: Outcome,
    /// The task, when the try got as far as finding it (its retry policy, its callbacks).
    task: Option<Task>,
    /// Whether the kind ran a process (a command, an ECS task): a success records exit
    /// code 0.
    ran_process: bool,
    /// Where an approval's request goes ([`nightshift_core::approval::request_callback`]).
    approval_callback: Option<Callback>,
}

/// A try ready to run.
struct Prepared {
    task: Task,
    kind: TaskKind,
    approval_callback: Option<Callback>,
}

/// The try's log: its context, which holds the log's writer, and the drain that stores
/// the lines.
struct TryLog {
    ctx: TaskContext,
    drain: tokio::task::JoinHandle<TryProgress>,
}

impl TryLog {
    fn system(&self, line: impl Into<String>) {
        self.ctx.system(line);
    }

    /// Closes the log and waits for its drain; returns what the drain did not store
    /// (the last batch), for the caller to store with the try's end.
    async fn close(self) -> TryProgress {
        drop(self.ctx);
        self.drain.await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "log drain ended abnormally");
            TryProgress::default()
        })
    }
}

/// Runs one claimed try to its recorded end. Never fails: every problem is the try's
/// outcome, a warning, or (for a lost lease) nothing at all.
#[tracing::instrument(
    name = "try",
    skip_all,
    fields(
        dag_id = %running.run().dag_id,
        run_id = %running.run().run_id,
        task_id = %running.instance().task_id,
        try_number = running.instance().try_number,
    )
)]
pub(crate) async fn run_try(
    shared: Arc<Shared>,
    running: RunningTry,
    control: TryControl,
    leased_at: Instant,
) {
    let config = &shared.config;
    // The lease: heartbeated on its own task for the whole try; losing it stops the kind.
    let mut heartbeat = Heartbeat::start(
        running.lease().clone(),
        config.lease,
        config.heartbeat_interval,
        leased_at,
        control.cancel.clone(),
    );
    let (log, rendered) = open_log(&shared, &running, &control);
    let (try_number, max_tries) = tries(running.instance());
    log.system(format!(
        "try {try_number} of {max_tries} on worker {} ({})",
        config.id, config.hostname
    ));
    tracing::info!("try started");

    let end = run_kind(
        &shared,
        &running,
        &control,
        &log.ctx,
        rendered,
        &mut heartbeat,
    )
    .await;
    // The lease may be lost after the kind ended, before its heartbeats stopped.
    let end = match heartbeat.stop().await {
        Some(_) => TryEnd::LeaseLost,
        None => end,
    };
    let now = config.clock.now();
    match end {
        TryEnd::LeaseLost => walk_away(running.lease(), log).await,
        TryEnd::HandedBack => give_back(&shared.store, running, log, now).await,
        TryEnd::Finished(finished) => record(&shared, running, log, finished, now).await,
    }
}
/// Opens the try's log: its context, and the drain that stores its lines (and its
/// rendered fields, once they are sent on the returned channel) under the try's lease.
fn open_log(
    shared: &Shared,
    running: &RunningTry,
    control: &TryControl,
) -> (TryLog, oneshot::Sender<serde_json::Value>) {
    // The log masks the connections' secrets in every line before it cuts one.
    let (log, rx) = LogChannel::with_secrets(shared.config.log_limits, shared.secrets.clone());
    let (rendered_tx, rendered_rx) = oneshot::channel();
    let drain =
        tokio::spawn(log_drain::drain(running.lease().clone(), rx, rendered_rx).in_current_span());
    let (run, instance) = (running.run(), running.instance());
    let ctx = TaskContext {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: instance.task_id.clone(),
        try_number: tries(instance).0,
        map_index: instance.map_index,
        cancel: control.cancel.clone(),
        timeout: None,
        try_timeout: None,
        wakes: 0,
        log,
        external: ExternalJob::default(),
    };
    (TryLog { ctx, drain }, rendered_tx)
}

/// The try's number and the instance's tries in all.
fn tries(instance: &TaskInstance) -> (u32, u32) {
    (
        u32::try_from(instance.try_number).unwrap_or(0),
        u32::try_from(instance.max_tries).unwrap_or(0),
    )
}

/// Prepares the try and runs its kind, for as long as the lease holds.
async fn run_kind(
    shared: &Shared,
    running: &RunningTry,
    control: &TryControl,
    ctx: &TaskContext,
    rendered: oneshot::Sender<serde_json::Value>,
    heartbeat: &mut Heartbeat,
) -> TryEnd {
    let prepared = tokio::select! {
        prepared = prepare(shared, running, ctx.try_number, rendered) => prepared,
        _ = heartbeat.lost() => return TryEnd::LeaseLost,
    };
    let p = match prepared {
        Ok(p) => p,
        Err(outcome) => {
            if let Outcome::Failed { error, .. } = &outcome {
                ctx.system(error.clone());
            }
            return TryEnd::Finished(Box::new(Finished {
                outcome,
                task: None,
                ran_process: false,
                approval_callback: None,
            }));
        }
    };
    if !running.resumed() {
        record_start(running.instance());
    }
    // A resumed waiting try's timeout counts from its first start, not from this wake.
    let waited = match (running.resumed(), running.instance().start_date) {
        (true, Some(first)) => (shared.config.clock.now() - first)
            .to_std()
            .unwrap_or_default(),
        _ => std::time::Duration::ZERO,
    };
    let ctx = TaskContext {
        timeout: p.task.timeout.map(|t| t.saturating_sub(waited)),
        try_timeout: p.task.timeout,
        wakes: u32::try_from(running.reschedules()).unwrap_or(0),
        external: external_job(shared, running, p.kind.name()).await,
        ..ctx.clone()
    };
    // Losing the lease drops the running kind at once: a command's process group is
    // SIGKILLed without the usual SIGTERM grace, as the next try may start as soon as the
    // lease runs out (an ECS task is left running for the next try to re-attach to).
    let outcome = tokio::select! {
        biased;
        _ = heartbeat.lost() => {
            ctx.system("lease lost: the try is stopped at once (its processes are killed)");
            return TryEnd::LeaseLost;
        }
        outcome = p.kind.run(&ctx) => outcome,
    };
    // Handed back only if the stop actually interrupted it: a try that ended on its own
    // just before the grace ran out keeps its outcome.
    if control.handing_back() && outcome == Outcome::Cancelled {
        return TryEnd::HandedBack;
    }
    TryEnd::Finished(Box::new(Finished {
        outcome,
        ran_process: matches!(p.kind, TaskKind::Command(_) | TaskKind::Ecs(_)),
        task: Some(p.task),
        approval_callback: p.approval_callback,
    }))
}

/// Records nothing: the try is no longer ours. Its last log lines are stored all the same.
async fn walk_away(lease: &TryLease, log: TryLog) {
    log.system("lease lost: another try or a person took over; this try's outcome is not recorded");
    let tail = log.close().await;
    log_drain::store_progress(lease, &tail).await;
}

/// Gives the try back for another worker (this one is shutting down), after its last log
/// lines.
async fn give_back(store: &Store, running: RunningTry, log: TryLog, now: DateTime<Utc>) {
    log.system("worker shutting down: the try is handed back and will run again");
    let tail = log.close().await;
    log_drain::store_progress(running.lease(), &tail).await;
    match running.hand_back(now).await {
        Ok(_) => tracing::info!("try handed back"),
        Err(error) if error.is_stale() => {
            tracing::warn!(%error, "cannot hand the try back: it is no longer ours")
        }
        Err(error) => {
            tracing::warn!(%error, "cannot hand the try back; its lease will expire and the scheduler reaps it")
        }
    }
    store.wake(Wake::Scheduler).await;
}

/// Records the try's outcome, with the log's last lines and the task's callback.
async fn record(
    shared: &Shared,
    running: RunningTry,
    log: TryLog,
    finished: Box<Finished>,
    now: DateTime<Utc>,
) {
    let (try_number, max_tries) = tries(running.instance());
    let task = finished.task.as_ref();
    let lease = running.lease().clone();
    let policy = task.map(decide::retry_policy);
    let fin = decide::finish(
        &finished.outcome,
        &TryFacts {
            try_number,
            max_tries,
            policy: policy.as_ref(),
            jitter: decide::jitter((lease.ti_id(), lease.try_number(), now.timestamp_nanos_opt())),
            ran_process: finished.ran_process,
            now,
        },
    );
    let fin = connections::mask_finish(fin, &shared.secrets.snapshot());
    log.system(describe(&fin, try_number, max_tries));
    let outcome = TryOutcome {
        new_state: fin.state,
        error: fin.error.clone(),
        exit_code: fin.exit_code,
        output: fin.output.clone(),
        next_retry_at: fin.next_retry_at,
        now,
        callback: task.and_then(|task| {
            let approval = finished.approval_callback.as_ref();
            callback_request(&running, task, approval, &fin, now)
        }),
        // The log's last lines (most often all of a short try's) commit with the outcome.
        progress: log.close().await,
    };
    let finished_metrics = FinishMetrics::of(&running, task);
    match finish_patiently(running, outcome, shared.config.lease * 2).await {
        Ok(()) => {
            finished_metrics.record(fin.state, now);
            tracing::info!(state = %fin.state, error = fin.error.as_deref(), "try finished")
        }
        Err((error, outcome)) => {
            if error.is_stale() {
                tracing::warn!(%error, state = %fin.state, "outcome not recorded: a newer try or a person won");
            } else {
                tracing::warn!(%error, state = %fin.state, "cannot record the outcome; the scheduler reaps the try once its lease expires");
            }
            log_drain::store_progress(&lease, &outcome.progress).await;
            return;
        }
    }
    shared.store.wake(Wake::Scheduler).await;
}

/// Stores the try's outcome, retrying with backoff while the database is unreachable, for
/// up to `patience`. Safe to repeat: the write is a compare-and-set on the try's lease, so
/// once the scheduler has reaped the try (its lease expired during the outage) or a person
/// took it over, the answer is `Stale` and the outcome is given up. A failure gives the
/// outcome back, whose log lines still belong in the log.
async fn finish_patiently(
    mut running: RunningTry,
    mut outcome: TryOutcome,
    patience: std::time::Duration,
) -> Result<(), (StoreError, TryOutcome)> {
    let mut patience = Patience::new(patience);
    loop {
        match running.finish(outcome).await {
            Ok(_) => return Ok(()),
            Err(FinishError::Failed {
                error,
                running: held,
                outcome: unrecorded,
            }) if patience.wait(&error).await => {
                running = *held;
                outcome = *unrecorded;
            }
            Err(
                FinishError::Lost { error, outcome } | FinishError::Failed { error, outcome, .. },
            ) => return Err((error, *outcome)),
        }
    }
}

/// Backoff for a store operation retried while it fails: 0.1 s doubling to 5 s, for up
/// to a patience.
struct Patience {
    deadline: Instant,
    backoff: std::time::Duration,
}

impl Patience {
    fn new(patience: std::time::Duration) -> Patience {
        Patience {
            deadline: Instant::now() + patience,
            backoff: std::time::Duration::from_millis(100),
        }
    }

    /// Waits before the next attempt after `error`; false, at once, when the patience is
    /// spent or the error is `Stale` (retrying cannot change it).
    async fn wait(&mut self, error: &StoreError) -> bool {
        if error.is_stale() || Instant::now() + self.backoff > self.deadline {
            return false;
        }
        tracing::warn!(%error, retry_in = ?self.backoff, "database operation failed; retrying");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(std::time::Duration::from_secs(5));
        true
    }
}

/// Runs a store operation, retrying with [`Patience`] while it fails; a `Stale` answer is
/// final at once.
async fn retry_store<T, F, Fut>(patience: std::time::Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut patience = Patience::new(patience);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if patience.wait(&error).await => {}
            Err(error) => return Err(error),
        }
    }
}

/// Records how long the try waited in its queue and from its claim to its kind starting.
fn record_start(instance: &TaskInstance) {
    let seconds = |d: chrono::TimeDelta| d.to_std().map_or(0.0, |d| d.as_secs_f64());
    if let (Some(queued), Some(claimed_at)) = (instance.queued_at, instance.start_date) {
        metrics::histogram!("nightshift_task_queue_wait_seconds")
            .record(seconds(claimed_at - queued));
    }
    if let Some(claimed_at) = instance.start_date {
        metrics::histogram!("nightshift_task_claim_to_start_seconds")
            .record(seconds(Utc::now() - claimed_at));
    }
}

/// What the metrics of a recorded try need, taken before the try's handle is spent.
struct FinishMetrics {
    dag_id: String,
    kind: &'static str,
    started: Option<DateTime<Utc>>,
}

impl FinishMetrics {
    fn of(running: &RunningTry, task: Option<&Task>) -> FinishMetrics {
        FinishMetrics {
            dag_id: running.run().dag_id.clone(),
            kind: task.map_or("unknown", |t| t.kind.name()),
            started: running.instance().start_date,
        }
    }

    /// Records a recorded try's duration and outcome by DAG and task kind.
    fn record(self, state: nightshift_core::state::TaskState, now: DateTime<Utc>) {
        let labels = [
            ("dag_id", self.dag_id),
            ("kind", self.kind.to_owned()),
            ("state", state.as_str().to_owned()),
        ];
        if let Some(started) = self.started {
            let took = (now - started).to_std().map_or(0.0, |d| d.as_secs_f64());
            metrics::histogram!("nightshift_task_duration_seconds", &labels).record(took);
        }
        metrics::counter!("nightshift_task_finished_total", &labels).increment(1);
    }
}

/// Loads the DAG, finds and renders the task, hands its rendered fields to the log drain
/// (stored with the next log batch, or with the outcome), and maps it to a runnable kind.
async fn prepare(
    shared: &Shared,
    running: &RunningTry,
    try_number: u32,
    rendered_fields: oneshot::Sender<serde_json::Value>,
) -> Result<Prepared, Outcome> {
    let store = &shared.store;
    let (claimed_run, instance) = (running.run(), running.instance());
    let dag_id = &claimed_run.dag_id;
    let task_id = &instance.task_id;
    // A database that is away for a moment is not the task's failure: reads are retried
    // while the lease is kept (a lost lease stops this try anyway).
    let patience = shared.config.lease * 2;
    let dag = match shared
        .dags
        .get(store, dag_id, running.dag_hash(), patience)
        .await
    {
        Ok(Some(dag)) => dag,
        Ok(None) => {
            return Err(Outcome::fatal(match running.dag_hash() {
                None => format!("DAG {dag_id} is no longer known"),
                Some(hash) => format!(
                    "the definition of DAG {dag_id} at version {hash} was not kept (versions \
                     loaded before nightshift kept definitions have only their text); clear \
                     the task without keeping the run's version to run the current one"
                ),
            }))
        }
        Err(err) => return Err(Outcome::retryable(err.to_string())),
    };
    let Some(task) = dag.tasks.get(task_id) else {
        return Err(Outcome::fatal(format!(
            "task {task_id} is no longer in DAG {dag_id}"
        )));
    };
    let instances = if render::needs_upstream_outputs(task) {
        retry_store(patience, || {
            store.list_task_instances_of(claimed_run.id, &task.depends_on)
        })
        .await
        .map_err(|e| Outcome::retryable(format!("cannot read the run's task instances: {e}")))?
    } else {
        Vec::new()
    };
    let outputs = render::collect_outputs(
        &task.depends_on,
        instances
            .iter()
            .map(|i| (i.task_id.as_str(), i.map_index, i.output.as_ref())),
    );
    // Values from a secret store are fetched (and masked from then on) before anything
    // is rendered or logged.
    let fetch_failed = |e: FetchError| {
        if e.is_retryable() {
            Outcome::retryable(e.to_string())
        } else {
            Outcome::fatal(e.to_string())
        }
    };
    let secrets = shared
        .secret_store
        .resolve(&render::task_secret_references(task))
        .await
        .map_err(fetch_failed)?;
    let mut known = std::borrow::Cow::Borrowed(&shared.config.connections);
    if let Some(name) = task.kind.connection() {
        if known.get(name).is_none() {
            if let Some(found) = shared
                .secret_store
                .connection(name)
                .await
                .map_err(fetch_failed)?
            {
                known.to_mut().insert(found);
            }
        }
    }
    let run = RunInfo {
        dag_id: claimed_run.dag_id.clone(),
        run_id: claimed_run.run_id.clone(),
        logical_date: claimed_run.logical_date,
        data_interval_start: claimed_run.data_interval_start,
        data_interval_end: claimed_run.data_interval_end,
        conf: claimed_run.conf.clone(),
    };
    let rendered = render::render_task(&RenderParams {
        dag: &dag,
        task,
        run: &run,
        map_index: instance.map_index,
        try_number,
        upstream_outputs: &outputs,
        env: &shared.template_env,
        secrets: &secrets,
    })
    .map_err(|e| {
        // A template error is the DAG's, not the worker's: retrying renders the same.
        Outcome::fatal(format!("cannot render task {task_id}: {e}"))
    })?;
    let shown = render::mask_fields(
        &rendered.fields,
        &connections::refs(&shared.secrets.snapshot()),
    );
    // The drain is alive until the try's context is dropped, after this returns.
    let _ = rendered_fields.send(shown);
    let mut kind = decide::task_kind(&rendered.kind).map_err(|e| Outcome::fatal(e.to_string()))?;
    connections::attach(&mut kind, &known).map_err(|e| Outcome::fatal(e.to_string()))?;
    if let TaskKind::Require(spec) = &mut kind {
        spec.runs = Some(crate::kind::require::RequiredRuns::new(store.clone()));
    }
    Ok(Prepared {
        approval_callback: nightshift_core::approval::request_callback(&dag, task).cloned(),
        task: task.clone(),
        kind,
    })
}

/// The try's link to an external job: the instance's `external_id` (kept by the store
/// only while no worker recorded an outcome for that job, so it names a job whose watcher
/// died), whether the previous try ended without storing one, and a recorder that stores
/// this try's id on the instance and its attempt at once.
async fn external_job(shared: &Shared, running: &RunningTry, kind: &'static str) -> ExternalJob {
    let instance = running.instance();
    let previous_try = instance.try_number - 1;
    let unrecorded_previous_try = if previous_try >= 1 {
        match shared.store.list_attempts(instance.id).await {
            Ok(attempts) => attempts
                .iter()
                .find(|a| a.try_number == previous_try)
                .filter(|a| a.external_id.is_none())
                .and_then(|_| u32::try_from(previous_try).ok()),
            Err(error) => {
                tracing::warn!(%error, "cannot read the previous attempts; no re-attach by startedBy");
                None
            }
        }
    } else {
        None
    };
    let lease = running.lease().clone();
    ExternalJob::new(
        instance.external_id.clone(),
        unrecorded_previous_try,
        std::sync::Arc::new(shared.config.env.clone()),
        std::sync::Arc::new(move |id: String| {
            let lease = lease.clone();
            Box::pin(async move {
                match lease.set_external_id(&id, kind, Utc::now()).await {
                    Ok(()) => Ok(()),
                    Err(error) if error.is_stale() => {
                        Err(RecordError::LeaseLost(error.to_string()))
                    }
                    Err(error) => Err(RecordError::Store(error.to_string())),
                }
            })
        }),
    )
    .with_installation(&shared.installation)
}

/// The closing system line of a try.
fn describe(fin: &decide::Finish, try_number: u32, max_tries: u32) -> String {
    use nightshift_core::state::TaskState;
    if fin.state == TaskState::AwaitingInput {
        let until = fin
            .next_retry_at
            .map(|at| format!(" (its timeout decides at {})", at.to_rfc3339()))
            .unwrap_or_default();
        return format!(
            "try {try_number} of {max_tries} awaits input ({}): its worker slot is free until              an operator approves or rejects it{until}",
            fin.state
        );
    }
    if let (TaskState::UpForReschedule, Some(at)) = (fin.state, fin.next_retry_at) {
        return format!(
            "try {try_number} of {max_tries} waits ({}): its worker slot is free until the next poke at {}",
            fin.state,
            at.to_rfc3339()
        );
    }
    let mut text = format!("try {try_number} of {max_tries} ended: {}", fin.state);
    if let Some(code) = fin.exit_code {
        text.push_str(&format!(" (exit code {code})"));
    }
    if let Some(error) = &fin.error {
        text.push_str(&format!(": {error}"));
    }
    if let Some(at) = fin.next_retry_at {
        text.push_str(&format!("; next try at {}", at.to_rfc3339()));
    }
    text
}

/// The task's callback for the new state, if it has one; it goes to the outbox with the
/// outcome. An approval's request goes to `approval` (the DAG's `on_approval_requested`,
/// else where failures go), with the message and the deadline.
fn callback_request(
    running: &RunningTry,
    task: &Task,
    approval: Option<&Callback>,
    fin: &decide::Finish,
    now: chrono::DateTime<Utc>,
) -> Option<NewCallback> {
    let (run, instance) = (running.run(), running.instance());
    if fin.state == nightshift_core::state::TaskState::AwaitingInput {
        let output = fin.output.as_ref();
        return approval.map(|callback| NewCallback {
            kind: CallbackKind::Task,
            event: CallbackEvent::ApprovalRequested,
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            task_id: Some(instance.task_id.clone()),
            map_index: instance.map_index,
            try_number: instance.try_number,
            callback: callback.clone(),
            payload: json!({
                "state": fin.state.as_str(),
                "error": null,
                "message": output.and_then(|o| o.get("message")),
                "timeout_at": fin.next_retry_at,
            }),
            now,
        });
    }
    let (event, callback) = decide::callback_for(task, fin.state)?;
    Some(NewCallback {
        kind: CallbackKind::Task,
        event,
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: Some(instance.task_id.clone()),
        map_index: instance.map_index,
        try_number: instance.try_number,
        callback: callback.clone(),
        payload: json!({
            "state": fin.state.as_str(),
            "error": fin.error,
            "exit_code": fin.exit_code,
            "next_retry_at": fin.next_retry_at,
            "max_tries": instance.max_tries,
            "hostname": instance.hostname,
        }),
        now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_definition_that_does_not_read_names_its_dag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let store = Store::connect(&url).await.expect("connect sqlite");
        store.migrate().await.expect("migrate");
        store
            .upsert_dag(&nightshift_store::DagUpsert {
                dag_id: "broken".to_owned(),
                file_path: "dags/broken.toml".to_owned(),
                definition: serde_json::json!({ "not": "a DAG" }),
                source_hash: "h1".to_owned(),
                schedule: None,
                timezone: "UTC".to_owned(),
                description: None,
                owner: None,
                tags: vec![],
                is_paused: false,
                now: chrono::Utc::now(),
            })
            .await
            .expect("upsert");
        let cache = DagCache::default();
        let err = cache
            .get(&store, "broken", Some("h1"), std::time::Duration::ZERO)
            .await
            .expect_err("a definition that does not read");
        assert!(
            matches!(&err, DefinitionError::Parse { dag_id, .. } if dag_id == "broken"),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("the stored definition of DAG broken does not read: "));
    }

    #[test]
    fn closing_lines_read_well() {
        fn check(fin: decide::Finish, expected: &str) {
            assert_eq!(describe(&fin, 2, 3), expected);
        }
        let base = decide::Finish {
            state: nightshift_core::state::TaskState::Success,
            error: None,
            exit_code: Some(0),
            output: None,
            next_retry_at: None,
        };
        check(base.clone(), "try 2 of 3 ended: success (exit code 0)");
        check(
            decide::Finish {
                state: nightshift_core::state::TaskState::UpForRetry,
                error: Some("exited with code 1".into()),
                exit_code: Some(1),
                next_retry_at: chrono::DateTime::from_timestamp(1_767_225_600, 0),
                ..base.clone()
            },
            "try 2 of 3 ended: up_for_retry (exit code 1): exited with code 1; next try at 2026-01-01T00:00:00+00:00",
        );
        check(
            decide::Finish {
                state: nightshift_core::state::TaskState::UpForReschedule,
                exit_code: None,
                next_retry_at: chrono::DateTime::from_timestamp(1_767_225_600, 0),
                ..base
            },
            "try 2 of 3 waits (up_for_reschedule): its worker slot is free until the next poke at 2026-01-01T00:00:00+00:00",
        );
    }
}
