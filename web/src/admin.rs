//! The administrators' actions, shared by the API and the UI: pools and users. Each
//! checks the admin role, validates its input by the rules the OpenAPI document states
//! (so a schema-valid request is accepted and nothing else is), changes the store and
//! writes one audit entry. The name and password rules are public: the CLI uses them too.

use chrono::Utc;
use nightshift_store::{NewUser, Pool, Role, User};
use serde_json::json;

use crate::actions::audit_admin;
use crate::auth::{hash_password, CurrentUser};
use crate::error::ApiError;
use crate::AppState;

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest user name, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// The longest pool name, in characters.
pub const MAX_POOL_NAME_CHARS: usize = 256;

/// Why a user name, pool name or password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a {what} has 1 to {max} characters; {name:?} has {count}")]
    Length {
        what: &'static str,
        name: String,
        count: usize,
        max: usize,
    },
    #[error("{what} {name:?} contains {found:?}: use letters, digits and punctuation, no spaces or control characters")]
    Character {
        what: &'static str,
        name: String,
        found: char,
    },
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters; this one has {0}")]
    ShortPassword(usize),
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> ApiError {
        ApiError::BadRequest(err.to_string())
    }
}

/// 1 to `max` characters, none of them whitespace or a control character (the document's
/// pattern `^[^\s\x00-\x1f\x7f-\x9f]{1,max}$`).
fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    let count = name.chars().count();
    if count == 0 || count > max {
        return Err(NameError::Length {
            what,
            name: name.to_owned(),
            count,
            max,
        });
    }
    if let Some(found) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::Character {
            what,
            name: name.to_owned(),
            found,
        });
    }
    Ok(())
}

/// A user name: 1 to 64 characters, no whitespace or control characters.
pub fn check_username(name: &str) -> Result<(), NameError> {
    check_name("user name", name, MAX_USERNAME_CHARS)
}

/// A new pool's name: 1 to 256 characters, no whitespace or control characters.
pub fn check_pool_name(name: &str) -> Result<(), NameError> {
    check_name("pool name", name, MAX_POOL_NAME_CHARS)
}

/// A password: at least 8 characters (not bytes).
pub fn check_password(password: &str) -> Result<(), NameError> {
    let count = password.chars().count();
    if count < MIN_PASSWORD_CHARS {
        return Err(NameError::ShortPassword(count));
    }
    Ok(())
}

fn check_slots(slots: i32) -> Result<(), ApiError> {
    if slots < 0 {
        return Err(ApiError::BadRequest(format!(
            "slots must be 0 or more, not {slots}"
        )));
    }
    Ok(())
}

/// Checks and hashes a password (on a blocking thread: Argon2 is slow on purpose).
async fn hash(password: String) -> Result<String, ApiError> {
    check_password(&password)?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn find_pool(state: &AppState, name: &str) -> Result<Pool, ApiError> {
    state
        .store
        .get_pool(name)
        .await?
        .ok_or_else(|| ApiError::not_found("pool", format!("{name:?}")))
}

/// Creates a pool; an existing name is a 409.
pub async fn create_pool(
    state: &AppState,
    user: &CurrentUser,
    pool: Pool,
) -> Result<Pool, ApiError> {
    user.require(Role::Admin)?;
    check_pool_name(&pool.name)?;
    check_slots(pool.slots)?;
    if state.store.get_pool(&pool.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "pool {:?} already exists",
            pool.name
        )));
    }
    let pool = state.store.upsert_pool(&pool).await?;
    let details = json!({ "pool": pool.name, "slots": pool.slots });
    audit_admin(state, user, "pool.create", details).await?;
    Ok(pool)
}

/// Changes a pool's slots and/or description; `None` keeps the current value.
pub async fn update_pool(
    state: &AppState,
    user: &CurrentUser,
    name: &str,
    slots: Option<i32>,
    description: Option<String>,
) -> Result<Pool, ApiError> {
    user.require(Role::Admin)?;
    let current = find_pool(state, name).await?;
    let slots = slots.unwrap_or(current.slots);
    check_slots(slots)?;
    let pool = state
        .store
        .upsert_pool(&Pool {
            name: current.name,
            slots,
            description: description.unwrap_or(current.description),
        })
        .await?;
    let details = json!({ "pool": pool.name, "slots": pool.slots });
    audit_admin(state, user, "pool.update", details).await?;
    Ok(pool)
}

/// Deletes a pool; `default_pool` cannot be deleted (409).
pub async fn delete_pool(state: &AppState, user: &CurrentUser, name: &str) -> Result<(), ApiError> {
    user.require(Role::Admin)?;
    state.store.delete_pool(name).await?;
    audit_admin(state, user, "pool.delete", json!({ "pool": name })).await?;
    Ok(())
}

/// Creates a user; a taken name is a 409.
pub async fn create_user(
    state: &AppState,
    user: &CurrentUser,
    username: &str,
    password: String,
    role: Role,
) -> Result<User, ApiError> {
    user.require(Role::Admin)?;
    check_username(username)?;
    let created = state
        .store
        .create_user(&NewUser {
            username: username.to_owned(),
            password_hash: hash(password).await?,
            role,
            now: Utc::now(),
        })
        .await?;
    let details = json!({ "user": created.username, "role": created.role });
    audit_admin(state, user, "user.create", details).await?;
    Ok(created)
}

/// What to change in a user; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// Changes a user's role, disabled flag or password. Admins cannot demote or disable
/// themselves (409), so there is always someone left to undo a change.
pub async fn update_user(
    state: &AppState,
    user: &CurrentUser,
    username: &str,
    change: UserChange,
) -> Result<User, ApiError> {
    user.require(Role::Admin)?;
    let mut current = state
        .store
        .get_user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::not_found("user", format!("{username:?}")))?;
    let demotes = change.role.is_some_and(|role| role != Role::Admin);
    if current.id == user.id && (demotes || change.disabled == Some(true)) {
        return Err(ApiError::Conflict(
            "you cannot disable your own account or remove your own admin role; ask another admin"
                .to_owned(),
        ));
    }
    // Check everything before changing anything.
    let password_hash = match change.password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    if let Some(role) = change.role {
        current = state.store.set_user_role(username, role).await?;
    }
    if let Some(disabled) = change.disabled {
        current = state.store.set_user_disabled(username, disabled).await?;
    }
    if let Some(hash) = &password_hash {
        current = state.store.set_user_password_hash(username, hash).await?;
    }
    let details = json!({
        "user": username,
        "role": change.role,
        "disabled": change.disabled,
        "password_changed": password_hash.is_some(),
    });
    audit_admin(state, user, "user.update", details).await?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_documented_pattern() {
        fn check(name: &str, ok: bool) {
            assert_eq!(check_username(name).is_ok(), ok, "{name:?}");
        }
        check("alice", true);
        check("on-call.bot@example", true);
        check("名前", true);
        check(&"é".repeat(64), true);
        check(&"é".repeat(65), false);
        check("", false);
        check("two words", false);
        check("tab\there", false);
        check("nbsp\u{a0}", false);
        check("bell\u{7}", false);
        check("c1\u{85}", false);
        check("c1\u{9f}", false);
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        fn check(password: &str, ok: bool) {
            assert_eq!(check_password(password).is_ok(), ok, "{password:?}");
        }
        check("12345678", true);
        check("1234567", false);
        check("éééé", false);
        check("éééééééé", true);
        check("", false);
        assert_eq!(
            check_password("short").map_err(|e| e.to_string()),
            Err("a password needs at least 8 characters; this one has 5".to_owned())
        );
    }
}
