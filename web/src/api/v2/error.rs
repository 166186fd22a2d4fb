//! Airflow 3's error shape for `/api/v2` and `/auth/token`: `{"detail": …}`, with 422
//! for a request that does not validate (a body, query or path that does not parse) and
//! the usual codes otherwise.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// An `/api/v2` error: the shared [`ApiError`], or a validation error (422).
#[derive(Debug)]
pub enum V2Error {
    Api(ApiError),
    /// The request does not validate: where (`body`, `query`, `path`) and why.
    Validation(&'static str, String),
}

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> Self {
        V2Error::Api(err)
    }
}

impl From<nightshift_store::StoreError> for V2Error {
    fn from(err: nightshift_store::StoreError) -> Self {
        V2Error::Api(err.into())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        match self {
            V2Error::Validation(location, message) => {
                let body = json!({
                    "detail": [{ "type": "value_error", "loc": [location], "msg": message }]
                });
                (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
            }
            V2Error::Api(err) => {
                let status = err.status();
                let detail = err.problem().detail;
                let mut response =
                    (status, axum::Json(json!({ "detail": detail }))).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer"),
                    );
                }
                if let ApiError::TooManyRequests(wait) = err {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
                }
                if let ApiError::Internal(_) = err {
                    crate::error::InternalCause::attach(err, &mut response);
                }
                response
            }
        }
    }
}

/// The result of an `/api/v2` handler.
pub type V2Result<T> = Result<T, V2Error>;

fn invalid(location: &'static str, err: ApiError) -> V2Error {
    match err {
        ApiError::BadRequest(message) => V2Error::Validation(location, message),
        other => V2Error::Api(other),
    }
}

/// A JSON body (an object); what does not parse is a 422.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = V2Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::Json::<T>::from_request(req, state)
            .await
            .map(|crate::extract::Json(value)| Json(value))
            .map_err(|err| invalid("body", err))
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters (repeated keys joined, as in `/api/v1`); what does not parse is a 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = V2Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|crate::extract::Query(value)| Query(value))
            .map_err(|err| invalid("query", err))
    }
}

/// Path parameters; what does not parse is a 422.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = V2Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|crate::extract::Path(value)| Path(value))
            .map_err(|err| invalid("path", err))
    }
}

/// The signed-in user; its absence is a 401 in Airflow 3's shape.
pub struct User(pub crate::auth::CurrentUser);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = V2Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::auth::CurrentUser::from_request_parts(parts, state)
            .await
            .map(User)
            .map_err(V2Error::Api)
    }
}
