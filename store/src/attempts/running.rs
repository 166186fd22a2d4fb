//! The handle on a claimed try. [`Store::claim`] returns one [`RunningTry`] per try, and
//! it is the only way to touch that try: extend its lease, store its progress and its
//! external job's id, then finish it or hand it back, both of which consume the handle.
//! Its lease key is private, so no other code can write to a try it does not hold; the
//! scheduler's reap of an expired lease ([`Store::reap`]) is the one write to a running
//! try without it, as it acts on a try nobody holds any more.
//!
//! The tasks that run beside a try (its heartbeat, its log drain, its external-job
//! recorder) share a [`TryLease`]: it keeps the lease and stores progress, but cannot
//! end the try.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use serde_json::Value;

use super::{FinishAttempt, LeaseKey};
use crate::{DagRun, NewCallback, Store, StoreError, TaskInstance, TryProgress};

/// A claimed try, held by the worker that claimed it (`running` at its new try, leased
/// to that worker, with an attempt row). Every write through it is guarded by its lease
/// (`state = running AND try_number AND lease_owner`): once the try was reaped, cleared,
/// marked or taken by a newer try, each answers [`StoreError::Stale`] and writes nothing.
///
/// Dropping it without [`finish`](Self::finish) or [`hand_back`](Self::hand_back) leaves
/// the try to its lease: once that runs out, the scheduler reaps it.
#[derive(Debug)]
pub struct RunningTry {
    lease: TryLease,
    instance: TaskInstance,
    run: DagRun,
    attempt_id: i64,
    dag_hash: Option<String>,
    reschedules: i32,
}

/// The part of a [`RunningTry`] that tasks running beside it share: it extends the
/// lease and stores progress and the external job's id, but cannot end the try. Cheap to
/// clone.
#[derive(Clone)]
pub struct TryLease {
    store: Store,
    key: Arc<LeaseKey>,
}

impl std::fmt::Debug for TryLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryLease")
            .field("ti_id", &self.key.ti_id)
            .field("try_number", &self.key.try_number)
            .field("worker_id", &self.key.worker_id)
            .finish()
    }
}

/// How a try ended, for [`RunningTry::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct TryOutcome {
    /// `success`, `failed`, `up_for_retry` or `skipped`.
    pub new_state: TaskState,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    /// Stored as the instance's output when `Some`.
    pub output: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// The task's callback for the new state, written to the outbox in the same
    /// transaction, so an alert is never lost nor sent for an outcome that was not stored.
    pub callback: Option<NewCallback>,
    /// The try's log lines (and rendered fields) not stored yet, stored in the same
    /// transaction; the rendered fields replace the stored ones when given.
    pub progress: TryProgress,
}

/// Why [`RunningTry::finish`] recorded nothing. Either way the outcome comes back, so its
/// log lines can still be stored ([`TryLease::store_progress`]).
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    /// The try is no longer this worker's ([`StoreError::Stale`]): reaped, cleared,
    /// marked, or taken by a newer try. The handle is spent.
    #[error("{error}")]
    Lost {
        error: StoreError,
        outcome: Box<TryOutcome>,
    },
    /// The store failed otherwise (it may be unreachable for a moment): the try is still
    /// held, and may be finished again.
    #[error("{error}")]
    Failed {
        error: StoreError,
        running: Box<RunningTry>,
        outcome: Box<TryOutcome>,
    },
}

impl FinishError {
    /// What the store answered.
    pub fn error(&self) -> &StoreError {
        match self {
            FinishError::Lost { error, .. } | FinishError::Failed { error, .. } => error,
        }
    }

    /// True for [`FinishError::Lost`].
    pub fn is_stale(&self) -> bool {
        matches!(self, FinishError::Lost { .. })
    }

    /// What the store answered, dropping the outcome (and the handle).
    pub fn into_error(self) -> StoreError {
        match self {
            FinishError::Lost { error, .. } | FinishError::Failed { error, .. } => error,
        }
    }
}

impl RunningTry {
    pub(crate) fn new(
        store: Store,
        worker_id: &str,
        instance: TaskInstance,
        run: DagRun,
        attempt_id: i64,
        dag_hash: Option<String>,
        reschedules: i32,
    ) -> RunningTry {
        let key = LeaseKey {
            ti_id: instance.id,
            try_number: instance.try_number,
            worker_id: worker_id.to_owned(),
        };
        RunningTry {
            lease: TryLease {
                store,
                key: Arc::new(key),
            },
            instance,
            run,
            attempt_id,
            dag_hash,
            reschedules,
        }
    }

    /// Whether the claim resumed a try that had waited without a slot
    /// (`up_for_reschedule`) rather than starting a new one: the try number, the attempt
    /// row and the instance's start date (the try's first poke) are the waiting try's.
    pub fn resumed(&self) -> bool {
        self.reschedules > 0
    }

    /// How often this try has given its slot back and been woken (0 for a new try).
    pub fn reschedules(&self) -> i32 {
        self.reschedules
    }

    /// The instance as the claim left it (`running` at this try, leased).
    pub fn instance(&self) -> &TaskInstance {
        &self.instance
    }

    /// The instance's run.
    pub fn run(&self) -> &DagRun {
        &self.run
    }

    /// The id of the try's attempt row.
    pub fn attempt_id(&self) -> i64 {
        self.attempt_id
    }

    /// The version of the DAG's definition this try runs, as its attempt row records it:
    /// the one a person's clear kept for the instance, else the DAG's current one at the
    /// claim (`None`: the DAG is gone). The worker runs exactly this version.
    pub fn dag_hash(&self) -> Option<&str> {
        self.dag_hash.as_deref()
    }

    /// The shareable part of the handle, for the tasks that run beside the try.
    pub fn lease(&self) -> &TryLease {
        &self.lease
    }

    /// [`TryLease::heartbeat`].
    pub async fn heartbeat(&self, lease: Duration) -> Result<(), StoreError> {
        self.lease.heartbeat(lease).await
    }

    /// [`TryLease::store_progress`].
    pub async fn store_progress(
        &self,
        progress: &TryProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.lease.store_progress(progress, now).await
    }

    /// [`TryLease::set_external_id`].
    pub async fn set_external_id(
        &self,
        external_id: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.lease.set_external_id(external_id, kind, now).await
    }

    /// Records the try's outcome: the instance's new state, its attempt row, the
    /// callback and the last progress, all or nothing. The instance's `external_id` is
    /// cleared (the attempt keeps it): the job it named is accounted for.
    pub async fn finish(self, outcome: TryOutcome) -> Result<TaskInstance, FinishError> {
        let finish = FinishAttempt {
            key: LeaseKey::clone(&self.lease.key),
            new_state: outcome.new_state,
            error: outcome.error,
            exit_code: outcome.exit_code,
            output: outcome.output,
            next_retry_at: outcome.next_retry_at,
            now: outcome.now,
            callback: outcome.callback,
            progress: outcome.progress,
        };
        let result = self.lease.store.finish_attempt(&finish).await;
        let outcome = || {
            Box::new(TryOutcome {
                new_state: finish.new_state,
                error: finish.error,
                exit_code: finish.exit_code,
                output: finish.output,
                next_retry_at: finish.next_retry_at,
                now: finish.now,
                callback: finish.callback,
                progress: finish.progress,
            })
        };
        match result {
            Ok(instance) => Ok(instance),
            Err(error) if error.is_stale() => Err(FinishError::Lost {
                error,
                outcome: outcome(),
            }),
            Err(error) => Err(FinishError::Failed {
                error,
                running: Box::new(self),
                outcome: outcome(),
            }),
        }
    }

    /// Gives the try back without it counting against the retry budget (a draining
    /// worker): `running → scheduled`, its attempt closed with [`super::HANDED_BACK`].
    /// [`StoreError::Stale`] when the lease was lost.
    pub async fn hand_back(self, now: DateTime<Utc>) -> Result<TaskInstance, StoreError> {
        self.lease.store.hand_back(&self.lease.key, now).await
    }
}

impl TryLease {
    /// The try's task instance.
    pub fn ti_id(&self) -> i64 {
        self.key.ti_id
    }

    /// The try's number.
    pub fn try_number(&self) -> i32 {
        self.key.try_number
    }

    /// The worker that holds the lease.
    pub fn worker_id(&self) -> &str {
        &self.key.worker_id
    }

    /// Extends the lease to `lease` from now in the database's clock.
    pub async fn heartbeat(&self, lease: Duration) -> Result<(), StoreError> {
        self.store.heartbeat(&self.key, lease).await
    }

    /// Stores what the try produced since the last call, in one transaction: its log
    /// lines, and its rendered fields if given. Returns false when the rendered fields
    /// were refused because the lease is lost (the lines are stored all the same: a
    /// try's last words belong in its log).
    pub async fn store_progress(
        &self,
        progress: &TryProgress,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.store_progress(&self.key, progress, now).await
    }

    /// Records an external job's id (an ECS task ARN) on the instance and its attempt,
    /// at once, so a restarted worker can re-attach to it; `kind` is the task kind whose
    /// cancel API stops the job should the try be given up (see [`crate::ExternalStop`]).
    pub async fn set_external_id(
        &self,
        external_id: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store
            .set_external_id(&self.key, external_id, kind, now)
            .await
    }
}
