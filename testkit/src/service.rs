//! A role (a worker, a scheduler) running in the background of a test until the test
//! stops it, as its process would until SIGTERM.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a stopped role may take to wind down before the test fails.
const STOP_PATIENCE: Duration = Duration::from_secs(60);

/// A role started by [`spawn`]; a role that returns an error fails the test.
pub struct Service {
    name: &'static str,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Starts `run` (given the token that stops it) as a background task, e.g.
/// `spawn("worker", |stop| Worker::new(store.clone(), config).run(stop))`.
pub fn spawn<F, Fut, E>(name: &'static str, run: F) -> Service
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Debug,
{
    let cancel = CancellationToken::new();
    let running = run(cancel.clone());
    let handle = tokio::spawn(async move {
        if let Err(error) = running.await {
            panic!("the {name} failed: {error:?}");
        }
    });
    Service {
        name,
        cancel,
        handle,
    }
}

impl Service {
    /// Cancels the role and waits until it has shut down cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        let name = self.name;
        tokio::time::timeout(STOP_PATIENCE, self.handle)
            .await
            .unwrap_or_else(|_| panic!("the {name} did not stop within {STOP_PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("the {name} task: {e}"));
    }

    /// Ends the role without a shutdown, as if its process had been killed.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}
