//! Missed deadlines (`deadline_misses`): one row per run (its own deadline) or per task of
//! a run, written once with its `deadline_missed` callback however many schedulers notice
//! it; and the reads the scheduler's deadline check and the UI need.

use chrono::{DateTime, Utc};
use nightshift_core::state::{RunState, TaskState};
use sqlx::types::Json;

use crate::callbacks::{insert_callback, NewCallback};
use crate::runs::DagRun;
use crate::{impl_from_row, in_tx, on_pool, Backend, Store, StoreError};

/// A deadline found missed, to record (and announce) once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadlineMiss {
    /// The run's row id.
    pub run: i64,
    pub dag_id: String,
    /// `None` for the run's own deadline.
    pub task_id: Option<String>,
    /// The deadline as a person reads it (`at 09:00 (Asia/Tokyo)`, `within 2h`).
    pub deadline: String,
    pub due_at: DateTime<Utc>,
    /// The deadline has `fail = true`.
    pub failed: bool,
    pub now: DateTime<Utc>,
    /// The `deadline_missed` request for the outbox, written in the same transaction.
    pub callback: Option<NewCallback>,
}

/// A recorded missed deadline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadlineMiss {
    pub id: i64,
    pub run: i64,
    pub dag_id: String,
    pub task_id: Option<String>,
    pub deadline: String,
    pub due_at: DateTime<Utc>,
    /// When a scheduler noticed it.
    pub missed_at: DateTime<Utc>,
    pub failed: bool,
}

impl_from_row!(DeadlineMiss, |row| DeadlineMiss {
    id: row.try_get("id")?,
    run: row.try_get("run")?,
    dag_id: row.try_get("dag_id")?,
    task_id: row.try_get("task_id")?,
    deadline: row.try_get("deadline")?,
    due_at: row.try_get("due_at")?,
    missed_at: row.try_get("missed_at")?,
    failed: row.try_get("failed")?,
});

/// How far one task of a run has got, for its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskProgress {
    pub task_id: String,
    /// The start of its earliest try (any instance, any try); `None` before one started.
    pub first_start: Option<DateTime<Utc>>,
    /// Its instances that have not finished.
    pub unfinished: i64,
}

impl_from_row!(TaskProgress, |row| TaskProgress {
    task_id: row.try_get("task_id")?,
    first_start: row.try_get("first_start")?,
    unfinished: row.try_get("unfinished")?,
});

/// `column` is one of the strings in the JSON list bound at `param`.
fn text_in_json_list(store: &Store, column: &str, param: &str) -> String {
    match store.backend {
        Backend::Postgres(_) => {
            format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text({param})))")
        }
        Backend::Sqlite(_) => format!("{column} IN (SELECT value FROM json_each({param}))"),
    }
}

impl Store {
    /// Records a missed deadline and enqueues its callback, in one transaction, unless it
    /// is recorded already (another scheduler got there first): then `None`, and nothing
    /// is written.
    pub async fn record_deadline_miss(
        &self,
        miss: &NewDeadlineMiss,
    ) -> Result<Option<DeadlineMiss>, StoreError> {
        const SQL: &str = "
            INSERT INTO deadline_misses (run, dag_id, task_id, deadline, due_at, missed_at,
                                         failed)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT DO NOTHING
            RETURNING *";
        let recorded = in_tx!(self, |tx| {
            let row: Option<DeadlineMiss> = sqlx::query_as(SQL)
                .bind(miss.run)
                .bind(&miss.dag_id)
                .bind(miss.task_id.as_deref())
                .bind(&miss.deadline)
                .bind(miss.due_at)
                .bind(miss.now)
                .bind(miss.failed)
                .fetch_optional(&mut *tx)
                .await?;
            if let (Some(_), Some(callback)) = (&row, &miss.callback) {
                insert_callback(callback)
                    .build_query_scalar::<i64>()
                    .fetch_one(&mut *tx)
                    .await?;
            }
            row
        });
        Ok(recorded)
    }

    /// The missed deadlines of one run (its own first, then by task id).
    pub async fn deadline_misses(&self, run: i64) -> Result<Vec<DeadlineMiss>, StoreError> {
        const SQL: &str = "SELECT * FROM deadline_misses WHERE run = $1
                           ORDER BY task_id IS NOT NULL, task_id";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(run)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The missed deadlines of several runs, by run then task id.
    pub async fn deadline_misses_of_runs(
        &self,
        runs: &[i64],
    ) -> Result<Vec<DeadlineMiss>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let runs_in = crate::id_in_json_list(self, "run", "$1");
        let sql = format!(
            "SELECT * FROM deadline_misses WHERE {runs_in}
             ORDER BY run, task_id IS NOT NULL, task_id"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(runs))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The queued and running runs of these DAGs, oldest first, at most `limit`: the runs
    /// whose deadlines may still be missed.
    pub async fn unfinished_runs_of(
        &self,
        dag_ids: &[String],
        limit: i64,
    ) -> Result<Vec<DagRun>, StoreError> {
        if dag_ids.is_empty() {
            return Ok(Vec::new());
        }
        let dags_in = text_in_json_list(self, "dag_id", "$1");
        let sql = format!(
            "SELECT * FROM dag_runs WHERE state IN ($2, $3) AND {dags_in}
             ORDER BY id LIMIT $4"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(dag_ids))
            .bind(RunState::Queued.as_str())
            .bind(RunState::Running.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// For each named task of a run that has instances: when its first try started and
    /// how many of its instances are unfinished.
    pub async fn task_progress(
        &self,
        run: i64,
        task_ids: &[String],
    ) -> Result<Vec<TaskProgress>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let tasks_in = text_in_json_list(self, "ti.task_id", "$2");
        let finished: Vec<&str> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .map(TaskState::as_str)
            .collect();
        let sql = format!(
            "SELECT ti.task_id,
                    (SELECT MIN(a.start_date) FROM attempts a
                     JOIN task_instances i ON i.id = a.task_instance
                     WHERE i.run = $1 AND i.task_id = ti.task_id) AS first_start,
                    SUM(CASE WHEN ti.state IN (SELECT value FROM {finished_list}) THEN 0 ELSE 1 END)
                        AS unfinished
             FROM task_instances ti
             WHERE ti.run = $1 AND {tasks_in}
             GROUP BY ti.task_id ORDER BY ti.task_id",
            finished_list = match self.backend {
                Backend::Postgres(_) => "jsonb_array_elements_text($3) AS value",
                Backend::Sqlite(_) => "json_each($3)",
            }
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(run)
            .bind(Json(task_ids))
            .bind(Json(&finished))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The DAGs with a queued or running run that has missed a deadline (the UI's "late").
    pub async fn late_dags(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "
            SELECT DISTINCT m.dag_id FROM deadline_misses m
            JOIN dag_runs r ON r.id = m.run
            WHERE r.state IN ($1, $2)
            ORDER BY m.dag_id";
        let rows = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(RunState::Queued.as_str())
            .bind(RunState::Running.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }
}
