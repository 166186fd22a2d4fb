//! The web server's tests, through `app()` with `tower::ServiceExt::oneshot`: every body
//! runs on PostgreSQL (`DATABASE_URL`, one fresh database per test) and on SQLite.

mod common;

mod access;
mod admin_ui;
mod api;
mod approval;
mod auth;
mod confirm;
mod dag_docs;
mod deadlines;
mod errors;
mod gantt;
mod hardening;
mod history;
mod limits;
mod live;
mod logs;
mod mark;
mod metrics;
mod pages;
mod params;
mod require;
mod run_page;
mod sign_in;
mod versions;
