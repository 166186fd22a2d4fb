//! `/api/v2`, shaped after Airflow 3's REST API so its client (apache-airflow-client 3.x)
//! and CLI (airflowctl) work unchanged; and `/auth/token` (`/auth/token/cli`), where they
//! exchange a user name and password for a bearer token. Its own router and response
//! models over the same store and the same actions as `/api/v1`, the UI and the CLI.
//! Errors are Airflow 3's `{"detail": …}` (422 for a request that does not validate).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use nightshift_store::NewApiToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{client_ip, new_secret, secret_hash, ClientIp};
use crate::error::ApiError;
use crate::AppState;

mod error;
mod handlers;
mod model;

use error::{Json, V2Error, V2Result};
use model::{LoginBody, LoginResponse};

/// How long a token from `/auth/token` works (Airflow 3's default JWT lifetime).
const TOKEN_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nightshift API v2 (Airflow 3 compatible)",
        description = "nightshift's REST API in Airflow 3's shapes. Get a token from \
                       `POST /auth/token` and send it as `Authorization: Bearer <token>`.",
    ),
    modifiers(&Security),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/api/v2` and `/auth/token`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    build(None).1
}

fn build(state: Option<AppState>) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use handlers as h;
    let v2 = OpenApiRouter::new()
        .routes(routes!(h::list_dags))
        .routes(routes!(h::get_dag, h::patch_dag))
        .routes(routes!(h::list_dag_runs, h::trigger_dag_run))
        .routes(routes!(h::get_dag_run))
        .routes(routes!(h::list_task_instances))
        .routes(routes!(h::get_task_instance, h::patch_task_instance))
        .routes(routes!(h::patch_task_instance_dry_run))
        .routes(routes!(h::clear_task_instances))
        .routes(routes!(h::get_log))
        .routes(routes!(h::list_import_errors))
        .routes(routes!(h::get_import_error))
        .routes(routes!(h::list_pools, h::create_pool))
        .routes(routes!(h::get_pool, h::patch_pool, h::delete_pool));
    let v2 = match &state {
        Some(state) => v2
            .route("/{*rest}", any(not_found))
            .route_layer(from_fn_with_state(state.clone(), auth)),
        None => v2,
    };
    let open = OpenApiRouter::new()
        .routes(routes!(h::version))
        .routes(routes!(h::health));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v2", v2.merge(open))
        .routes(routes!(token))
        .routes(routes!(token_cli))
        .split_for_parts();
    (router, doc)
}

/// `/api/v2/*` and `/auth/token` (`/auth/token/cli`).
pub fn router(state: AppState) -> Router<AppState> {
    let (router, doc) = build(Some(state));
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v2/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(uri: axum::http::Uri) -> V2Error {
    ApiError::NotFound(format!("no API endpoint at {}", uri.path())).into()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let detail = format!("{} has no {method} method", uri.path());
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "detail": detail })),
    )
        .into_response()
}

/// Requires a bearer token (or Basic auth, or a session, as `/api/v1`); errors in Airflow
/// 3's shape.
async fn auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let method = req.method().clone();
    let headers = req.headers().clone();
    match crate::auth::authenticate_api(&state, &headers, &method, ip).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(err) => V2Error::Api(err).into_response(),
    }
}

async fn issue_token(
    state: &AppState,
    ip: Option<String>,
    body: LoginBody,
    via: &str,
) -> V2Result<(StatusCode, Json<LoginResponse>)> {
    let user =
        crate::basic_auth::sign_in(state, &body.username, &body.password, ip.as_deref(), via)
            .await?;
    let secret = new_secret();
    let now = Utc::now();
    let expires_at = now + TOKEN_TTL;
    state
        .store
        .create_api_token(&NewApiToken {
            token_hash: secret_hash(&secret),
            user_id: user.id,
            name: format!("{via} {}", now.format("%Y-%m-%dT%H:%M:%SZ")),
            now,
            expires_at: Some(expires_at),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LoginResponse {
            access_token: secret,
            expires_at,
        }),
    ))
}

/// Exchange a user name and password for a bearer token that works for 24 hours (an
/// opaque token, stored hashed like the CLI's API tokens). Throttled like the login form.
#[utoipa::path(post, path = "/auth/token", tag = "Login", security(()),
    request_body = LoginBody,
    responses((status = 201, body = LoginResponse), (status = 401), (status = 429)))]
async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> V2Result<(StatusCode, Json<LoginResponse>)> {
    issue_token(&state, ip, body, "auth-token").await
}

/// As `/auth/token`, for airflowctl.
#[utoipa::path(post, path = "/auth/token/cli", tag = "Login", security(()),
    request_body = LoginBody,
    responses((status = 201, body = LoginResponse), (status = 401), (status = 429)))]
async fn token_cli(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> V2Result<(StatusCode, Json<LoginResponse>)> {
    issue_token(&state, ip, body, "auth-token-cli").await
}
