//! DAGs as loaded from their files (with the parsed definition as JSON, so web and
//! workers need no DAG files) and the per-file load errors.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::{impl_from_row, in_tx, json_list_sql, on_pool, Store, StoreError};

/// What the DAG loader writes for one DAG file that parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DagUpsert {
    pub dag_id: String,
    pub file_path: String,
    /// The parsed DAG (core's `Dag`) serialized as JSON.
    pub definition: Value,
    /// The definition's version (core's `Dag::version_hash`); `updated_at` only moves
    /// when it changes.
    pub source_hash: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    /// Only used when the DAG is new: an existing DAG keeps its paused flag.
    pub is_paused: bool,
    pub now: DateTime<Utc>,
}

/// A stored DAG.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DagRecord {
    pub dag_id: String,
    pub file_path: String,
    pub definition: Value,
    pub source_hash: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub is_paused: bool,
    /// False once the DAG's file vanished (its runs and history stay).
    pub is_active: bool,
    pub last_parsed_at: DateTime<Utc>,
    /// Maintained by the scheduler: when the next scheduled run may be created.
    pub next_dagrun_create_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl_from_row!(DagRecord, |row| DagRecord {
    dag_id: row.try_get("dag_id")?,
    file_path: row.try_get("file_path")?,
    definition: row.try_get::<Json<Value>, _>("definition")?.0,
    source_hash: row.try_get("source_hash")?,
    schedule: row.try_get("schedule")?,
    timezone: row.try_get("timezone")?,
    description: row.try_get("description")?,
    owner: row.try_get("owner")?,
    tags: row.try_get::<Json<Vec<String>>, _>("tags")?.0,
    is_paused: row.try_get("is_paused")?,
    is_active: row.try_get("is_active")?,
    last_parsed_at: row.try_get("last_parsed_at")?,
    next_dagrun_create_after: row.try_get("next_dagrun_create_after")?,
    created_at: row.try_get("created_at")?,
    updated_at: row.try_get("updated_at")?,
});

/// Which DAGs [`Store::list_dags`] returns; the default is all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagFilter {
    pub active: Option<bool>,
    pub paused: Option<bool>,
    /// `None`: no limit.
    pub limit: Option<i64>,
    pub offset: i64,
}

/// What the scheduler and the loader check every pass: a DAG without its definition,
/// which is fetched ([`Store::get_dag`]) only when `source_hash` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagHead {
    pub dag_id: String,
    pub file_path: String,
    pub source_hash: String,
    pub is_paused: bool,
    pub is_active: bool,
    /// The version `source_hash` is stored with its text and definition
    /// ([`Store::record_dag_version`]); a DAG loaded before versions were kept has none
    /// until the loader records it.
    pub has_source: bool,
}

impl_from_row!(DagHead, |row| DagHead {
    dag_id: row.try_get("dag_id")?,
    file_path: row.try_get("file_path")?,
    source_hash: row.try_get("source_hash")?,
    is_paused: row.try_get("is_paused")?,
    is_active: row.try_get("is_active")?,
    has_source: row.try_get("has_source")?,
});

/// A DAG file's text as loaded, for one version of its definition: the hash is the
/// DAG's `source_hash` then, which its runs keep as their `definition_hash`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DagSource {
    pub dag_id: String,
    /// The version's number: 1 for the DAG's first definition, counting up.
    pub version: i64,
    pub source_hash: String,
    pub file_path: String,
    pub source: String,
    /// When this version was first loaded.
    pub created_at: DateTime<Utc>,
}

impl_from_row!(DagSource, |row| DagSource {
    dag_id: row.try_get("dag_id")?,
    version: row.try_get("version")?,
    source_hash: row.try_get("source_hash")?,
    file_path: row.try_get("file_path")?,
    source: row.try_get("source")?,
    created_at: row.try_get("created_at")?,
});

/// One version of a DAG: a distinct parsed definition (the hash of [`DagUpsert`]'s
/// definition, see core's `Dag::version_hash`), numbered in the order it was first
/// loaded. Its text is [`Store::get_dag_source`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DagVersion {
    pub dag_id: String,
    pub version: i64,
    pub source_hash: String,
    pub file_path: String,
    /// When this version was first loaded.
    pub loaded_at: DateTime<Utc>,
}

impl_from_row!(DagVersion, |row| DagVersion {
    dag_id: row.try_get("dag_id")?,
    version: row.try_get("version")?,
    source_hash: row.try_get("source_hash")?,
    file_path: row.try_get("file_path")?,
    loaded_at: row.try_get("created_at")?,
});

/// What the loader records of a version: the file's text and the parsed definition.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDagVersion {
    pub dag_id: String,
    pub source_hash: String,
    pub file_path: String,
    pub source: String,
    /// The parsed DAG (core's `Dag`) as JSON, as in [`DagUpsert::definition`].
    pub definition: Value,
    pub loaded_at: DateTime<Utc>,
}

/// A DAG file that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportError {
    pub file_path: String,
    pub message: String,
    pub updated_at: DateTime<Utc>,
}

impl_from_row!(ImportError, |row| ImportError {
    file_path: row.try_get("file_path")?,
    message: row.try_get("message")?,
    updated_at: row.try_get("updated_at")?,
});

impl Store {
    /// Inserts or updates a DAG and marks it active. An existing DAG keeps `is_paused`,
    /// `created_at` and `next_dagrun_create_after`; its `updated_at` moves only when the
    /// source hash changed or it was inactive.
    pub async fn upsert_dag(&self, dag: &DagUpsert) -> Result<DagRecord, StoreError> {
        const SQL: &str = "
            INSERT INTO dags (dag_id, file_path, definition, source_hash, schedule, timezone,
                              description, owner, tags, is_paused, is_active, last_parsed_at,
                              created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)
            ON CONFLICT (dag_id) DO UPDATE SET
                file_path = excluded.file_path,
                definition = excluded.definition,
                source_hash = excluded.source_hash,
                schedule = excluded.schedule,
                timezone = excluded.timezone,
                description = excluded.description,
                owner = excluded.owner,
                tags = excluded.tags,
                is_active = excluded.is_active,
                last_parsed_at = excluded.last_parsed_at,
                updated_at = CASE
                    WHEN dags.source_hash = excluded.source_hash
                         AND dags.is_active = excluded.is_active THEN dags.updated_at
                    ELSE excluded.updated_at END
            RETURNING *";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(&dag.dag_id)
            .bind(&dag.file_path)
            .bind(Json(&dag.definition))
            .bind(&dag.source_hash)
            .bind(&dag.schedule)
            .bind(&dag.timezone)
            .bind(&dag.description)
            .bind(&dag.owner)
            .bind(Json(&dag.tags))
            .bind(dag.is_paused)
            .bind(true)
            .bind(dag.now)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    /// DAGs ordered by id.
    pub async fn list_dags(&self, filter: &DagFilter) -> Result<Vec<DagRecord>, StoreError> {
        const SQL: &str = "
            SELECT * FROM dags
            WHERE ($1 IS NULL OR is_active = $1) AND ($2 IS NULL OR is_paused = $2)
            ORDER BY dag_id
            LIMIT $3 OFFSET $4";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(filter.active)
            .bind(filter.paused)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .bind(filter.offset)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// Every DAG without its definition, ordered by id: cheap enough to read on every
    /// scheduler pass with thousands of DAGs or a DAG of thousands of tasks.
    pub async fn list_dag_heads(&self) -> Result<Vec<DagHead>, StoreError> {
        const SQL: &str = "
            SELECT dag_id, file_path, source_hash, is_paused, is_active,
                   EXISTS (SELECT 1 FROM dag_sources s
                           WHERE s.dag_id = dags.dag_id AND s.source_hash = dags.source_hash
                             AND s.definition IS NOT NULL)
                       AS has_source
            FROM dags
            ORDER BY dag_id";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// How many DAGs match `filter` (its limit and offset are ignored).
    pub async fn count_dags(&self, filter: &DagFilter) -> Result<i64, StoreError> {
        const SQL: &str = "
            SELECT COUNT(*) FROM dags
            WHERE ($1 IS NULL OR is_active = $1) AND ($2 IS NULL OR is_paused = $2)";
        let count = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(filter.active)
            .bind(filter.paused)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }

    pub async fn get_dag(&self, dag_id: &str) -> Result<Option<DagRecord>, StoreError> {
        const SQL: &str = "SELECT * FROM dags WHERE dag_id = $1";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Records a version of a DAG (the DAG must be stored): its file's text and parsed
    /// definition, numbered one past the DAG's newest version. A version already kept
    /// keeps its number, text and time (and gets its definition if it had none, as the
    /// versions kept before migration 0017 may not). Returns the version's number.
    ///
    /// Two loaders recording two new versions of one DAG at once may pick the same
    /// number; the loser's unique violation is retried with the next number.
    pub async fn record_dag_version(&self, version: &NewDagVersion) -> Result<i64, StoreError> {
        const SQL: &str = "
            INSERT INTO dag_sources (dag_id, version, source_hash, file_path, source,
                                     definition, created_at)
            SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6
            FROM dag_sources WHERE dag_id = $1
            ON CONFLICT (dag_id, source_hash)
                DO UPDATE SET definition = COALESCE(dag_sources.definition, excluded.definition)
            RETURNING version";
        let mut attempts = 0;
        loop {
            attempts += 1;
            let recorded = on_pool!(self, |pool| sqlx::query_scalar(SQL)
                .bind(&version.dag_id)
                .bind(&version.source_hash)
                .bind(&version.file_path)
                .bind(&version.source)
                .bind(Json(&version.definition))
                .bind(version.loaded_at)
                .fetch_one(pool)
                .await);
            match recorded {
                Ok(number) => return Ok(number),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() && attempts < 5 => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Every version of `dag_id`, newest first.
    pub async fn list_dag_versions(&self, dag_id: &str) -> Result<Vec<DagVersion>, StoreError> {
        const SQL: &str = "
            SELECT dag_id, version, source_hash, file_path, created_at FROM dag_sources
            WHERE dag_id = $1 ORDER BY version DESC";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The parsed definition (core's `Dag` as JSON) of `dag_id`'s version `source_hash`:
    /// as the version was recorded, or the DAG's current one if that is the version.
    /// `None` when neither has it.
    pub async fn get_dag_definition(
        &self,
        dag_id: &str,
        source_hash: &str,
    ) -> Result<Option<Value>, StoreError> {
        const SQL: &str = "
            SELECT definition FROM dag_sources
            WHERE dag_id = $1 AND source_hash = $2 AND definition IS NOT NULL
            UNION ALL
            SELECT definition FROM dags WHERE dag_id = $1 AND source_hash = $2";
        let found: Option<Json<Value>> = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(dag_id)
            .bind(source_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(found.map(|json| json.0))
    }

    /// The text of `dag_id`'s file for the definition `source_hash`, if it was kept.
    pub async fn get_dag_source(
        &self,
        dag_id: &str,
        source_hash: &str,
    ) -> Result<Option<DagSource>, StoreError> {
        const SQL: &str = "
            SELECT dag_id, version, source_hash, file_path, source, created_at FROM dag_sources
            WHERE dag_id = $1 AND source_hash = $2";
        let row = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(source_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Whether a run of `dag_id` was made from the definition `source_hash`.
    pub async fn run_with_definition(
        &self,
        dag_id: &str,
        source_hash: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "
            SELECT EXISTS (SELECT 1 FROM dag_runs WHERE dag_id = $1 AND definition_hash = $2)";
        let found = on_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(dag_id)
            .bind(source_hash)
            .fetch_one(pool)
            .await)?;
        Ok(found)
    }

    /// Pauses or unpauses a DAG.
    pub async fn set_paused(
        &self,
        dag_id: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<DagRecord, StoreError> {
        const SQL: &str =
            "UPDATE dags SET is_paused = $2, updated_at = $3 WHERE dag_id = $1 RETURNING *";
        let row: Option<DagRecord> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(dag_id)
            .bind(paused)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("DAG", dag_id))
    }

    /// Records when the scheduler may create the DAG's next scheduled run.
    pub async fn set_next_dagrun_create_after(
        &self,
        dag_id: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE dags SET next_dagrun_create_after = $2 WHERE dag_id = $1";
        let done = on_pool!(self, |pool| sqlx::query(SQL)
            .bind(dag_id)
            .bind(at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::not_found("DAG", dag_id));
        }
        Ok(())
    }

    /// Marks every active DAG whose id is not in `seen` inactive (its file vanished);
    /// returns how many changed.
    /// Records that the DAGs `dag_ids` were parsed again at `now` and found unchanged
    /// (only `last_parsed_at` moves), in one statement: a rescan of an unchanged folder
    /// rewrites no definitions.
    pub async fn touch_dags(
        &self,
        dag_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if dag_ids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE dags SET last_parsed_at = $1 WHERE dag_id IN ({})",
            json_list_sql(self, "$2")
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(now)
            .bind(Json(dag_ids))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(done)
    }

    pub async fn mark_inactive_except(
        &self,
        seen: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE dags SET is_active = $1, updated_at = $2
             WHERE is_active = $3 AND dag_id NOT IN ({})",
            json_list_sql(self, "$4")
        );
        let done = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(false)
            .bind(now)
            .bind(true)
            .bind(Json(seen))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(done)
    }

    /// Replaces the whole set of load errors with `errors` (file, message) in one
    /// transaction. Several messages for one file are joined with newlines.
    pub async fn replace_import_errors(
        &self,
        errors: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const DELETE: &str = "DELETE FROM import_errors";
        const INSERT: &str = "
            INSERT INTO import_errors (file_path, message, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (file_path)
            DO UPDATE SET message = import_errors.message || $4 || excluded.message";
        in_tx!(self, |tx| {
            sqlx::query(DELETE).execute(&mut *tx).await?;
            for (file_path, message) in errors {
                sqlx::query(INSERT)
                    .bind(file_path)
                    .bind(message)
                    .bind(now)
                    .bind("\n")
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// Load errors ordered by file path.
    pub async fn list_import_errors(&self) -> Result<Vec<ImportError>, StoreError> {
        const SQL: &str = "SELECT * FROM import_errors ORDER BY file_path";
        let rows = on_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows)
    }
}
