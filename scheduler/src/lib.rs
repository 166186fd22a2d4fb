//! The scheduler: loads DAG files into the store and turns schedules and task states into
//! runs and queued task instances; it also reaps expired leases, sends callbacks and
//! deletes old history in the background (`retention`).
//!
//! [`Scheduler::tick`] is one full pass (tests drive it with explicit times);
//! [`Scheduler::run`] repeats it, woken by state changes, with polling as the safety net.

mod approvals;
mod callbacks;
mod dags;
mod deadlines;
mod evaluate;
pub mod files;
mod instance_cache;
pub mod loader;
mod reap;
pub mod retention;
mod runs;
mod scheduler;

pub use callbacks::{link, message as callback_message, CALLBACK_ATTEMPTS, CALLBACK_TIMEOUT};
pub use scheduler::{Scheduler, SchedulerConfig, SchedulerError, TickReport};
