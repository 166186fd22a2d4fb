//! The scheduler: loads DAG files into the store and turns schedules and task states into
//! runs and queued task instances.

pub mod loader;
