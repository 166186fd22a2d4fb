//! Signing in and out. The login form carries its own CSRF token (a cookie and a hidden
//! field that must match), since there is no session yet.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{render, PageResult};
use crate::auth::{
    check_login, cookie, new_secret, same_secret, secret_hash, set_cookie, start_session, ClientIp,
    CsrfForm, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct NextParam {
    pub next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/dags".to_owned(),
    }
}

fn login_page(state: &AppState, next: &str, error: Option<&str>, status: StatusCode) -> PageResult {
    let csrf = new_secret();
    let ctx = json!({ "title": "Sign in", "next": next, "csrf": csrf, "error": error });
    let html = render("login.html", &ctx)?;
    let cookie = set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, 3600);
    Ok((status, [(header::SET_COOKIE, cookie)], html).into_response())
}

pub async fn login_form(State(state): State<AppState>, Query(q): Query<NextParam>) -> PageResult {
    login_page(&state, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub csrf: String,
    pub next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        return Err(ApiError::Csrf.into());
    }
    let Some(user) = check_login(&state.store, &form.username, &form.password).await? else {
        tracing::info!(username = %form.username, "failed sign-in");
        return login_page(
            &state,
            &next,
            Some("Wrong user name or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let now = Utc::now();
    let (secret, _csrf) = start_session(&state, &user, ip, now).await?;
    // Housekeeping: sign-ins are rare enough to sweep expired sessions here.
    state.store.delete_expired_sessions(now).await?;
    let ttl = state.settings.session_ttl.as_secs() as i64;
    let session = set_cookie(&state, SESSION_COOKIE, &secret, ttl);
    let clear_login = set_cookie(&state, LOGIN_CSRF_COOKIE, "", 0);
    let mut response = super::see_other(&next);
    let headers = response.headers_mut();
    for value in [session, clear_login] {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _form: CsrfForm<super::forms::Empty>,
) -> Result<Response, super::PageError> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&secret_hash(secret)).await?;
    }
    let mut response = super::see_other("/login");
    if let Ok(value) = header::HeaderValue::from_str(&set_cookie(&state, SESSION_COOKIE, "", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
