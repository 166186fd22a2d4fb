//! Wake-ups: a state change wakes the scheduler and the workers at once instead of
//! waiting for their next poll. Inside one process a [`tokio::sync::Notify`] per role;
//! across processes PostgreSQL `NOTIFY` on [`CHANNEL`], which every process LISTENs to
//! and forwards to its own notifies. Polling stays as the safety net.
//!
//! A process sends its `NOTIFY`s from one background task that coalesces them: the
//! first wake-up of a role goes out at once, further ones within [`NOTIFY_EVERY`] are
//! folded into one. A busy worker finishing hundreds of tries a second sends a few
//! hundred notifications, not one per try, and no wake-up is ever dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Store, StoreError};

/// The PostgreSQL channel nightshift notifies on.
pub const CHANNEL: &str = "nightshift_wake";

/// Who should look at the database again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something the scheduler decides on changed (a task finished, a run was triggered).
    Scheduler,
    /// Task instances were queued.
    Workers,
}

impl Wake {
    const ALL: [Wake; 2] = [Wake::Scheduler, Wake::Workers];

    fn payload(self) -> &'static str {
        match self {
            Wake::Scheduler => "scheduler",
            Wake::Workers => "workers",
        }
    }

    fn index(self) -> usize {
        match self {
            Wake::Scheduler => 0,
            Wake::Workers => 1,
        }
    }
}

/// The shortest time between two `NOTIFY`s of one role from one process.
pub const NOTIFY_EVERY: Duration = Duration::from_millis(2);

/// The in-process side of wake-ups, shared by every clone of a [`Store`].
#[derive(Debug, Default)]
pub struct Wakeups {
    scheduler: Notify,
    workers: Notify,
    /// Roles to NOTIFY other processes about, per [`Wake`] (scheduler, workers).
    outgoing: [AtomicBool; 2],
    /// Wakes the NOTIFY sender.
    send: Notify,
    /// Set once the sender task runs.
    sender: OnceLock<()>,
}

impl Wakeups {
    /// Resolves at the next wake-up for `who` (or at once if one came since the last wait).
    pub async fn woken(&self, who: Wake) {
        match who {
            Wake::Scheduler => self.scheduler.notified().await,
            Wake::Workers => self.workers.notified().await,
        }
    }

    fn local(&self, who: Wake) {
        match who {
            Wake::Scheduler => self.scheduler.notify_one(),
            Wake::Workers => self.workers.notify_one(),
        }
    }
}

impl Store {
    /// The in-process wake-ups of this store.
    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    /// Wakes `who` in this process at once and, on PostgreSQL, in every other process
    /// through the coalescing sender (see the module's documentation). A failed NOTIFY
    /// is only logged: polling picks the change up anyway.
    pub async fn wake(&self, who: Wake) {
        self.wakeups.local(who);
        if let Backend::Postgres(pool) = &self.backend {
            let wakeups = &self.wakeups;
            wakeups.outgoing[who.index()].store(true, Ordering::SeqCst);
            wakeups.sender.get_or_init(|| {
                tokio::spawn(send_notifications(pool.clone(), wakeups.clone()));
            });
            wakeups.send.notify_one();
        }
    }

    /// Stops the NOTIFY sender, if one runs (the pool is closed).
    pub(crate) fn stop_notifications(&self) {
        self.wakeups.send.notify_one();
    }

    /// Forwards PostgreSQL notifications to this process's wake-ups until `cancel` fires,
    /// reconnecting with backoff when the connection drops. Returns at once on SQLite.
    pub async fn listen(&self, cancel: CancellationToken) -> Result<(), StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let mut listener = match PgListener::connect_with(pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "cannot LISTEN for wake-ups");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %err, "LISTEN failed");
                continue;
            }
            backoff = Duration::from_millis(100);
            // After (re)connecting, changes may have been missed: wake everyone once.
            self.wakeups.local(Wake::Scheduler);
            self.wakeups.local(Wake::Workers);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    message = listener.try_recv() => match message {
                        Ok(Some(notification)) => match notification.payload() {
                            "scheduler" => self.wakeups.local(Wake::Scheduler),
                            "workers" => self.wakeups.local(Wake::Workers),
                            _ => {}
                        },
                        // The connection was lost and will be re-established by the listener.
                        Ok(None) => {
                            self.wakeups.local(Wake::Scheduler);
                            self.wakeups.local(Wake::Workers);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "wake-up listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sends the NOTIFYs [`Store::wake`] asked for, each role at most once per
/// [`NOTIFY_EVERY`], until the pool is closed.
async fn send_notifications(pool: sqlx::PgPool, wakeups: Arc<Wakeups>) {
    loop {
        wakeups.send.notified().await;
        if pool.is_closed() {
            return;
        }
        for who in Wake::ALL {
            if !wakeups.outgoing[who.index()].swap(false, Ordering::SeqCst) {
                continue;
            }
            if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(who.payload())
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %err, "NOTIFY failed; polling will catch up");
            }
        }
        // Wake-ups asked for meanwhile are sent together after the pause; `notify_one`
        // kept a permit for them, so none is lost.
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}
