//! The HTML UI for whoever is on call: server-rendered pages (minijinja, embedded),
//! htmx for the live log tail, forms with CSRF tokens for every action. From an alert's
//! link (`/dags/{dag}/runs/{run}/tasks/{task}?map_index=N`) the failed try's log is on the
//! page it opens.

use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use nightshift_store::Role;

use crate::auth::{page_auth, require_page_role};
use crate::error::ApiError;
use crate::AppState;

mod admin;
mod approval;
mod charts;
mod confirm;
mod contexts;
mod forms;
mod gantt;
mod graph;
mod highlight;
mod history;
mod login;
mod logs;
mod markdown;
mod pages;
#[cfg(test)]
mod samples;
mod source;
mod templates;
mod trigger;
mod versions;

pub use contexts::Layout;
pub use templates::render;

/// Pages, forms, login and static files. Every page needs a signed-in user; the routes
/// that act need a role, checked here (before the form is read) and again by the action.
pub fn router(state: AppState) -> Router<AppState> {
    // Operators: trigger, pause, clear, mark, cancel, approve or reject.
    let operate = Router::new()
        .route("/dags/{dag_id}/pause", post(forms::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(trigger::form).post(trigger::trigger),
        )
        // GET: the confirmation listing what the action changes; POST: the action.
        .route(
            "/dags/{dag_id}/runs/{run_id}/cancel",
            get(confirm::confirm_cancel).post(confirm::cancel),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/clear",
            get(confirm::confirm_clear).post(confirm::clear),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            get(confirm::confirm_mark).post(confirm::mark),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/approval",
            post(approval::decide),
        )
        .route_layer(from_fn_with_state(Role::Operator, require_page_role));
    // Admins: pools and users.
    let administer = Router::new()
        .route("/admin/pools", get(admin::pools).post(admin::create_pool))
        .route("/admin/pools/{name}", post(admin::update_pool))
        .route("/admin/pools/{name}/delete", post(admin::delete_pool))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{username}/role", post(admin::set_role))
        .route(
            "/admin/users/{username}/disabled",
            post(admin::set_disabled),
        )
        .route(
            "/admin/users/{username}/password",
            post(admin::reset_password),
        )
        .route_layer(from_fn_with_state(Role::Admin, require_page_role));
    // Everyone signed in: reading, and their own API tokens.
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/dags", get(pages::dag_list))
        .route("/dags/{dag_id}", get(pages::grid))
        .route("/dags/{dag_id}/graph", get(pages::graph))
        .route("/dags/{dag_id}/durations", get(history::durations))
        .route("/dags/{dag_id}/calendar", get(history::calendar))
        .route("/dags/{dag_id}/source", get(source::source))
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run))
        .route("/dags/{dag_id}/runs/{run_id}/live", get(pages::run_live))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(pages::task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/live",
            get(pages::task_live),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log",
            get(pages::log_lines),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log/earlier",
            get(logs::earlier),
        )
        .route("/audit", get(pages::audit))
        .route("/admin", get(pages::admin))
        .route("/admin/tokens", post(forms::create_token))
        .route("/admin/tokens/{id}/delete", post(forms::delete_token))
        .route("/logout", post(login::logout))
        .merge(operate)
        .merge(administer)
        .route_layer(from_fn_with_state(state, page_auth));
    Router::new()
        .merge(pages)
        .route("/login", get(login::login_form).post(login::login))
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/nightshift.js", get(script))
        .route("/static/style.css", get(style))
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
}

const HTMX: &str = include_str!("../../static/htmx.min.js");
const STYLE: &str = include_str!("../../static/style.css");
/// Confirmations and the other page behaviour, from `data-` attributes (no inline script).
const SCRIPT: &str = include_str!("../../static/nightshift.js");
const CACHE: &str = "public, max-age=3600";
/// The tab icon (a moon); also served at `/favicon.ico`, which browsers ask for anyway.
const FAVICON: &str = include_str!("../../static/favicon.svg");

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, CACHE),
        ],
        FAVICON,
    )
}

async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        HTMX,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        STYLE,
    )
}

/// An error as an HTML page with the same status.
pub fn error_page(err: ApiError) -> Response {
    let status = err.status();
    let problem = err.problem();
    let page = contexts::ErrorPage {
        layout: Layout::anonymous(format!("{} {}", problem.status, problem.title)),
        problem,
    };
    let mut response = match render(&page) {
        Ok(html) => (status, html).into_response(),
        Err(_) => (status, page.problem.detail).into_response(),
    };
    crate::error::InternalCause::attach(err, &mut response);
    response
}

/// Why a handler did not render its page: an error (shown as the error page), or a page
/// already rendered to show the error in place (a form with its message).
pub enum PageError {
    Api(ApiError),
    Shown(Box<Response>),
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        PageError::Api(err)
    }
}

impl From<nightshift_store::StoreError> for PageError {
    fn from(err: nightshift_store::StoreError) -> Self {
        PageError::Api(err.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Api(err) => error_page(err),
            PageError::Shown(response) => *response,
        }
    }
}

pub type PageResult = Result<Response, PageError>;

/// A 303 redirect after a form post.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// Percent-encodes everything but unreserved characters (for query values and paths).
pub fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The UI path of a task instance (what alert links point at).
pub fn task_path(dag_id: &str, run_id: &str, task_id: &str, map_index: i32) -> String {
    let base = format!(
        "/dags/{}/runs/{}/tasks/{}",
        urlencode(dag_id),
        urlencode(run_id),
        urlencode(task_id)
    );
    if map_index >= 0 {
        format!("{base}?map_index={map_index}")
    } else {
        base
    }
}

pub fn run_path(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", urlencode(dag_id), urlencode(run_id))
}

pub fn dag_path(dag_id: &str) -> String {
    format!("/dags/{}", urlencode(dag_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(urlencode(input), expected, "encoding {input:?}");
    }

    #[test]
    fn urlencode_keeps_only_unreserved() {
        check("abc-_.~09", "abc-_.~09");
        check(
            "manual__2026-01-01T03:00:00+00:00",
            "manual__2026-01-01T03%3A00%3A00%2B00%3A00",
        );
        check("/dags?x=1&y", "%2Fdags%3Fx%3D1%26y");
        check("é", "%C3%A9");
    }
}
