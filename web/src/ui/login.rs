//! Signing in and out. The login form carries its own CSRF token (a cookie and a hidden
//! field that must match, signed by the server since there is no session yet); failed
//! sign-ins slow down the next ones per account and per address (429 with
//! `Retry-After`), and both failures and refusals go to the audit log.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use nightshift_store::AuditEntry;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};

use super::contexts::LoginPage;
use super::{render, Layout, PageResult};
use crate::auth::{
    check_login, cookie, secret_hash, set_cookie, start_session, ClientIp, CsrfForm,
    LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::error::ApiError;
use crate::login_guard::LOGIN_CSRF_TTL;
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct NextParam {
    pub next: Option<String>,
}

/// Whether `path` is a path on this site: one leading `/`, then no `//`, backslash,
/// whitespace or control character. Browsers drop tabs and newlines from URLs and read
/// `\` as `/`, so `/\t/evil.example` or `/\evil.example` would leave the site.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && !path
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

/// Where to go after signing in: `next` when it is a local path, also once more
/// percent-decoded (so an encoded `%2F%2F` or `%09` is judged as what it hides), else `/`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if is_local_path(path)
                && is_local_path(&percent_decode_str(path).decode_utf8_lossy()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_page(
    state: &AppState,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> PageResult {
    let csrf = state.login.issue_csrf(&state.store, Utc::now()).await?;
    let page = LoginPage {
        layout: Layout::anonymous("Sign in"),
        next: next.to_owned(),
        csrf: csrf.clone(),
        error: error.map(str::to_owned),
    };
    let html = render(&page)?;
    let max_age = LOGIN_CSRF_TTL.as_secs() as i64;
    let cookie = set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, max_age);
    Ok((status, [(header::SET_COOKIE, cookie)], html).into_response())
}

pub async fn login_form(State(state): State<AppState>, Query(q): Query<NextParam>) -> PageResult {
    login_page(&state, &safe_next(q.next.as_deref()), None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub csrf: String,
    pub next: Option<String>,
}

/// The attempted user name as the audit log shows it: at most 64 characters.
fn attempted(username: &str) -> String {
    username.chars().take(64).collect()
}

async fn audit_sign_in(
    state: &AppState,
    action: &str,
    ip: Option<String>,
    details: Value,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&AuditEntry {
            ts: Utc::now(),
            actor: "anonymous".to_owned(),
            action: action.to_owned(),
            dag_id: None,
            run_id: None,
            task_id: None,
            ip,
            details,
        })
        .await?;
    Ok(())
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let csrf_ok = state
        .login
        .check_csrf(&state.store, expected, &form.csrf, Utc::now())
        .await?;
    if !csrf_ok {
        return Err(ApiError::Csrf.into());
    }
    let throttle = &state.settings.login_throttle;
    let pass = match state
        .login
        .admit(throttle, &form.username, ip.as_deref(), Instant::now())
    {
        Ok(pass) => pass,
        Err(refusal) => {
            let wait = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(
                username = %attempted(&form.username),
                ip = ip.as_deref().unwrap_or_default(),
                by = refusal.by,
                retry_after = wait,
                "sign-in refused: too many failures"
            );
            if refusal.first {
                let details = json!({
                    "username": attempted(&form.username),
                    "by": refusal.by,
                    "retry_after_secs": wait,
                });
                audit_sign_in(&state, "login.throttled", ip.clone(), details).await?;
            }
            let message = format!("Too many failed sign-ins. Try again in {wait} seconds.");
            let mut response =
                login_page(&state, &next, Some(&message), StatusCode::TOO_MANY_REQUESTS).await?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return Ok(response);
        }
    };
    let Some(user) = check_login(&state.store, &form.username, &form.password).await? else {
        state.login.failed(throttle, pass, Instant::now());
        tracing::info!(username = %attempted(&form.username), "failed sign-in");
        let details = json!({ "username": attempted(&form.username) });
        audit_sign_in(&state, "login.failed", ip.clone(), details).await?;
        return login_page(
            &state,
            &next,
            Some("Wrong user name or password."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    state.login.succeeded(throttle, pass);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_local_path_or_the_home_page() {
        let check = |next: Option<&str>, expected: &str| {
            assert_eq!(safe_next(next), expected, "{next:?}");
        };
        check(None, "/");
        check(Some("/dags/nightly?offset=0"), "/dags/nightly?offset=0");
        check(Some("/dags/a%2Bb%3A"), "/dags/a%2Bb%3A");
        // Whitespace is refused even encoded (the rule is simple, the cost a lost `next`).
        check(Some("/dags/a%20b"), "/");
        check(Some("/dags/a%2Fb"), "/dags/a%2Fb");
        // The reported bypass: `%2F%09%2Fevil.example` arrives decoded as `/\t/evil…`.
        check(Some("/\t/evil.example/phish"), "/");
        for bad in [
            "",
            "dags",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{a0}/evil.example",
            "/%2F/evil.example",
            "/%09/evil.example",
            "/%5Cevil.example",
            "https://evil.example",
            "javascript:alert(1)",
        ] {
            check(Some(bad), "/");
        }
        // Decoded once more only: what a browser would follow is a path on this site.
        check(Some("/%252F%252Fevil.example"), "/%252F%252Fevil.example");
    }
}
