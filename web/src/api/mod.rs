//! The JSON REST API under `/api/v1`, shaped after Airflow's stable REST API, and
//! `/health`. Every route is declared with `#[utoipa::path]` and registered through
//! `utoipa_axum::routes!`, so the OpenAPI document at `/api/v1/openapi.json` is built from
//! the same code that serves the routes.

use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::api_auth;
use crate::error::ApiError;
use crate::AppState;

mod admin;
mod approvals;
mod dags;
mod deadlines;
mod misc;
pub mod model;
mod runs;
mod tasks;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nightshift API",
        description = "nightshift's REST API, shaped after Apache Airflow's stable REST API. \
                       Authenticate with `Authorization: Bearer <token>` (or a browser \
                       session plus the `X-CSRF-Token` header for writes).",
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    components(schemas(crate::error::Problem)),
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
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// Documents what every operation can answer besides its own responses: 400 (a query or
/// body that does not parse), 401 and 403 (auth, on every route that needs it), 409 on
/// writes (a lost race), each as an `application/problem+json` document, which is how
/// every error is sent.
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = path == "/health";
            let operations = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.delete),
                (true, &mut item.patch),
            ];
            for (writes, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    if !status.starts_with(['4', '5']) {
                        continue;
                    }
                    if let RefOr::T(response) = response {
                        if let Some(content) = response.content.shift_remove("application/json") {
                            response.content.insert(PROBLEM_JSON.to_owned(), content);
                        }
                    }
                }
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(problem(description)));
                };
                add("400", "The request's parameters or body are not valid.");
                if !public {
                    add("401", "No valid bearer token or session was sent.");
                    add(
                        "403",
                        "The user's role does not allow this, or the CSRF token is missing.",
                    );
                }
                if writes {
                    add("409", "Someone else changed the resource first (a stale write), or it is in a state that forbids this.");
                }
            }
        }
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    build(None).1
}

fn build(state: Option<AppState>) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(dags::list_dags))
        .routes(routes!(dags::get_dag, dags::patch_dag))
        .routes(routes!(dags::get_dag_details))
        .routes(routes!(dags::list_dag_versions))
        .routes(routes!(runs::list_dag_runs, runs::trigger_dag_run))
        .routes(routes!(runs::get_dag_run, runs::update_dag_run_state))
        .routes(routes!(deadlines::list_deadline_misses))
        .routes(routes!(runs::clear_task_instances))
        .routes(routes!(runs::update_task_instances_state))
        .routes(routes!(tasks::list_task_instances))
        .routes(routes!(tasks::get_task_instance))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::reject))
        .routes(routes!(tasks::list_task_instance_tries))
        .routes(routes!(tasks::get_log))
        .routes(routes!(tasks::search_log))
        .routes(routes!(tasks::download_log))
        .routes(routes!(admin::list_pools, admin::create_pool))
        .routes(routes!(
            admin::get_pool,
            admin::patch_pool,
            admin::delete_pool
        ))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::patch_user))
        .routes(routes!(admin::list_event_logs))
        .routes(routes!(misc::list_import_errors))
        .routes(routes!(misc::version));
    let v1 = match &state {
        Some(state) => v1
            .route("/{*rest}", get(not_found).post(not_found))
            .route_layer(from_fn_with_state(state.clone(), api_auth)),
        None => v1,
    };
    let v1 = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(misc::health));
    let (router, mut doc) = v1.split_for_parts();
    // After the routes are in: a modifier in `#[openapi]` would see no paths yet.
    Problems.modify(&mut doc);
    (router, doc)
}

/// `/api/v1/*` and `/health`.
pub fn router(state: AppState) -> Router<AppState> {
    let (router, doc) = build(Some(state.clone()));
    let doc = Arc::new(doc);
    let openapi_json = Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route_layer(from_fn_with_state(state, api_auth));
    router.merge(openapi_json)
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::NotFound(format!("no API endpoint at {}", uri.path()))
}
