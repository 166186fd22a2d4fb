//! The scheduler's tests: the real loop (`Scheduler::tick` with explicit times) against a
//! real store, on PostgreSQL (`DATABASE_URL`, one fresh database per test) and on SQLite;
//! workers are simulated with `store.claim` + `store.finish_attempt`.

mod common;

mod callbacks;
mod deadlines;
mod edits;
mod fanout;
mod limits;
mod loader;
mod looping;
mod progress;
mod reaping;
mod required_dags;
mod retention;
mod root_cause;
mod schedules;
mod sql_files;
mod trigger_rules;
mod versions;
