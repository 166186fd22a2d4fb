//! The worker role: claims queued task instances, runs their kinds with heartbeated
//! leases and streamed logs, records each try's outcome, and drains on shutdown.
//!
//! Entry point: [`Worker::new`] with a [`WorkerConfig`], then [`Worker::run`] until the
//! cancel token fires. Task kinds live in [`kind`], the log channel in [`log`], the pure
//! decisions (kind mapping, outcome → state) in [`decide`].

mod attempt;
mod aws_env;
mod clock;
pub mod connections;
pub mod decide;
mod heartbeat;
pub mod kind;
pub mod log;
mod log_drain;
mod runtime;
pub mod secret_store;
pub mod stops;

pub use clock::Clock;
pub use runtime::{
    Worker, WorkerConfig, WorkerError, DEFAULT_CONCURRENCY, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, DEFAULT_QUEUE, DEFAULT_SHUTDOWN_GRACE,
};
