//! HTTP Basic auth for the API (`Authorization: Basic base64(user:password)`), the one
//! scheme Airflow 2's API client can send: a nightshift user's name and password, checked
//! like the login form's — through the same sign-in throttles (per account and per
//! address), failures in the audit log.
//!
//! A client sends the password with every request, and Argon2 is slow on purpose; so a
//! checked pair is remembered in memory as the SHA-256 of (user, password) beside the
//! stored hash it matched. The next request with the same pair skips Argon2 while the
//! user's stored hash is the same (a new password forgets it) and the user is enabled.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Instant;

use base64::Engine;
use chrono::Utc;
use nightshift_store::{AuditEntry, User};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::check_login;
use crate::error::ApiError;
use crate::AppState;

/// How many checked pairs are remembered before the memory starts over.
const REMEMBERED: usize = 1024;

/// SHA-256 of `user \0 password` → the stored password hash it was checked against.
static CHECKED: LazyLock<Mutex<HashMap<[u8; 32], String>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The user name and password of a `Basic` authorization header value (the part after
/// `Basic `); `None` when it is not base64 of `user:password`.
pub fn credentials(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn pair_key(username: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(username.as_bytes());
    hasher.update([0]);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

/// The user a `Basic` header names, if its password is right. Throttled like the login
/// form: a refused attempt is a 429 with `Retry-After`, a wrong password a 401.
pub async fn authenticate(
    state: &AppState,
    encoded: &str,
    ip: Option<&str>,
) -> Result<User, ApiError> {
    let (username, password) = credentials(encoded).ok_or(ApiError::Unauthorized)?;
    let key = pair_key(&username, &password);
    if let Some(user) = state.store.get_user_by_name(&username).await? {
        let remembered = CHECKED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .is_some_and(|hash| *hash == user.password_hash);
        if remembered && !user.disabled {
            return Ok(user);
        }
    }
    let user = sign_in(state, &username, &password, ip, "api-basic-auth").await?;
    let mut checked = CHECKED.lock().unwrap_or_else(PoisonError::into_inner);
    if checked.len() >= REMEMBERED {
        checked.clear();
    }
    checked.insert(key, user.password_hash.clone());
    Ok(user)
}

/// Checks a user name and password as the login form does: through the sign-in
/// throttles (a refusal is a 429 with its wait), a wrong one a 401 and an audit entry
/// (`via` says which door was tried).
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: &str,
    ip: Option<&str>,
    via: &str,
) -> Result<User, ApiError> {
    // What the audit log keeps of a name tried (as the login form: at most 64 characters).
    let attempted: String = username.chars().take(64).collect();
    let throttle = &state.settings.login_throttle;
    let pass = match state.login.admit(throttle, username, ip, Instant::now()) {
        Ok(pass) => pass,
        Err(refusal) => {
            let wait = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if refusal.first {
                let details = json!({
                    "username": attempted,
                    "by": refusal.by,
                    "retry_after_secs": wait,
                    "via": via,
                });
                audit(state, "login.throttled", ip, details).await?;
            }
            return Err(ApiError::TooManyRequests(wait));
        }
    };
    let Some(user) = check_login(&state.store, username, password).await? else {
        state.login.failed(throttle, pass, Instant::now());
        let details = json!({ "username": attempted, "via": via });
        audit(state, "login.failed", ip, details).await?;
        return Err(ApiError::Unauthorized);
    };
    state.login.succeeded(throttle, pass);
    Ok(user)
}

async fn audit(
    state: &AppState,
    action: &str,
    ip: Option<&str>,
    details: serde_json::Value,
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
            ip: ip.map(str::to_owned),
            details,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_base64_of_user_colon_password() {
        assert_eq!(
            credentials("YWxpY2U6czNjcjM6dA=="),
            Some(("alice".to_owned(), "s3cr3:t".to_owned()))
        );
        assert_eq!(credentials("not base64!"), None);
        assert_eq!(credentials("bm9jb2xvbg=="), None); // "nocolon"
    }
}
