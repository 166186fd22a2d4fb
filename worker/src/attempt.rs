//! One claimed try, from start to its recorded end: load the DAG, render the task, run
//! its kind while the lease is heartbeated and the log drained, then record the outcome
//! (or hand the try back, or walk away when the lease was lost).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use nightshift_core::dag::{Dag, Task};
use nightshift_core::render::{self, RenderParams, RunInfo};
use nightshift_store::{
    CallbackKind, ClaimedTask, FinishAttempt, LeaseKey, NewCallback, Store, StoreError,
    TryProgress, Wake,
};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connections;
use crate::decide::{self, TryFacts};
use crate::heartbeat::{keep_lease, LeaseEnd};
use crate::kind::external::{ExternalJob, RecordError};
use crate::kind::{Interrupt, Outcome, TaskContext, TaskKind};
use crate::log::LogChannel;
use crate::log_drain;
use crate::runtime::WorkerConfig;

/// What every try of one worker shares.
pub(crate) struct Shared {
    pub store: Store,
    pub config: WorkerConfig,
    /// The environment templates see: the worker's, minus the withheld variables.
    pub template_env: BTreeMap<String, String>,
    pub dags: DagCache,
    /// The connections' secrets, masked as `***` in everything a try stores.
    pub secrets: Arc<[String]>,
}

/// Parsed DAG definitions by DAG id, reused while the stored `source_hash` is unchanged.
#[derive(Default)]
pub(crate) struct DagCache {
    dags: Mutex<HashMap<String, (String, Arc<Dag>)>>,
    /// Held while a definition is fetched: tries that start together after a DAG changed
    /// wait for one fetch instead of each reading a definition that may be megabytes.
    fetching: tokio::sync::Mutex<()>,
}

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
    /// The definition of `dag_id` whose `source_hash` is `hash` (the claim read it), or
    /// a newer one; `Ok(None)` for a DAG the store does not know.
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
        let Some(record) = retry_store(patience, || store.get_dag(dag_id))
            .await
            .map_err(|source| DefinitionError::Read {
                dag_id: dag_id.to_owned(),
                source,
            })?
        else {
            return Ok(None);
        };
        let dag: Dag =
            serde_json::from_value(record.definition).map_err(|source| DefinitionError::Parse {
                dag_id: dag_id.to_owned(),
                source,
            })?;
        let dag = Arc::new(dag);
        self.lock()
            .insert(dag_id.to_owned(), (record.source_hash, dag.clone()));
        Ok(Some(dag))
    }

    fn cached(&self, dag_id: &str, hash: &str) -> Option<Arc<Dag>> {
        self.lock()
            .get(dag_id)
            .filter(|(cached_hash, _)| cached_hash == hash)
            .map(|(_, dag)| dag.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<Dag>)>> {
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
}

/// A try ready to run.
struct Prepared {
    task: Task,
    kind: TaskKind,
}

/// Runs one claimed try to its recorded end. Never fails: every problem is the try's
/// outcome, a warning, or (for a lost lease) nothing at all.
#[tracing::instrument(
    name = "try",
    skip_all,
    fields(
        dag_id = %claimed.run.dag_id,
        run_id = %claimed.run.run_id,
        task_id = %claimed.instance.task_id,
        try_number = claimed.instance.try_number,
    )
)]
pub(crate) async fn run_try(
    shared: Arc<Shared>,
    claimed: ClaimedTask,
    control: TryControl,
    leased_at: Instant,
) {
    let store = &shared.store;
    let config = &shared.config;
    let key = LeaseKey {
        ti_id: claimed.instance.id,
        try_number: claimed.instance.try_number,
        worker_id: config.id.clone(),
    };
    let try_number = u32::try_from(claimed.instance.try_number).unwrap_or(0);
    let max_tries = u32::try_from(claimed.instance.max_tries).unwrap_or(0);

    // The lease: heartbeated on its own task for the whole try; losing it stops the kind.
    let lost = CancellationToken::new();
    let stop_heartbeat = CancellationToken::new();
    let heartbeat = {
        let (store, key, lost, stop) = (
            store.clone(),
            key.clone(),
            lost.clone(),
            stop_heartbeat.clone(),
        );
        let (lease, interval, cancel) = (
            config.lease,
            config.heartbeat_interval,
            control.cancel.clone(),
        );
        tokio::spawn(
            async move {
                if let LeaseEnd::Lost(why) =
                    keep_lease(&store, &key, lease, interval, leased_at, &stop).await
                {
                    tracing::warn!(reason = %why, "lease lost; stopping the try without reporting it");
                    lost.cancel();
                    cancel.cancel();
                }
            }
            .in_current_span(),
        )
    };
    // A panic below must not leave the heartbeat extending a dead try's lease.
    let _stop_on_drop = stop_heartbeat.clone().drop_guard();

    // The log masks the connections' secrets in every line before it cuts one.
    let (log, rx) = LogChannel::with_secrets(config.log_limits, shared.secrets.clone());
    let (rendered_tx, rendered_rx) = oneshot::channel();
    let drain = tokio::spawn(
        log_drain::drain(store.clone(), key.clone(), rx, rendered_rx).in_current_span(),
    );
    let ctx = TaskContext {
        dag_id: claimed.run.dag_id.clone(),
        run_id: claimed.run.run_id.clone(),
        task_id: claimed.instance.task_id.clone(),
        try_number,
        map_index: claimed.instance.map_index,
        cancel: control.cancel.clone(),
        timeout: None,
        log,
        external: ExternalJob::default(),
    };
    ctx.system(format!(
        "try {try_number} of {max_tries} on worker {} ({})",
        config.id, config.hostname
    ));
    tracing::info!("try started");

    let prepared = tokio::select! {
        prepared = prepare(&shared, &claimed, try_number, rendered_tx) => prepared,
        () = lost.cancelled() => Err(PrepareError::LeaseLost),
    };
    let (outcome, task, ran_process) = match prepared {
        Ok(p) => {
            record_start(&claimed);
            let ctx = TaskContext {
                timeout: p.task.timeout,
                external: external_job(&shared, &claimed, &key).await,
                ..ctx.clone()
            };
            // Losing the lease drops the running kind at once: a command's process group
            // is SIGKILLed without the usual SIGTERM grace, as the next try may start as
            // soon as the lease runs out (an ECS task is left running for the next try to
            // re-attach to).
            let outcome = tokio::select! {
                biased;
                () = lost.cancelled() => {
                    ctx.system("lease lost: the try is stopped at once (its processes are killed)");
                    Outcome::fatal("lease lost")
                }
                outcome = p.kind.run(&ctx) => outcome,
            };
            let ran_process = matches!(p.kind, TaskKind::Command(_) | TaskKind::Ecs(_));
            (outcome, Some(p.task), ran_process)
        }
        Err(PrepareError::LeaseLost) => {
            lost.cancel();
            (Outcome::fatal("lease lost"), None, false)
        }
        Err(PrepareError::Failed(outcome)) => {
            if let Outcome::Failed { error, .. } = &outcome {
                ctx.system(error.clone());
            }
            (outcome, None, false)
        }
    };

    stop_heartbeat.cancel();
    if let Err(e) = heartbeat.await {
        tracing::warn!(error = %e, "heartbeat task ended abnormally");
    }

    let now = config.clock.now();
    if lost.is_cancelled() {
        ctx.system(
            "lease lost: another try or a person took over; this try's outcome is not recorded",
        );
        let tail = finish_log(ctx, drain).await;
        log_drain::store_progress(store, &key, &tail).await;
        return;
    }
    // Handed back only if the stop actually interrupted it: a try that ended on its own
    // just before the grace ran out keeps its outcome.
    if control.hand_back.load(Ordering::SeqCst) && outcome == Interrupt::Cancelled.outcome() {
        ctx.system("worker shutting down: the try is handed back and will run again");
        let tail = finish_log(ctx, drain).await;
        log_drain::store_progress(store, &key, &tail).await;
        match store.hand_back(&key, now).await {
            Ok(_) => tracing::info!("try handed back"),
            Err(error) if error.is_stale() => {
                tracing::warn!(%error, "cannot hand the try back: it is no longer ours")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot hand the try back; its lease will expire and the scheduler reaps it")
            }
        }
        store.wake(Wake::Scheduler).await;
        return;
    }

    let policy = task.as_ref().map(decide::retry_policy);
    let fin = decide::finish(
        &outcome,
        &TryFacts {
            try_number,
            max_tries,
            policy: policy.as_ref(),
            jitter: decide::jitter((key.ti_id, key.try_number, now.timestamp_nanos_opt())),
            ran_process,
            now,
        },
    );
    let fin = connections::mask_finish(fin, &shared.secrets);
    ctx.system(describe(&fin, try_number, max_tries));
    // The log's last lines (most often all of a short try's) commit with the outcome.
    let progress = finish_log(ctx, drain).await;

    let finish = FinishAttempt {
        key: key.clone(),
        new_state: fin.state,
        error: fin.error.clone(),
        exit_code: fin.exit_code,
        output: fin.output.clone(),
        next_retry_at: fin.next_retry_at,
        now,
        callback: task
            .as_ref()
            .and_then(|task| callback_request(&claimed, task, &fin, now)),
        progress,
    };
    match record_outcome(store, &finish, config.lease * 2).await {
        Ok(()) => {
            record_finish(&claimed, task.as_ref(), fin.state, now);
            tracing::info!(state = %fin.state, error = fin.error.as_deref(), "try finished")
        }
        Err(error) if error.is_stale() => {
            tracing::warn!(%error, state = %fin.state, "outcome not recorded: a newer try or a person won");
            log_drain::store_progress(store, &key, &finish.progress).await;
            return;
        }
        Err(error) => {
            tracing::warn!(%error, state = %fin.state, "cannot record the outcome; the scheduler reaps the try once its lease expires");
            log_drain::store_progress(store, &key, &finish.progress).await;
            return;
        }
    }
    store.wake(Wake::Scheduler).await;
}

/// Stores the try's outcome, retrying with backoff while the database is unreachable, for
/// up to `patience`. Safe to repeat: the write is a compare-and-set on the try's lease, so
/// once the scheduler has reaped the try (its lease expired during the outage) or a person
/// took it over, the answer is `Stale` and the outcome is given up.
async fn record_outcome(
    store: &Store,
    finish: &FinishAttempt,
    patience: std::time::Duration,
) -> Result<(), StoreError> {
    retry_store(patience, || store.finish_attempt(finish))
        .await
        .map(|_| ())
}

/// Runs a store operation, retrying with backoff (0.1 s doubling to 5 s) while it fails
/// for up to `patience`; a `Stale` answer is final at once (retrying cannot change it).
async fn retry_store<T, F, Fut>(patience: std::time::Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + patience;
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_stale() || Instant::now() + backoff > deadline => {
                return Err(error)
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "database operation failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// Records how long the try waited in its queue and from its claim to its kind starting.
fn record_start(claimed: &ClaimedTask) {
    let seconds = |d: chrono::TimeDelta| d.to_std().map_or(0.0, |d| d.as_secs_f64());
    let instance = &claimed.instance;
    if let (Some(queued), Some(claimed_at)) = (instance.queued_at, instance.start_date) {
        metrics::histogram!("nightshift_task_queue_wait_seconds")
            .record(seconds(claimed_at - queued));
    }
    if let Some(claimed_at) = instance.start_date {
        metrics::histogram!("nightshift_task_claim_to_start_seconds")
            .record(seconds(Utc::now() - claimed_at));
    }
}

/// Records a recorded try's duration and outcome by DAG and task kind.
fn record_finish(
    claimed: &ClaimedTask,
    task: Option<&Task>,
    state: nightshift_core::state::TaskState,
    now: chrono::DateTime<Utc>,
) {
    let labels = [
        ("dag_id", claimed.run.dag_id.clone()),
        ("kind", task.map_or("unknown", |t| t.kind.name()).to_owned()),
        ("state", state.as_str().to_owned()),
    ];
    if let Some(started) = claimed.instance.start_date {
        let took = (now - started).to_std().map_or(0.0, |d| d.as_secs_f64());
        metrics::histogram!("nightshift_task_duration_seconds", &labels).record(took);
    }
    metrics::counter!("nightshift_task_finished_total", &labels).increment(1);
}

/// Closes the try's log and waits for its drain; returns what the drain did not store
/// (the last batch), for the caller to store with the try's outcome.
async fn finish_log(ctx: TaskContext, drain: tokio::task::JoinHandle<TryProgress>) -> TryProgress {
    drop(ctx);
    drain.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "log drain ended abnormally");
        TryProgress::default()
    })
}

enum PrepareError {
    /// The try is no longer ours (its heartbeat found out).
    LeaseLost,
    /// The try cannot run; record this outcome.
    Failed(Outcome),
}

/// Loads the DAG, finds and renders the task, hands its rendered fields to the log drain
/// (stored with the next log batch, or with the outcome), and maps it to a runnable kind.
async fn prepare(
    shared: &Shared,
    claimed: &ClaimedTask,
    try_number: u32,
    rendered_fields: oneshot::Sender<serde_json::Value>,
) -> Result<Prepared, PrepareError> {
    let store = &shared.store;
    let dag_id = &claimed.run.dag_id;
    let task_id = &claimed.instance.task_id;
    // A database that is away for a moment is not the task's failure: reads are retried
    // while the lease is kept (a lost lease stops this try anyway).
    let patience = shared.config.lease * 2;
    let dag = match shared
        .dags
        .get(store, dag_id, claimed.dag_hash.as_deref(), patience)
        .await
    {
        Ok(Some(dag)) => dag,
        Ok(None) => {
            return Err(PrepareError::Failed(Outcome::fatal(format!(
                "DAG {dag_id} is no longer known"
            ))))
        }
        Err(err) => return Err(PrepareError::Failed(Outcome::retryable(err.to_string()))),
    };
    let Some(task) = dag.tasks.get(task_id) else {
        return Err(PrepareError::Failed(Outcome::fatal(format!(
            "task {task_id} is no longer in DAG {dag_id}"
        ))));
    };
    let instances = if render::needs_upstream_outputs(task) {
        retry_store(patience, || {
            store.list_task_instances_of(claimed.run.id, &task.depends_on)
        })
        .await
        .map_err(|e| {
            PrepareError::Failed(Outcome::retryable(format!(
                "cannot read the run's task instances: {e}"
            )))
        })?
    } else {
        Vec::new()
    };
    let outputs = render::collect_outputs(
        &task.depends_on,
        instances
            .iter()
            .map(|i| (i.task_id.as_str(), i.map_index, i.output.as_ref())),
    );
    let run = RunInfo {
        dag_id: claimed.run.dag_id.clone(),
        run_id: claimed.run.run_id.clone(),
        logical_date: claimed.run.logical_date,
        data_interval_start: claimed.run.data_interval_start,
        data_interval_end: claimed.run.data_interval_end,
        conf: claimed.run.conf.clone(),
    };
    let rendered = render::render_task(&RenderParams {
        dag: &dag,
        task,
        run: &run,
        map_index: claimed.instance.map_index,
        try_number,
        upstream_outputs: &outputs,
        env: &shared.template_env,
    })
    .map_err(|e| {
        // A template error is the DAG's, not the worker's: retrying renders the same.
        PrepareError::Failed(Outcome::fatal(format!("cannot render task {task_id}: {e}")))
    })?;
    let shown = render::mask_fields(&rendered.fields, &connections::refs(&shared.secrets));
    // The drain is alive until the try's context is dropped, after this returns.
    let _ = rendered_fields.send(shown);
    let mut kind = decide::task_kind(&rendered.kind)
        .map_err(|e| PrepareError::Failed(Outcome::fatal(e.to_string())))?;
    connections::attach(&mut kind, &shared.config.connections)
        .map_err(|e| PrepareError::Failed(Outcome::fatal(e.to_string())))?;
    Ok(Prepared {
        task: task.clone(),
        kind,
    })
}

/// The try's link to an external job: the instance's `external_id` (kept by the store
/// only while no worker recorded an outcome for that job, so it names a job whose watcher
/// died), whether the previous try ended without storing one, and a recorder that stores
/// this try's id on the instance and its attempt at once.
async fn external_job(shared: &Shared, claimed: &ClaimedTask, key: &LeaseKey) -> ExternalJob {
    let store = shared.store.clone();
    let previous_try = claimed.instance.try_number - 1;
    let unrecorded_previous_try = if previous_try >= 1 {
        match store.list_attempts(key.ti_id).await {
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
    let record_key = key.clone();
    ExternalJob::new(
        claimed.instance.external_id.clone(),
        unrecorded_previous_try,
        std::sync::Arc::new(shared.config.env.clone()),
        std::sync::Arc::new(move |id: String| {
            let (store, key) = (store.clone(), record_key.clone());
            Box::pin(async move {
                match store.set_external_id(&key, &id, Utc::now()).await {
                    Ok(()) => Ok(()),
                    Err(error) if error.is_stale() => {
                        Err(RecordError::LeaseLost(error.to_string()))
                    }
                    Err(error) => Err(RecordError::Store(error.to_string())),
                }
            })
        }),
    )
}

/// The closing system line of a try.
fn describe(fin: &decide::Finish, try_number: u32, max_tries: u32) -> String {
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
/// outcome.
fn callback_request(
    claimed: &ClaimedTask,
    task: &Task,
    fin: &decide::Finish,
    now: chrono::DateTime<Utc>,
) -> Option<NewCallback> {
    let (event, callback) = decide::callback_for(task, fin.state)?;
    Some(NewCallback {
        kind: CallbackKind::Task,
        event,
        dag_id: claimed.run.dag_id.clone(),
        run_id: claimed.run.run_id.clone(),
        task_id: Some(claimed.instance.task_id.clone()),
        map_index: claimed.instance.map_index,
        try_number: claimed.instance.try_number,
        callback: callback.clone(),
        payload: json!({
            "state": fin.state.as_str(),
            "error": fin.error,
            "exit_code": fin.exit_code,
            "next_retry_at": fin.next_retry_at,
            "max_tries": claimed.instance.max_tries,
            "hostname": claimed.instance.hostname,
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
                ..base
            },
            "try 2 of 3 ended: up_for_retry (exit code 1): exited with code 1; next try at 2026-01-01T00:00:00+00:00",
        );
    }
}
