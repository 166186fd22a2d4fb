//! Users of the web UI and API: name, password hash (hashing is the caller's job),
//! role, disabled flag.

use chrono::{DateTime, Utc};

use crate::{impl_from_row, on_pool, parse_col, text_enum, Store, StoreError};

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
