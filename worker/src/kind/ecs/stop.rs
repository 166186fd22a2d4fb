//! Stopping the ECS task of a try that was given up while nobody watched it (the
//! `external_stops` queue, see `kind::stop`): DescribeTasks, then StopTask with a reason
//! starting with [`STOP_REASON_PREFIX`] unless it already stopped.

use aws_sdk_ecs::error::DisplayErrorContext;

use super::{status, Clients, STOP_REASON_PREFIX};
use crate::kind::external::{ExternalJob, StopError, Stopped};

/// Stops the ECS task `arn` of a try that was given up (see `kind::stop`). The cluster is
/// read from the ARN (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
pub async fn stop_given_up(
    arn: &str,
    job: &ExternalJob,
    reason: &str,
) -> Result<Stopped, StopError> {
    let clients = Clients::load(job).await.map_err(StopError)?;
    let cluster = arn
        .split_once(":task/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(cluster, _)| cluster.to_owned())
        .ok_or_else(|| StopError(format!("ECS task ARN {arn:?} names no cluster")))?;
    let describe = |arn: &str| {
        clients
            .ecs
            .describe_tasks()
            .cluster(&cluster)
            .tasks(arn)
            .send()
    };
    let found = describe(arn).await.map_err(|e| {
        StopError(format!(
            "DescribeTasks of {arn}: {}",
            DisplayErrorContext(&e)
        ))
    })?;
    let Some(task) = found.tasks().first() else {
        return Ok(Stopped::AlreadyOver(format!(
            "ECS task {arn} is no longer known to ECS"
        )));
    };
    if status(task) == "STOPPED" {
        return Ok(Stopped::AlreadyOver(format!(
            "ECS task {arn} had already stopped"
        )));
    }
    let mut reason = format!("{STOP_REASON_PREFIX}{reason}");
    truncate_chars(&mut reason, 255);
    clients
        .ecs
        .stop_task()
        .cluster(&cluster)
        .task(arn)
        .reason(reason)
        .send()
        .await
        .map_err(|e| StopError(format!("StopTask of {arn}: {}", DisplayErrorContext(&e))))?;
    Ok(Stopped::Stopped(format!(
        "stopped ECS task {arn} (StopTask on cluster {cluster})"
    )))
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(super) fn truncate_chars(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
