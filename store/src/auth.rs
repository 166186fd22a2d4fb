//! Who may use the web UI and API: users (name, password hash, role, disabled flag),
//! browser sessions and API tokens (stored as hashes), and the web servers' shared keys.
//! Hashing is the caller's job; the store never sees a password or a token.

use chrono::{DateTime, Utc};

use crate::{impl_from_row, in_tx, on_pool, parse_col, text_enum, Store, StoreError};

text_enum! {
    /// What a user may do: viewers read; operators trigger, retry and pause; admins
    /// also manage users and pools.
    pub enum Role as "role" {
        Viewer = "viewer",
        Operator = "operator",
        Admin = "admin",
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    /// An Argon2 PHC string; the store never sees a password.
    pub password_hash: String,
    pub role: Role,
    pub now: DateTime<Utc>,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

impl_from_row!(User, |row| User {
    id: row.try_get("id")?,
    username: row.try_get("username")?,
    password_hash: row.try_get("password_hash")?,
    role: parse_col(row.try_get("role")?, "role")?,
    created_at: row.try_get("created_at")?,
    disabled: row.try_get("disabled")?,
});

impl Store {
    /// Creates a user; a taken user name is [`StoreError::Conflict`].
    pub async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        const SQL: &str = "
            INSERT INTO users (username, password_hash, role, created_at, disabled)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING *";
        on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.now)
            .bind(false)
            .fetch_one(pool)
            .await)
        .map_err(|err| {
            StoreError::conflict_on_unique(err, "user", &user.username, "the name is taken")
        })
    }

    pub async fn get_user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        const SQL: &str = "SELECT * FROM users WHERE username = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(username)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    pub async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        const SQL: &str = "SELECT * FROM users WHERE id = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// All users by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        const SQL: &str = "SELECT * FROM users ORDER BY username";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows)
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM users";
        let count = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await)?;
        Ok(count)
    }

    pub async fn set_user_role(&self, username: &str, role: Role) -> Result<User, StoreError> {
        const SQL: &str = "UPDATE users SET role = $2 WHERE username = $1 RETURNING *";
        let row: Option<User> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(username)
            .bind(role.as_str())
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("user", username))
    }

    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<User, StoreError> {
        const SQL: &str = "UPDATE users SET disabled = $2 WHERE username = $1 RETURNING *";
        let row: Option<User> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(username)
            .bind(disabled)
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("user", username))
    }

    pub async fn set_user_password_hash(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        const SQL: &str = "UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING *";
        let row: Option<User> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(username)
            .bind(password_hash)
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("user", username))
    }
}

/// A browser session to record; `token_hash` is the SHA-256 of the cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: i64,
    /// The session's CSRF token, echoed by every state-changing form.
    pub csrf_token: String,
    pub ip: Option<String>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A live session and its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// An API bearer token to record; `token_hash` is the SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub token_hash: String,
    pub user_id: i64,
    pub name: String,
    pub now: DateTime<Utc>,
    /// `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored API token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl_from_row!(ApiToken, |row| ApiToken {
    id: row.try_get("id")?,
    user_id: row.try_get("user_id")?,
    name: row.try_get("name")?,
    created_at: row.try_get("created_at")?,
    expires_at: row.try_get("expires_at")?,
    last_used_at: row.try_get("last_used_at")?,
});

/// How many credentials [`Store::revoke_access`] ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Revoked {
    pub sessions: u64,
    pub tokens: u64,
}

/// A user row with the session columns, from the session join.
struct SessionRow(SessionUser);

impl_from_row!(SessionRow, |row| SessionRow(SessionUser {
    user: User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: parse_col(row.try_get("role")?, "role")?,
        created_at: row.try_get("created_at")?,
        disabled: row.try_get("disabled")?,
    },
    csrf_token: row.try_get("csrf_token")?,
    expires_at: row.try_get("expires_at")?,
}));

impl Store {
    /// Records a browser session.
    pub async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        const SQL: &str = "
            INSERT INTO web_sessions (token_hash, user_id, csrf_token, ip, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(&session.token_hash)
            .bind(session.user_id)
            .bind(&session.csrf_token)
            .bind(&session.ip)
            .bind(session.now)
            .bind(session.expires_at)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The user of an unexpired session whose account is not disabled.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionUser>, StoreError> {
        const SQL: &str = "
            SELECT u.*, s.csrf_token, s.expires_at FROM web_sessions s
            JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = $3";
        let row: Option<SessionRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(token_hash)
            .bind(now)
            .bind(false)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|row| row.0))
    }

    /// Ends a session (logout); unknown tokens are ignored.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM web_sessions WHERE token_hash = $1";
        on_pool!(self, |pool| sqlx::query(SQL)
            .bind(token_hash)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM web_sessions WHERE expires_at <= $1";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(done)
    }

    /// Records an API token.
    pub async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken, StoreError> {
        const SQL: &str = "
            INSERT INTO api_tokens (token_hash, user_id, name, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING id, user_id, name, created_at, expires_at, last_used_at";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&token.token_hash)
            .bind(token.user_id)
            .bind(&token.name)
            .bind(token.now)
            .bind(token.expires_at)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    /// The user of an unexpired API token whose account is not disabled; notes the use
    /// (at most once a minute, so reads stay reads).
    pub async fn api_token_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        const SQL: &str = "
            SELECT u.* FROM api_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)
              AND u.disabled = $3";
        const TOUCH: &str = "
            UPDATE api_tokens SET last_used_at = $2
            WHERE token_hash = $1 AND (last_used_at IS NULL OR last_used_at < $3)";
        let user: Option<User> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(token_hash)
            .bind(now)
            .bind(false)
            .fetch_optional(pool)
            .await)?;
        if user.is_some() {
            let stale = now - chrono::TimeDelta::minutes(1);
            on_pool!(self, |pool| sqlx::query(TOUCH)
                .bind(token_hash)
                .bind(now)
                .bind(stale)
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(user)
    }

    /// Ends a user's sign-ins: every browser session and, when `tokens`, every API token,
    /// in one transaction. Called whenever a user's password, role or disabled flag
    /// changes, so that no credential issued before the change outlives it.
    pub async fn revoke_access(&self, user_id: i64, tokens: bool) -> Result<Revoked, StoreError> {
        const SESSIONS: &str = "DELETE FROM web_sessions WHERE user_id = $1";
        const TOKENS: &str = "DELETE FROM api_tokens WHERE user_id = $1";
        let revoked = in_tx!(self, |tx| {
            let sessions = sqlx::query(SESSIONS)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let tokens = if tokens {
                sqlx::query(TOKENS)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            } else {
                0
            };
            Revoked { sessions, tokens }
        });
        Ok(revoked)
    }

    /// The web servers' shared secret named `name`: the stored one, or `candidate` when
    /// there is none yet (the first caller's candidate wins a race; every caller gets the
    /// same answer).
    pub async fn web_key(
        &self,
        name: &str,
        candidate: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        const INSERT: &str = "
            INSERT INTO web_keys (name, secret, created_at) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO NOTHING";
        const SELECT: &str = "SELECT secret FROM web_keys WHERE name = $1";
        let secret = in_tx!(self, |tx| {
            sqlx::query(INSERT)
                .bind(name)
                .bind(candidate)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query_scalar::<_, String>(SELECT)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
        });
        Ok(secret)
    }

    /// A user's API tokens, newest first.
    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>, StoreError> {
        const SQL: &str = "
            SELECT id, user_id, name, created_at, expires_at, last_used_at FROM api_tokens
            WHERE user_id = $1 ORDER BY created_at DESC, id DESC";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(user_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Revokes one of a user's tokens.
    pub async fn delete_api_token(&self, user_id: i64, id: i64) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM api_tokens WHERE user_id = $1 AND id = $2";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(user_id)
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::not_found("API token", id));
        }
        Ok(())
    }
}
