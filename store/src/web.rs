//! What the web server needs beyond the engine's tables: sign-in sessions and API tokens
//! (stored as hashes), and the paginated or aggregated reads behind its lists, the DAG
//! overview and the runs × tasks grid.

use chrono::{DateTime, Utc};
use nightshift_core::state::{RunState, TaskState};
use sqlx::types::Json;

use crate::{
    id_in_json_list, impl_from_row, in_tx, json_list_sql, name_slots, on_pool, parse_col,
    AuditFilter, Backend, ComponentKind, DagRecord, DagRun, Store, StoreError, TaskInstance, User,
};

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

/// Which DAGs the overview lists: failing ones (latest run failed) first, then by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagOverviewFilter {
    /// Only DAGs whose latest run failed.
    pub failing_only: bool,
    pub paused: Option<bool>,
    pub active: Option<bool>,
    /// A substring of the DAG id (case-insensitive).
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// One row of the DAG overview.
#[derive(Debug, Clone, PartialEq)]
pub struct DagOverview {
    pub dag: DagRecord,
    /// The state of the run with the latest logical date.
    pub latest_state: Option<RunState>,
}

struct OverviewRow(DagOverview);

impl_from_row!(OverviewRow, |row| OverviewRow(DagOverview {
    dag: sqlx::FromRow::from_row(row)?,
    latest_state: match row.try_get::<Option<String>, _>("latest_state")? {
        Some(state) => Some(parse_col(state, "latest_state")?),
        None => None,
    },
}));

/// Which runs [`Store::query_runs`] returns, newest logical date first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// `None`: runs of every DAG.
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// Which instances of one run [`Store::query_task_instances`] returns, by task and map index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInstanceQuery {
    pub run: i64,
    pub task_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<TaskState>,
    pub limit: i64,
    pub offset: i64,
}

/// One cell of the grid: how many instances of `task_id` in `run` are in `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridCell {
    pub run: i64,
    pub task_id: String,
    pub state: TaskState,
    pub count: i64,
    /// The lowest map index among them (-1 for an unmapped task).
    pub min_map_index: i32,
}

impl_from_row!(GridCell, |row| GridCell {
    run: row.try_get("run")?,
    task_id: row.try_get("task_id")?,
    state: parse_col(row.try_get("state")?, "state")?,
    count: row.try_get("n")?,
    min_map_index: row.try_get("min_map_index")?,
});

/// Slots a pool's queued and running instances hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: String,
    pub queued_slots: i64,
    pub running_slots: i64,
}

const OVERVIEW_WHERE: &str = "
    WHERE ($1 = FALSE OR latest_state = $2)
      AND ($3 IS NULL OR is_paused = $3)
      AND ($4 IS NULL OR is_active = $4)
      AND ($5 IS NULL OR LOWER(dag_id) LIKE $5 ESCAPE '\\')";

const OVERVIEW_FROM: &str = "
    FROM (SELECT d.*, (SELECT r.state FROM dag_runs r WHERE r.dag_id = d.dag_id
                       ORDER BY r.logical_date DESC, r.id DESC LIMIT 1) AS latest_state
          FROM dags d) AS o";

const RUNS_WHERE: &str = "
    WHERE ($1 IS NULL OR dag_id = $1)
      AND ($2 OR state IN ($3, $4, $5, $6))
      AND ($7 IS NULL OR logical_date >= $7)
      AND ($8 IS NULL OR logical_date <= $8)";

const TIS_WHERE: &str = "
    WHERE run = $1 AND ($2 IS NULL OR task_id = $2)
      AND ($3 OR state IN ($4, $5, $6, $7, $8, $9, $10, $11, $12, $13))";

/// `%term%` for a `LIKE … ESCAPE '\'` on a lowercased column: LIKE's wildcards and the
/// escape character itself are escaped, so they match literally (`hello_commands` finds
/// that DAG, `%` finds a `%`). Both backends take the same `ESCAPE` clause.
fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Binds `$1..$8` of [`RUNS_WHERE`] on a query.
macro_rules! bind_runs_where {
    ($query:expr, $q:expr) => {{
        let q: &RunQuery = $q;
        let slots: [Option<&str>; 4] = name_slots(q.states.iter().map(|s| s.as_str()));
        let mut query = $query.bind(&q.dag_id).bind(q.states.is_empty());
        for slot in slots {
            query = query.bind(slot);
        }
        query.bind(q.logical_date_gte).bind(q.logical_date_lte)
    }};
}

/// Binds `$1..$13` of [`TIS_WHERE`] on a query.
macro_rules! bind_tis_where {
    ($query:expr, $q:expr) => {{
        let q: &TaskInstanceQuery = $q;
        let slots: [Option<&str>; 10] = name_slots(q.states.iter().map(|s| s.as_str()));
        let mut query = $query
            .bind(q.run)
            .bind(&q.task_id)
            .bind(q.states.is_empty());
        for slot in slots {
            query = query.bind(slot);
        }
        query
    }};
}

/// Binds `$1..$5` of [`OVERVIEW_WHERE`] on a query.
macro_rules! bind_overview_where {
    ($query:expr, $f:expr) => {{
        let f: &DagOverviewFilter = $f;
        $query
            .bind(f.failing_only)
            .bind(RunState::Failed.as_str())
            .bind(f.paused)
            .bind(f.active)
            .bind(f.search.as_deref().map(like_pattern))
    }};
}

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

    /// A page of the DAG overview: failing DAGs first, then by id.
    pub async fn dag_overviews(
        &self,
        filter: &DagOverviewFilter,
    ) -> Result<Vec<DagOverview>, StoreError> {
        let sql = format!(
            "SELECT * {OVERVIEW_FROM} {OVERVIEW_WHERE}
             ORDER BY CASE WHEN latest_state = $2 THEN 0 ELSE 1 END, dag_id
             LIMIT $6 OFFSET $7"
        );
        let rows: Vec<OverviewRow> = on_pool!(self, |pool| bind_overview_where!(
            sqlx::query_as(&sql),
            filter
        )
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    /// How many DAGs match `filter` (its limit and offset are ignored).
    pub async fn count_dag_overviews(&self, filter: &DagOverviewFilter) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) {OVERVIEW_FROM} {OVERVIEW_WHERE}");
        let count = on_pool!(self, |pool| bind_overview_where!(
            sqlx::query_scalar(&sql),
            filter
        )
        .fetch_one(pool)
        .await)?;
        Ok(count)
    }

    /// The latest `per_dag` runs of each of `dag_ids`, by DAG then newest first. Each DAG's
    /// runs come from its (dag_id, logical_date) index, so years of history cost nothing.
    /// PostgreSQL needs a LATERAL join for that: given the `r.id IN (correlated subquery)`
    /// join that SQLite runs once per DAG, it ran the subquery once per (run, DAG) pair
    /// (2.5 s for 10,000 runs, see `benches/history.rs`). SQLite has no LATERAL.
    pub async fn recent_runs(
        &self,
        dag_ids: &[String],
        per_dag: i64,
    ) -> Result<Vec<DagRun>, StoreError> {
        let join = match &self.backend {
            Backend::Postgres(_) => {
                "CROSS JOIN LATERAL (
                 SELECT r2.* FROM dag_runs r2 WHERE r2.dag_id = d.dag_id
                 ORDER BY r2.logical_date DESC, r2.id DESC LIMIT $2) r"
            }
            Backend::Sqlite(_) => {
                "JOIN dag_runs r ON r.id IN (
                 SELECT r2.id FROM dag_runs r2 WHERE r2.dag_id = d.dag_id
                 ORDER BY r2.logical_date DESC, r2.id DESC LIMIT $2)"
            }
        };
        let sql = format!(
            "SELECT r.* FROM dags d {join}
             WHERE d.dag_id IN ({})
             ORDER BY r.dag_id, r.logical_date DESC, r.id DESC",
            json_list_sql(self, "$1")
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(dag_ids))
            .bind(per_dag)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// A page of runs matching `q`, newest logical date first.
    pub async fn query_runs(&self, q: &RunQuery) -> Result<Vec<DagRun>, StoreError> {
        let sql = format!(
            "SELECT * FROM dag_runs {RUNS_WHERE}
             ORDER BY logical_date DESC, id DESC LIMIT $9 OFFSET $10"
        );
        let rows = on_pool!(self, |pool| bind_runs_where!(sqlx::query_as(&sql), q)
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// How many runs match `q` (its limit and offset are ignored).
    pub async fn count_query_runs(&self, q: &RunQuery) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM dag_runs {RUNS_WHERE}");
        let count = on_pool!(self, |pool| bind_runs_where!(sqlx::query_scalar(&sql), q)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }

    /// A page of one run's instances, by task id and map index.
    pub async fn query_task_instances(
        &self,
        q: &TaskInstanceQuery,
    ) -> Result<Vec<TaskInstance>, StoreError> {
        let sql = format!(
            "SELECT * FROM task_instances {TIS_WHERE}
             ORDER BY task_id, map_index LIMIT $14 OFFSET $15"
        );
        let rows = on_pool!(self, |pool| bind_tis_where!(sqlx::query_as(&sql), q)
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// How many instances match `q` (its limit and offset are ignored).
    pub async fn count_query_task_instances(
        &self,
        q: &TaskInstanceQuery,
    ) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM task_instances {TIS_WHERE}");
        let count = on_pool!(self, |pool| bind_tis_where!(sqlx::query_scalar(&sql), q)
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }

    /// The grid's cells for the given runs: instance counts per (run, task, state), so a
    /// task mapped over hundreds of items is one row per state.
    pub async fn grid_cells(&self, runs: &[i64]) -> Result<Vec<GridCell>, StoreError> {
        let runs_in = id_in_json_list(self, "run", "$1");
        let sql = format!(
            "SELECT run, task_id, state, COUNT(*) AS n, MIN(map_index) AS min_map_index
             FROM task_instances WHERE {runs_in}
             GROUP BY run, task_id, state ORDER BY run, task_id, state"
        );
        let rows = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(Json(runs))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

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

    /// Queued and running slots per pool (pools with none are absent).
    pub async fn pool_usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        const SQL: &str = "
            SELECT pool,
                   COALESCE(SUM(CASE WHEN state = $1 THEN pool_slots ELSE 0 END), 0) AS queued,
                   COALESCE(SUM(CASE WHEN state = $2 THEN pool_slots ELSE 0 END), 0) AS running
            FROM task_instances WHERE state IN ($1, $2) GROUP BY pool";
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(TaskState::Queued.as_str())
            .bind(TaskState::Running.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(pool, queued_slots, running_slots)| PoolUsage {
                pool,
                queued_slots,
                running_slots,
            })
            .collect())
    }
}

/// How many task instances are in one state (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount {
    pub state: TaskState,
    pub count: i64,
}

/// Queued task instances waiting for a worker, per queue and pool (for metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    pub pool: String,
    pub queued: i64,
}

/// The connection pool's use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbPoolStats {
    /// Connections open (idle or in use).
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// The states in which task instances are still in flight: counting them stays cheap
/// however long the history (finished ones are counted as they finish, by the workers).
pub const ACTIVE_TASK_STATES: [TaskState; 5] = [
    TaskState::Pending,
    TaskState::Scheduled,
    TaskState::Queued,
    TaskState::Running,
    TaskState::UpForRetry,
];

impl Store {
    /// The number of task instances in each of [`ACTIVE_TASK_STATES`], zeros included.
    pub async fn count_active_task_instances(&self) -> Result<Vec<StateCount>, StoreError> {
        const SQL: &str = "
            SELECT state, COUNT(*) FROM task_instances
            WHERE state IN ($1, $2, $3, $4, $5) GROUP BY state";
        let [a, b, c, d, e] = ACTIVE_TASK_STATES.map(TaskState::as_str);
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d)
            .bind(e)
            .fetch_all(pool)
            .await)?;
        ACTIVE_TASK_STATES
            .iter()
            .map(|&state| {
                let count = rows
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                Ok(StateCount { state, count })
            })
            .collect()
    }

    /// Queued task instances per (queue, pool); pairs with none are absent.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        const SQL: &str = "
            SELECT queue, pool, COUNT(*) FROM task_instances
            WHERE state = $1 GROUP BY queue, pool ORDER BY queue, pool";
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(TaskState::Queued.as_str())
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(queue, pool, queued)| QueueDepth {
                queue,
                pool,
                queued,
            })
            .collect())
    }

    /// Open, idle and maximum connections of this process's pool (no round trip).
    pub fn db_pool_stats(&self) -> DbPoolStats {
        let (open, idle, max) = match &self.backend {
            Backend::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Backend::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        DbPoolStats {
            open,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max,
        }
    }
}
