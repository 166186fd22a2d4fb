//! nightshift's web server: the JSON REST API under `/api/v1` (shaped after Airflow's
//! stable REST API, described by an OpenAPI document generated from the code) and the
//! server-rendered HTML UI for whoever is on call. [`app`] builds the whole router.
//!
//! Every route but `/health`, `/login` and `/static/*` requires a signed-in user: API
//! routes answer 401 problem documents, pages redirect to the login page. Roles are
//! checked in the handlers (viewer reads; operator triggers, clears, marks, pauses;
//! admin manages users and pools). Handlers stay thin: reads come from the store,
//! actions go through the store's shared operations (`store/src/ops.rs`), and each
//! action writes an audit entry.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use nightshift_store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

mod actions;
mod admin;
mod api;
mod auth;
mod error;
mod extract;
mod headers;
mod login_guard;
mod logs;
mod lookup;
pub mod metrics;
mod server;
mod throttle;
mod ui;

pub use admin::{check_password, check_pool_name, check_username, NameError, MIN_PASSWORD_CHARS};
pub use api::openapi;
pub use auth::{
    create_api_token, ensure_admin, generate_password, hash_password, verify_password, CurrentUser,
    PasswordError, SetupError,
};
pub use error::{ApiError, Problem};
pub use headers::CONTENT_SECURITY_POLICY;
pub use login_guard::{LoginGuard, LoginThrottleSettings};
pub use metrics::{Metrics, MetricsError};
pub use server::{serve, HttpLimits};
pub use throttle::ThrottlePolicy;

/// The web server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// Where people reach the UI (used in links), e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Mark cookies `Secure` (serve over HTTPS).
    pub secure_cookies: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Timeouts and the body size limit for each client.
    pub limits: HttpLimits,
    /// How failed sign-ins slow down the next ones.
    pub login_throttle: LoginThrottleSettings,
    /// The longest run id and the largest conf a trigger may carry.
    pub run_limits: nightshift_core::limits::RunLimits,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            base_url: "http://127.0.0.1:8080".to_owned(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            limits: HttpLimits::default(),
            login_throttle: LoginThrottleSettings::default(),
            run_limits: nightshift_core::limits::RunLimits::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: WebSettings,
    /// The process's metrics recorder; `/metrics` answers 404 without one.
    pub metrics: Option<Metrics>,
    /// Sign-in throttles and the login CSRF key (`LoginGuard::default()`).
    pub login: LoginGuard,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole web server: API, UI, login, static files and `/health`, with a request id
/// (`x-request-id`, generated unless the client sent one) on every request's span and
/// response; the security headers ([`CONTENT_SECURITY_POLICY`] and friends) on every
/// response; a request that takes longer than `limits.request_timeout` answered 408, a
/// body over `limits.max_body_bytes` 413. Serve it with [`serve`] (which also passes the
/// client's address on, so the audit log records it).
pub fn app(state: AppState) -> Router {
    let limits = state.settings.limits;
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let request_id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!(
            "http",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %request_id,
        )
    });
    let router = Router::new()
        .merge(api::router(state.clone()))
        .merge(ui::router(state.clone()))
        .route(
            "/metrics",
            axum::routing::get(metrics::web_metrics).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), auth::api_auth),
            ),
        )
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(axum::middleware::map_response(|response| {
            error::log_internal_errors(&REQUEST_ID, response)
        }))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid));
    headers::with_security_headers(router.with_state(state))
}
