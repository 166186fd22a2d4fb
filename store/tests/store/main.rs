//! The store's tests: every body runs on PostgreSQL (`DATABASE_URL`, one fresh database
//! per test) and on SQLite (a fresh file per test).

mod common;

mod access;
mod approval;
mod batches;
mod dags;
mod deadlines;
mod logs;
mod mark;
mod misc;
mod model;
mod retention;
mod runs;
mod states;
mod tasks;
mod waiting;
