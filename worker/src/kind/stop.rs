//! Stopping the external job of a try that was given up while no worker watched it
//! (reaped with no retries left, its run cancelled or timed out, marked or cleared by a
//! person): the store queues it (`external_stops`, see `nightshift_store::ExternalStop`)
//! with the kind that owns it, and a worker calls that kind's cancel API here.
//!
//! A kind whose jobs outlive their worker (it records an external id through
//! [`ExternalJob::record`]) adds one arm to [`stop_given_up`]: its `stop_given_up(id, job)`
//! asks whether the job still runs and stops it through the service's cancel API.

use crate::kind::external::{ExternalJob, StopError, Stopped};
use crate::kind::{athena, bigquery, ecs, redshift};

/// Stops job `external_id` of task kind `kind`; `reason` says why the try was given up.
pub async fn stop_given_up(
    kind: &str,
    external_id: &str,
    job: &ExternalJob,
    reason: &str,
) -> Result<Stopped, StopError> {
    match kind {
        "ecs" => ecs::stop::stop_given_up(external_id, job, reason).await,
        "athena" => athena::stop_given_up(external_id, job).await,
        "redshift" => redshift::stop_given_up(external_id, job).await,
        "bigquery" => bigquery::stop_given_up(external_id, job).await,
        // A require task's id names the run it waited for, which it never owned.
        "require" => Ok(Stopped::AlreadyOver(format!(
            "{external_id} is the required run, which this task only waited for: nothing to stop"
        ))),
        other => Err(StopError(format!(
            "no worker here knows how to stop a job of kind {other:?} ({external_id})"
        ))),
    }
}
