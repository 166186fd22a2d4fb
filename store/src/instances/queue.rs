//! The scheduler's writes of task instances that must be atomic across several
//! schedulers: queueing scheduled instances within pools and `max_active_tasks`, and
//! fanning out the placeholder of a mapped task.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nightshift_core::plan::{select_for_queue, Capacity, QueueCandidate};
use nightshift_core::state::{TaskEvent, TaskState};
use sqlx::types::Json;

use super::{insert_instances, NewTaskInstance, INSTANCES_PER_INSERT};
use crate::{
    id_in_json_list, impl_from_row, in_tx, on_pool, Backend, Store, StoreError, TaskInstance,
};

/// How many scheduled candidates one queueing pass reads per instance it may queue; the
/// ones that do not fit a pool or DAG limit are passed over, so read more than `limit`.
const CANDIDATES_PER_SLOT: usize = 8;

/// One pass of queueing scheduled instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRequest {
    pub now: DateTime<Utc>,
    /// At most this many instances are queued.
    pub limit: usize,
    /// `max_active_tasks` per DAG id; instances of a DAG not listed are not queued.
    pub max_active_tasks: BTreeMap<String, i64>,
}

/// Fanning out the placeholder (map index -1) of a `for_each` task: `instances[0]`
/// (map index 0) replaces the placeholder, the others are inserted. The placeholder
/// itself becomes map index 0 in the state [`TaskState::on`] decides for
/// [`TaskEvent::Schedule`] from `expected_state` (the state given in `instances[0]` is not
/// used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandMapped {
    pub placeholder: i64,
    /// The placeholder's state as the caller saw it (compare-and-set).
    pub expected_state: TaskState,
    pub instances: Vec<NewTaskInstance>,
    pub now: DateTime<Utc>,
}

struct Candidate {
    id: i64,
    dag_id: String,
    pool: String,
    pool_slots: i32,
}

impl_from_row!(Candidate, |row| Candidate {
    id: row.try_get("id")?,
    dag_id: row.try_get("dag_id")?,
    pool: row.try_get("pool")?,
    pool_slots: row.try_get("pool_slots")?,
});

impl Store {
    /// Moves scheduled instances to `queued`, highest priority first, then the oldest run,
    /// as far as free pool slots and each DAG's `max_active_tasks` allow. One transaction
    /// that first locks every pool row (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`
    /// serialises writers anyway), so concurrent schedulers never overfill a pool or a DAG.
    /// Returns how many instances were queued.
    pub async fn queue_scheduled(&self, req: &QueueRequest) -> Result<u64, StoreError> {
        if req.limit == 0 {
            return Ok(0);
        }
        let lock = match self.backend {
            Backend::Postgres(_) => "FOR UPDATE",
            Backend::Sqlite(_) => "",
        };
        let pools_sql = format!("SELECT name, slots FROM pools ORDER BY name {lock}");
        const USED_SQL: &str = "
            SELECT pool, COALESCE(SUM(pool_slots), 0) AS used FROM task_instances
            WHERE state IN ($1, $2) GROUP BY pool";
        const ACTIVE_SQL: &str = "
            SELECT dag_id, COUNT(*) AS active FROM task_instances
            WHERE state IN ($1, $2) GROUP BY dag_id";
        const CANDIDATES_SQL: &str = "
            SELECT ti.id, ti.dag_id, ti.pool, ti.pool_slots
            FROM task_instances ti JOIN dag_runs r ON r.id = ti.run
            WHERE ti.state = $1
            ORDER BY ti.priority DESC, r.logical_date, ti.id
            LIMIT $2";
        let update_sql = format!(
            "UPDATE task_instances SET state = $1, queued_at = $2, updated_at = $2
             WHERE state = $3 AND {}",
            id_in_json_list(self, "id", "$4")
        );
        // Most passes have nothing to queue: they are answered by an index lookup, not
        // by locking the pools and counting every queued and running instance.
        const ANY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM task_instances WHERE state = $1)";
        let any: bool = on_pool!(self, |pool| sqlx::query_scalar(ANY_SQL)
            .bind(TaskState::Scheduled.as_str())
            .fetch_one(pool)
            .await)?;
        if !any {
            return Ok(0);
        }
        let active_states = [TaskState::Queued.as_str(), TaskState::Running.as_str()];
        let candidate_limit =
            i64::try_from(req.limit.saturating_mul(CANDIDATES_PER_SLOT)).unwrap_or(i64::MAX);
        let queued = in_tx!(self, |tx| {
            let pools: Vec<(String, i32)> = sqlx::query_as(&pools_sql).fetch_all(&mut *tx).await?;
            let used: Vec<(String, i64)> = sqlx::query_as(USED_SQL)
                .bind(active_states[0])
                .bind(active_states[1])
                .fetch_all(&mut *tx)
                .await?;
            let active: Vec<(String, i64)> = sqlx::query_as(ACTIVE_SQL)
                .bind(active_states[0])
                .bind(active_states[1])
                .fetch_all(&mut *tx)
                .await?;
            let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES_SQL)
                .bind(TaskState::Scheduled.as_str())
                .bind(candidate_limit)
                .fetch_all(&mut *tx)
                .await?;
            let used: BTreeMap<String, i64> = used.into_iter().collect();
            let active: BTreeMap<String, i64> = active.into_iter().collect();
            let capacity = Capacity {
                pool_free: pools
                    .into_iter()
                    .map(|(name, slots)| {
                        let free = i64::from(slots) - used.get(&name).copied().unwrap_or(0);
                        (name, free)
                    })
                    .collect(),
                dag_free: req
                    .max_active_tasks
                    .iter()
                    .map(|(dag, max)| (dag.clone(), max - active.get(dag).copied().unwrap_or(0)))
                    .collect(),
                limit: req.limit,
            };
            let candidates: Vec<QueueCandidate> = candidates
                .into_iter()
                .map(|c| QueueCandidate {
                    id: c.id,
                    dag_id: c.dag_id,
                    pool: c.pool,
                    pool_slots: u32::try_from(c.pool_slots).unwrap_or(u32::MAX),
                })
                .collect();
            let chosen = select_for_queue(&candidates, &capacity);
            if chosen.is_empty() {
                0
            } else {
                sqlx::query(&update_sql)
                    .bind(TaskState::Scheduled.on(TaskEvent::Queue)?.as_str())
                    .bind(req.now)
                    .bind(TaskState::Scheduled.as_str())
                    .bind(Json(&chosen))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        });
        Ok(queued)
    }

    /// Fans out a `for_each` placeholder (see [`ExpandMapped`]) in one transaction;
    /// [`StoreError::Stale`] when the placeholder is no longer unexpanded in
    /// `expected_state`. Returns the number of instances (placeholder included).
    pub async fn expand_mapped(&self, req: &ExpandMapped) -> Result<u64, StoreError> {
        const PLACEHOLDER_SQL: &str = "
            UPDATE task_instances SET map_index = 0, state = $3, updated_at = $4
            WHERE id = $1 AND state = $2 AND map_index = -1
            RETURNING run, dag_id";
        let Some((_, rest)) = req.instances.split_first() else {
            return Err(StoreError::Conflict {
                what: "task instance",
                key: req.placeholder.to_string(),
                reason: "a fan-out needs at least one instance".to_owned(),
            });
        };
        // The placeholder becomes instance 0, scheduled as the state machine decides.
        let placeholder_state = req.expected_state.on(TaskEvent::Schedule)?;
        let count = in_tx!(self, |tx| {
            let row: Option<(i64, String)> = sqlx::query_as(PLACEHOLDER_SQL)
                .bind(req.placeholder)
                .bind(req.expected_state.as_str())
                .bind(placeholder_state.as_str())
                .bind(req.now)
                .fetch_optional(&mut *tx)
                .await?;
            let (run, dag_id) = row.ok_or_else(|| StoreError::Stale {
                what: "task instance",
                id: req.placeholder.to_string(),
                expected: format!("an unexpanded {} placeholder", req.expected_state),
            })?;
            let mut count = 1;
            for chunk in rest.chunks(INSTANCES_PER_INSERT) {
                let rows: Vec<TaskInstance> = insert_instances(run, &dag_id, chunk, req.now)
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                count += rows.len() as u64;
            }
            count
        });
        Ok(count)
    }
}
