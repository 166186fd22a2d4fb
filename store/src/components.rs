//! Heartbeats of the running schedulers and workers, for `/health` and the UI.

use chrono::{DateTime, Utc};

use crate::{impl_from_row, on_pool, parse_col, text_enum, Store, StoreError};

text_enum! {
    /// What kind of process a component is.
    pub enum ComponentKind as "component kind" {
        Scheduler = "scheduler",
        Worker = "worker",
    }
}

/// A component reporting that it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHeartbeat {
    /// Unique per process (e.g. `worker-host-1234-<random>`).
    pub id: String,
    pub kind: ComponentKind,
    pub hostname: String,
    pub pid: i64,
    pub now: DateTime<Utc>,
}

/// A component as last heard from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Component {
    pub id: String,
    pub kind: ComponentKind,
    pub hostname: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl_from_row!(Component, |row| Component {
    id: row.try_get("id")?,
    kind: parse_col(row.try_get("kind")?, "kind")?,
    hostname: row.try_get("hostname")?,
    pid: row.try_get("pid")?,
    started_at: row.try_get("started_at")?,
    heartbeat_at: row.try_get("heartbeat_at")?,
});

impl Store {
    /// Records a heartbeat; the first one for an id sets `started_at`.
    pub async fn heartbeat_component(
        &self,
        beat: &ComponentHeartbeat,
    ) -> Result<Component, StoreError> {
        const SQL: &str = "
            INSERT INTO components (id, kind, hostname, pid, started_at, heartbeat_at)
            VALUES ($1, $2, $3, $4, $5, $5)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
            RETURNING *";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&beat.id)
            .bind(beat.kind.as_str())
            .bind(&beat.hostname)
            .bind(beat.pid)
            .bind(beat.now)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    /// Every component, most recent heartbeat first.
    pub async fn list_components(&self) -> Result<Vec<Component>, StoreError> {
        const SQL: &str = "SELECT * FROM components ORDER BY heartbeat_at DESC, id";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows)
    }
}
impl Store {
    /// The most recent heartbeat of any component of `kind`.
    pub async fn latest_heartbeat(
        &self,
        kind: ComponentKind,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        const SQL: &str = "
            SELECT heartbeat_at FROM components WHERE kind = $1
            ORDER BY heartbeat_at DESC LIMIT 1";
        let at = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(kind.as_str())
            .fetch_optional(pool)
            .await)?;
        Ok(at)
    }
}
