//! The audit log: who did what, when, on which DAG/run/task, from where.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{impl_from_row, on_pool, Store, StoreError};

/// An action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub ts: DateTime<Utc>,
    /// The user name (or `cli`, `scheduler`).
    pub actor: String,
    /// What was done, e.g. `dag.pause`, `task.clear`, `run.trigger`.
    pub action: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub ip: Option<String>,
    pub details: Value,
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub ts: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub ip: Option<String>,
    pub details: Value,
}

impl_from_row!(AuditRecord, |row| AuditRecord {
    id: row.try_get("id")?,
    ts: row.try_get("ts")?,
    actor: row.try_get("actor")?,
    action: row.try_get("action")?,
    dag_id: row.try_get("dag_id")?,
    run_id: row.try_get("run_id")?,
    task_id: row.try_get("task_id")?,
    ip: row.try_get("ip")?,
    details: row.try_get::<Json<Value>, _>("details")?.0,
});

/// Which entries [`Store::list_audit`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub dag_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// `None`: no limit.
    pub limit: Option<i64>,
    pub offset: i64,
}

impl Store {
    /// Records an action; returns its id.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        const SQL: &str = "
            INSERT INTO audit_log (ts, actor, action, dag_id, run_id, task_id, ip, details)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING id";
        let id = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(entry.ts)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.dag_id)
            .bind(&entry.run_id)
            .bind(&entry.task_id)
            .bind(&entry.ip)
            .bind(Json(&entry.details))
            .fetch_one(pool)
            .await)?;
        Ok(id)
    }

    /// Recorded actions matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        const SQL: &str = "
            SELECT * FROM audit_log
            WHERE ($1 IS NULL OR dag_id = $1)
              AND ($2 IS NULL OR actor = $2)
              AND ($3 IS NULL OR action = $3)
            ORDER BY ts DESC, id DESC
            LIMIT $4 OFFSET $5";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&filter.dag_id)
            .bind(&filter.actor)
            .bind(&filter.action)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .bind(filter.offset)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}
impl Store {
    /// How many audit entries match `filter` (its limit and offset are ignored).
    pub async fn count_audit(&self, filter: &AuditFilter) -> Result<i64, StoreError> {
        const SQL: &str = "
            SELECT COUNT(*) FROM audit_log
            WHERE ($1 IS NULL OR dag_id = $1)
              AND ($2 IS NULL OR actor = $2)
              AND ($3 IS NULL OR action = $3)";
        let count = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(&filter.dag_id)
            .bind(&filter.actor)
            .bind(&filter.action)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }
}
