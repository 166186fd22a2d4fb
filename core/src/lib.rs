//! nightshift's pure core: the DAG model (TOML parsing and validation), schedules,
//! the task-instance state machine, trigger rules, retry policy and templating.
//!
//! Architecture invariant: this crate does no IO. Functions that depend on the time
//! take `now` as an argument; file contents arrive as strings.

pub mod approval;
pub mod connection;
pub mod dag;
pub mod deadline;
pub mod duration;
pub mod limits;
pub mod mask;
pub mod params;
pub mod plan;
pub mod render;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod secret_store;
pub mod state;
pub mod template;
pub mod trigger;
