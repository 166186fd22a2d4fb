//! Pools: named slot counts that limit how many task instances run at once.

use nightshift_core::state::TaskState;

use crate::{impl_from_row, on_pool, Store, StoreError, DEFAULT_POOL};

/// A pool and its slot count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pool {
    pub name: String,
    pub slots: i32,
    pub description: String,
}

impl_from_row!(Pool, |row| Pool {
    name: row.try_get("name")?,
    slots: row.try_get("slots")?,
    description: row.try_get("description")?,
});

impl Store {
    /// All pools by name (`default_pool` always exists).
    pub async fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        const SQL: &str = "SELECT * FROM pools ORDER BY name";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows)
    }

    pub async fn get_pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        const SQL: &str = "SELECT * FROM pools WHERE name = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(name)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Creates a pool or changes its slots and description.
    pub async fn upsert_pool(&self, new: &Pool) -> Result<Pool, StoreError> {
        const SQL: &str = "
            INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE SET
                slots = excluded.slots, description = excluded.description
            RETURNING *";
        if new.slots < 0 {
            return Err(StoreError::Conflict {
                what: "pool",
                key: new.name.clone(),
                reason: format!("slots must be 0 or more, not {}", new.slots),
            });
        }
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&new.name)
            .bind(new.slots)
            .bind(&new.description)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    /// Deletes a pool; `default_pool` cannot be deleted ([`StoreError::Conflict`]).
    pub async fn delete_pool(&self, name: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM pools WHERE name = $1";
        if name == DEFAULT_POOL {
            return Err(StoreError::Conflict {
                what: "pool",
                key: name.to_owned(),
                reason: "the default pool cannot be deleted".to_owned(),
            });
        }
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(name)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::not_found("pool", name));
        }
        Ok(())
    }

    /// Slots taken in `pool`: the sum of `pool_slots` of its queued and running instances.
    pub async fn used_slots(&self, pool_name: &str) -> Result<i64, StoreError> {
        const SQL: &str = "
            SELECT COALESCE(SUM(pool_slots), 0) FROM task_instances
            WHERE pool = $1 AND state IN ($2, $3)";
        let used = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(pool_name)
            .bind(TaskState::Queued.as_str())
            .bind(TaskState::Running.as_str())
            .fetch_one(pool)
            .await)?;
        Ok(used)
    }
}
