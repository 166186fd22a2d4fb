//! The `noop` kind: succeeds at once; for joins, placeholders and benchmarks.

use super::{Interrupt, Outcome, TaskContext};

/// Succeeds with no output, unless the try was already cancelled.
pub async fn run(ctx: &TaskContext) -> Outcome {
    if ctx.cancel.is_cancelled() {
        return Interrupt::Cancelled.outcome();
    }
    Outcome::Success { output: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::tests::context;

    #[tokio::test]
    async fn succeeds_at_once() {
        assert_eq!(run(&context(None)).await, Outcome::Success { output: None });
    }

    #[tokio::test]
    async fn a_cancelled_try_does_not_succeed() {
        let ctx = context(None);
        ctx.cancel.cancel();
        assert_eq!(run(&ctx).await, Outcome::Cancelled);
    }
}
