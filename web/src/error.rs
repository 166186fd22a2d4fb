//! The one error type of every handler: [`ApiError`] becomes an RFC 9457 problem document
//! (`application/problem+json`) for the API, or an HTML error page for the UI. Bad input
//! is a 4xx with a message that says what was wrong; anything else is a plain 500 whose
//! cause (with its source chain) rides on the response as an [`InternalCause`] extension
//! and is logged once, with the request id, by [`log_internal_errors`].

use std::sync::Arc;

use axum::http::{header, HeaderName, StatusCode};
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
    /// Something we did not expect; the cause and its source chain go to the log, never
    /// to the client.
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

/// An internal error's cause on its way from the handler to [`log_internal_errors`]: the
/// response carries it as an extension (a response extension must be `Clone`, hence the
/// `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct InternalCause(Arc<anyhow::Error>);

impl InternalCause {
    /// Puts an internal error's cause on `response` for the logging middleware; other
    /// errors leave it as it is.
    pub(crate) fn attach(err: ApiError, response: &mut Response) {
        if let ApiError::Internal(cause) = err {
            response
                .extensions_mut()
                .insert(InternalCause(Arc::new(cause)));
        }
    }
}

/// The `map_response` middleware that logs each internal error once, with the request id
/// the request-id layer put on the response (`request_id_header`) and the whole source
/// chain; the client's 500 says no more than "an internal error occurred".
pub(crate) async fn log_internal_errors(
    request_id_header: &HeaderName,
    mut response: Response,
) -> Response {
    if let Some(InternalCause(cause)) = response.extensions_mut().remove::<InternalCause>() {
        let request_id = response
            .headers()
            .get(request_id_header)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        tracing::error!(
            request_id,
            status = response.status().as_u16(),
            error = format!("{cause:#}"),
            "request failed"
        );
    }
    response
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

    /// An internal error keeping `err` and its source chain (for the log only).
    pub fn internal(err: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal(err.into())
    }

    /// An internal error that `doing` failed because of `err` (e.g. "rendering page.html").
    pub fn internal_while<E>(doing: impl std::fmt::Display, err: E) -> ApiError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        ApiError::Internal(anyhow::Error::new(err).context(doing.to_string()))
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

    /// The problem document; an internal error's detail is not in it (the response
    /// carries it to the log, see [`ApiError::into_response`]).
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred; the server log has the \
                 details (look for this response's x-request-id)"
                .to_owned(),
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
            StoreError::IllegalTransition(_) | StoreError::IllegalRunTransition(_) => {
                ApiError::Conflict(err.to_string())
            }
            StoreError::Invalid { .. } => ApiError::BadRequest(err.to_string()),
            other => ApiError::Internal(other.into()),
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
        InternalCause::attach(self, &mut response);
        response
    }
}
