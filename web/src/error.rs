//! The one error type of every handler: [`ApiError`] becomes an RFC 9457 problem document
//! (`application/problem+json`) for the API, or an HTML error page for the UI. Bad input
//! is a 4xx with a message that says what was wrong; anything else is a plain 500 whose
//! cause is logged once, inside the request's span (which carries the request id).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use nightshift_store::{Role, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required: send a bearer token or sign in")]
    Unauthorized,
    #[error("this needs the {needed} role; you are {have}")]
    Forbidden { needed: Role, have: Role },
    #[error("missing or wrong CSRF token: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The request body is over the server's limit (the `http_max_body_bytes` setting).
    #[error("the request body is too large for this server")]
    PayloadTooLarge,
    /// Something we did not expect; details stay in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    pub fn not_found(what: &str, key: impl std::fmt::Display) -> ApiError {
        ApiError::NotFound(format!("{what} {key} not found"))
    }

    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(err.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized => "unauthenticated",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Csrf => "csrf",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload-too-large",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem document; an internal error's detail is logged here, not returned.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                "an internal error occurred; the server log has the details (look for this \
                 response's x-request-id)"
                    .to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:nightshift:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        }
    }
}

impl ApiError {
    /// An extractor's rejection: 413 when the body was over the limit (axum's
    /// `DefaultBodyLimit`, which [`crate::app`] sets), otherwise a 400 with its text.
    pub fn rejected(status: StatusCode, text: String) -> ApiError {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(text)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::NotFound { .. } => ApiError::NotFound(err.to_string()),
            StoreError::Conflict { .. } | StoreError::Stale { .. } => {
                ApiError::Conflict(err.to_string())
            }
            StoreError::IllegalTransition(_) => ApiError::Conflict(err.to_string()),
            StoreError::Invalid { .. } => ApiError::BadRequest(err.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = (self.status(), axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"nightshift\""),
            );
        }
        response
    }
}
