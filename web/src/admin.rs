//! The administrators' actions, shared by the API and the UI: pools and users. Each
//! checks the admin role, validates its input by the rules the OpenAPI document states
//! (so a schema-valid request is accepted and nothing else is), changes the store and
//! writes one audit entry. The name and password rules are public: the CLI uses them too.

use chrono::Utc;
use nightshift_store::{NewUser, Pool, Revoked, Role, User};
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
    #[error("user name {name:?} contains {found:?}: use only ASCII letters, digits and . _ @ -")]
    UsernameCharacter { name: String, found: char },
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters; this one has {0}")]
    ShortPassword(usize),
    #[error("{what} {name:?} is not allowed: `.` and `..` are path segments, not names")]
    Dots { what: &'static str, name: String },
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> ApiError {
        ApiError::BadRequest(err.to_string())
    }
}

/// 1 to `max` characters, none of them whitespace or a control character, and not `.` or
/// `..` (a URL path resolves those away, so the name's pages could not be reached): the
/// document's pattern `^(?!\.\.?$)[^\s\x00-\x1f\x7f-\x9f]{1,max}$`.
fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name == "." || name == ".." {
        return Err(NameError::Dots {
            what,
            name: name.to_owned(),
        });
    }
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

/// Whether `c` may appear in a new user name: `[A-Za-z0-9._@-]`.
fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')
}

/// A new user name: 1 to 64 of `A-Z a-z 0-9 . _ @ -` (the document's pattern
/// `^[A-Za-z0-9._@-]{1,64}$`). ASCII only, so that no name can pass for another in the
/// audit log (a Cyrillic `а` for a Latin `a`, an invisible zero-width space); names made
/// before this rule still sign in, it applies to new names only.
pub fn check_username(name: &str) -> Result<(), NameError> {
    check_name("user name", name, MAX_USERNAME_CHARS)?;
    match name.chars().find(|c| !username_char(*c)) {
        Some(found) => Err(NameError::UsernameCharacter {
            name: name.to_owned(),
            found,
        }),
        None => Ok(()),
    }
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
    /// Keep the user's API tokens when the change revokes access (sessions always end).
    pub keep_tokens: bool,
}

/// Which of a user's sign-ins a change ends: a new password, another role or disabling
/// ends the sessions and (unless kept) the API tokens; enabling ends sessions left from
/// before the account was disabled, so that they cannot come back to life.
fn revocation(before: &User, change: &UserChange) -> Option<bool> {
    let role_changed = change.role.is_some_and(|role| role != before.role);
    let disabling = change.disabled == Some(true) && !before.disabled;
    let enabling = change.disabled == Some(false) && before.disabled;
    if change.password.is_some() || role_changed || disabling {
        Some(!change.keep_tokens)
    } else if enabling {
        Some(false)
    } else {
        None
    }
}

/// Ends a user's sign-ins (sessions, and API tokens when `tokens`); shared by the API,
/// the UI and the CLI.
pub async fn revoke_access(
    state: &AppState,
    user: &User,
    tokens: bool,
) -> Result<Revoked, ApiError> {
    let revoked = state.store.revoke_access(user.id, tokens).await?;
    tracing::info!(
        user = %user.username,
        sessions = revoked.sessions,
        tokens = revoked.tokens,
        "revoked sign-ins"
    );
    Ok(revoked)
}

/// Changes a user's role, disabled flag or password, and revokes the sign-ins the change
/// makes stale (see [`UserChange::keep_tokens`]). Admins cannot demote or disable
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
    let revoke = revocation(&current, &change);
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
    let revoked = match revoke {
        Some(tokens) => Some(revoke_access(state, &current, tokens).await?),
        None => None,
    };
    let details = json!({
        "user": username,
        "role": change.role,
        "disabled": change.disabled,
        "password_changed": password_hash.is_some(),
        "revoked": revoked,
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
        check("Ada_Lovelace-2", true);
        check(&"a".repeat(64), true);
        check(&"a".repeat(65), false);
        check("名前", false);
        check(&"é".repeat(64), false);
        // Look-alikes of `admin`: a zero-width space, a Cyrillic `а`, a fullwidth `ａ`,
        // a soft hyphen, a right-to-left override.
        check("admin\u{200b}", false);
        check("\u{430}dmin", false);
        check("\u{ff41}dmin", false);
        check("ad\u{ad}min", false);
        check("\u{202e}nimda", false);
        check("a+b", false);
        check("a/b", false);
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
