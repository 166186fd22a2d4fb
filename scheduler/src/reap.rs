//! Reaping: a running try whose worker stopped heartbeating (killed, machine lost) goes to
//! `up_for_retry` with a backoff when tries are left, else `failed`; the late worker's own
//! finish then loses its compare-and-set.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{Callback, Task};
use nightshift_core::retry::{can_retry, RetryPolicy};
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{CallbackEvent, CallbackKind, NewCallback, Reap, TaskInstance};
use tracing::instrument;

use crate::callbacks::event_payload;
use crate::dags::CachedDag;
use crate::scheduler::{store_err, Scheduler, SchedulerError};

/// The retry policy of `task` (Airflow's defaults when the task is gone from the DAG).
pub(crate) fn retry_policy(task: Option<&Task>) -> RetryPolicy {
    task.map_or_else(RetryPolicy::default, |task| RetryPolicy {
        retries: task.retries,
        retry_delay: task.retry_delay,
        exponential_backoff: task.retry_exponential_backoff,
        max_retry_delay: task.max_retry_delay,
    })
}

impl Scheduler {
    /// Reaps up to `max_reaped_per_tick` leases expired in the database's clock (`now`, the
    /// scheduler's, dates the reaped tries and their retries); returns how many were reaped.
    pub(crate) async fn reap_expired(
        &self,
        dags: &BTreeMap<String, CachedDag>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let expired = self
            .store
            .expired_leases(self.config.max_reaped_per_tick)
            .await
            .map_err(store_err("listing expired leases"))?;
        let mut reaped = 0;
        for ti in &expired {
            let task = dags
                .get(&ti.dag_id)
                .and_then(|cached| cached.dag.tasks.get(&ti.task_id));
            reaped += usize::from(self.reap_one(ti, task, now).await?);
        }
        Ok(reaped)
    }

    #[instrument(skip_all, fields(dag_id = %ti.dag_id, run_id, task_id = %ti.task_id,
        try_number = ti.try_number))]
    async fn reap_one(
        &self,
        ti: &TaskInstance,
        task: Option<&Task>,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let try_number = u32::try_from(ti.try_number).unwrap_or(0);
        let max_tries = u32::try_from(ti.max_tries).unwrap_or(0);
        let retry = can_retry(try_number, max_tries);
        let new_state = match TaskState::Running.on(TaskEvent::Reap { retry }) {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(error = %err, "cannot reap");
                return Ok(false);
            }
        };
        let next_retry_at = retry.then(|| {
            let delay = retry_policy(task).next_retry_delay(try_number, rand::random::<f64>());
            chrono::TimeDelta::from_std(delay)
                .ok()
                .and_then(|delta| now.checked_add_signed(delta))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
        let error = format!(
            "the lease of worker {} expired at {}: the worker stopped heartbeating (killed or lost)",
            ti.lease_owner.as_deref().unwrap_or("?"),
            ti.lease_expires_at
                .map_or_else(|| "?".to_owned(), |at| at.to_rfc3339()),
        );
        let reap = Reap {
            ti_id: ti.id,
            try_number: ti.try_number,
            new_state,
            next_retry_at,
            error: error.clone(),
            now,
        };
        match self.store.reap(&reap).await {
            Ok(_) => {}
            Err(err) if err.is_stale() => {
                tracing::debug!(error = %err, "the try ended or was reaped meanwhile");
                return Ok(false);
            }
            Err(err) => return Err(store_err("reaping an expired lease")(err)),
        }
        tracing::info!(state = %new_state, ?next_retry_at, "expired lease reaped");
        let (callback, event) = if retry {
            (task.and_then(|t| t.on_retry.as_ref()), CallbackEvent::Retry)
        } else {
            (
                task.and_then(|t| t.on_failure.as_ref()),
                CallbackEvent::Failure,
            )
        };
        if let Some(callback) = callback {
            self.enqueue_task_callback(ti, callback, event, new_state, &error, now)
                .await?;
        }
        Ok(true)
    }

    async fn enqueue_task_callback(
        &self,
        ti: &TaskInstance,
        callback: &Callback,
        event: CallbackEvent,
        state: TaskState,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let run = self
            .store
            .get_run(ti.run)
            .await
            .map_err(store_err("reading a run"))?;
        let Some(run) = run else {
            return Ok(());
        };
        tracing::Span::current().record("run_id", run.run_id.as_str());
        self.enqueue(&NewCallback {
            kind: CallbackKind::Task,
            event,
            dag_id: ti.dag_id.clone(),
            run_id: run.run_id,
            task_id: Some(ti.task_id.clone()),
            map_index: ti.map_index,
            try_number: ti.try_number,
            callback: callback.clone(),
            payload: event_payload(state.as_str(), Some(error)),
            now,
        })
        .await
    }
}
