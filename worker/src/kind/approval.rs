//! The `approval` kind: asks a person to decide. The try renders its message (already
//! done by the worker's rendering), logs it and ends its claim with
//! [`Outcome::AwaitInput`]: the instance waits in `awaiting_input` without a worker slot
//! until someone approves or rejects it (UI, API, CLI) or its timeout decides
//! (`on_timeout`, applied by the scheduler). The decision, not this try, ends the try.

use nightshift_core::approval::{default_message, ApprovalTask};
use nightshift_core::duration::format_duration;

use super::{Outcome, TaskContext};

/// Asks for the decision; never fails.
pub async fn run(spec: &ApprovalTask, ctx: &TaskContext) -> Outcome {
    let message = spec
        .message
        .clone()
        .unwrap_or_else(|| default_message(&ctx.dag_id, &ctx.task_id));
    ctx.system(format!("approval requested: {message}"));
    match ctx.timeout {
        Some(timeout) => ctx.system(format!(
            "waits up to {} for an operator to approve or reject it; then on_timeout = \"{}\" \
             decides; it holds no worker slot meanwhile",
            format_duration(timeout),
            nightshift_core::approval::OnTimeout::NAMES[spec.on_timeout as usize],
        )),
        None => ctx.system(
            "waits for an operator to approve or reject it (no timeout); it holds no worker \
             slot meanwhile",
        ),
    }
    Outcome::AwaitInput {
        message,
        timeout_in: ctx.timeout,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kind::tests::context;

    #[tokio::test]
    async fn asks_with_the_message_or_a_default() {
        let spec = ApprovalTask {
            message: Some("Load 42 rows?".into()),
            on_timeout: nightshift_core::approval::OnTimeout::Reject,
        };
        let ctx = context(Some(Duration::from_secs(60)));
        assert_eq!(
            run(&spec, &ctx).await,
            Outcome::AwaitInput {
                message: "Load 42 rows?".into(),
                timeout_in: Some(Duration::from_secs(60)),
            }
        );
        let spec = ApprovalTask {
            message: None,
            ..spec
        };
        assert_eq!(
            run(&spec, &context(None)).await,
            Outcome::AwaitInput {
                message: "Task t of DAG d waits for approval.".into(),
                timeout_in: None,
            }
        );
    }
}
