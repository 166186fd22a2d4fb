//! Wake-ups: a state change wakes the scheduler and the workers at once instead of
//! waiting for their next poll. Inside one process a [`tokio::sync::Notify`] per role;
//! across processes PostgreSQL `NOTIFY` on [`CHANNEL`], which every process LISTENs to
//! and forwards to its own notifies. Polling stays as the safety net.
//!
//! A process coalesces its `NOTIFY`s per role: the first wake-up after a quiet spell is
//! sent by the caller before [`Store::wake`] returns (so a CLI command that exits next
//! has notified), and the ones that come while it is sent or within [`NOTIFY_EVERY`]
//! after are folded into one more, sent by a short-lived background task. A busy worker
//! finishing hundreds of tries a second sends a few hundred notifications, not one per
//! try, and no wake-up is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// The NOTIFY state of each role, by [`Wake::index`].
    outgoing: [Outgoing; 2],
}

/// One role's NOTIFYs from this process.
#[derive(Debug, Default)]
struct Outgoing {
    /// A NOTIFY is being sent, or was sent less than [`NOTIFY_EVERY`] ago.
    busy: AtomicBool,
    /// A wake-up came while busy: one more NOTIFY is owed.
    pending: AtomicBool,
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
        let Backend::Postgres(pool) = &self.backend else {
            return;
        };
        let role = &self.wakeups.outgoing[who.index()];
        if role.busy.swap(true, Ordering::SeqCst) {
            role.pending.store(true, Ordering::SeqCst);
            // The cool-down may have ended between the two lines above: then this call
            // sends (and owes nothing more), otherwise the cool-down sends for it.
            if role.busy.swap(true, Ordering::SeqCst) {
                return;
            }
            role.pending.store(false, Ordering::SeqCst);
        }
        notify(pool, who).await;
        tokio::spawn(cool_down(pool.clone(), self.wakeups.clone(), who));
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

async fn notify(pool: &sqlx::PgPool, who: Wake) {
    if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(who.payload())
        .execute(pool)
        .await
    {
        tracing::debug!(error = %err, "NOTIFY failed; polling will catch up");
    }
}

/// Holds a role's NOTIFYs [`NOTIFY_EVERY`] apart after one was sent, sending the one
/// owed by wake-ups that came meanwhile, until a pause passes with none.
async fn cool_down(pool: sqlx::PgPool, wakeups: Arc<Wakeups>, who: Wake) {
    let role = &wakeups.outgoing[who.index()];
    loop {
        tokio::time::sleep(NOTIFY_EVERY).await;
        if role.pending.swap(false, Ordering::SeqCst) {
            notify(&pool, who).await;
            continue;
        }
        role.busy.store(false, Ordering::SeqCst);
        // A wake-up that saw `busy` just before it was cleared left `pending` set; send
        // for it unless another caller took the role over (and sends) meanwhile.
        if !role.pending.load(Ordering::SeqCst) || role.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        role.pending.store(false, Ordering::SeqCst);
        notify(&pool, who).await;
    }
}
