//! Approval timeouts, checked every tick at the tick's `now`: an `approval` instance still
//! awaiting input when its timeout (kept in `next_retry_at`) falls is decided as its task's
//! `on_timeout` says (approve, reject, or fail the try, whose retries then apply), through
//! the same [`Store::decide_approval`](nightshift_store::Store::decide_approval) a person's
//! decision takes. Several schedulers may check at once: the decision is a compare-and-set,
//! so one of them writes it and the others lose harmlessly.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nightshift_core::approval::{self, Decision};
use nightshift_core::retry::can_retry;
use nightshift_store::ApprovalDecision;
use tracing::instrument;

use crate::dags::CachedDag;
use crate::scheduler::{store_err, Scheduler, SchedulerError};

/// Timed-out approvals decided per tick (oldest first); the rest wait for the next tick.
const MAX_DECIDED: i64 = 500;

impl Scheduler {
    /// Decides every approval whose timeout fell at or before `now`; returns how many this
    /// scheduler decided.
    #[instrument(skip_all)]
    pub(crate) async fn check_approvals(
        &self,
        dags: &BTreeMap<String, CachedDag>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let any = dags
            .values()
            .any(|d| d.dag.tasks.values().any(|t| approval::of(t).is_some()));
        if !any {
            return Ok(0);
        }
        let due = self
            .store
            .approvals_due(now, MAX_DECIDED)
            .await
            .map_err(store_err("reading approvals whose time is up"))?;
        let mut decided = 0;
        for (ti, run_id) in due {
            let Some((task, spec)) = dags
                .get(&ti.dag_id)
                .and_then(|d| d.dag.tasks.get(&ti.task_id))
                .and_then(|t| Some((t, approval::of(t)?)))
            else {
                // The task left the DAG (the run's evaluation removes it) or is no longer
                // an approval: a person decides, clears or marks it.
                continue;
            };
            let waited = ti
                .start_date
                .and_then(|start| (now - start).to_std().ok())
                .or(task.timeout)
                .unwrap_or_default();
            let tries_left = can_retry(
                u32::try_from(ti.try_number).unwrap_or(0),
                u32::try_from(ti.max_tries).unwrap_or(0),
            );
            let decision = Decision::on_timeout(spec.on_timeout, waited, tries_left, now);
            let request = ApprovalDecision::new(ti, run_id, task, decision);
            match self.store.decide_approval(&request).await {
                Ok(written) => {
                    tracing::info!(dag_id = %written.dag_id, run_id = %request.run_id,
                        task_id = %written.task_id, state = %written.state,
                        "approval timed out; decided by on_timeout");
                    decided += 1;
                }
                Err(err) if err.is_stale() => {
                    tracing::debug!(error = %err, "the approval was decided meanwhile");
                }
                Err(err) => return Err(store_err("deciding a timed-out approval")(err)),
            }
        }
        Ok(decided)
    }
}
