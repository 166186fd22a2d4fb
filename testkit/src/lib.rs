//! Shared test fixtures for every crate's tests (a dev-dependency only, never a normal
//! one): the macro that runs one test body on both backends, a fresh SQLite store, and
//! `seed_dag` (a DAG parsed from TOML and stored as the scheduler's loader stores it),
//! `queued_run` (a running run of it whose instances wait for a worker), and
//! `expire_and_reap` (a try reaped as if its worker had died), and `serve` (a local HTTP
//! peer), with `moto` (the ECS emulator), `bqemulator` (the BigQuery emulator) and [`spawn`] (a worker or scheduler running
//! until the test stops it).

pub mod bqemulator;
pub mod moto;
mod service;

pub use service::{spawn, Service};

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_core::plan::plan_run;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{
    new_task_instances, ClaimRequest, DagRun, DagUpsert, NewRun, Reap, RunType, Store, StoreError,
    TaskInstance, TryOutcome,
};
use serde_json::Value;

/// For each `async fn name(store: Store)` in the calling module, generates `pg::name`
/// (a fresh PostgreSQL database from `#[sqlx::test]`, needs `DATABASE_URL`) and
/// `sqlite::name` (a fresh SQLite file in a temporary directory), both migrated.
///
/// `both_backends!(a, b)` runs the SQLite bodies on four worker threads;
/// `both_backends!(worker_threads = 2; a, b)` chooses another number. The calling crate
/// needs `sqlx` and `tokio` (with `macros`) among its dependencies.
#[macro_export]
macro_rules! both_backends {
    (worker_threads = $threads:literal; $($name:ident),+ $(,)?) => {
        mod pg {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    super::$name($crate::pg_store(pool).await).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                async fn $name() {
                    let temp = $crate::sqlite_store().await;
                    super::$name(temp.store.clone()).await;
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        $crate::both_backends!(worker_threads = 4; $($name),+);
    };
}

/// [`both_backends!`] for tests that also hand the database's URL to another process
/// (the real binary): each `async fn name(store: Store, url: String)` runs on a fresh
/// PostgreSQL database and on a fresh SQLite file.
#[macro_export]
macro_rules! both_backends_with_url {
    ($($name:ident),+ $(,)?) => {
        mod pg {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    let url = $crate::pg_url(&pool);
                    super::$name($crate::pg_store(pool).await, url).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let temp = $crate::sqlite_store().await;
                    super::$name(temp.store.clone(), temp.url.clone()).await;
                }
            )+
        }
    };
}

/// The URL of the database `#[sqlx::test]` created, for another process to open.
pub fn pg_url(pool: &sqlx::PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().expect("a test database")
    )
}

/// A migrated store on the fresh PostgreSQL database that `#[sqlx::test]` created.
pub async fn pg_store(pool: sqlx::PgPool) -> Store {
    let store = Store::from_pg_pool(pool);
    store.migrate().await.expect("migrate");
    store
}

/// A migrated store on a new SQLite file; the file lives as long as this value.
pub struct TempStore {
    pub store: Store,
    /// The SQLite file, for tests that open a second store (or the binary) on it.
    pub path: PathBuf,
    /// The `sqlite://` URL of `path`.
    pub url: String,
    /// Removes the file when dropped.
    pub dir: tempfile::TempDir,
}

/// A migrated store on a new SQLite file in a temporary directory.
pub async fn sqlite_store() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nightshift.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    store.migrate().await.expect("migrate");
    TempStore {
        store,
        path,
        url,
        dir,
    }
}

/// A timestamp from RFC 3339 text.
pub fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// Parses `toml` as the DAG file `file` and stores it, unpaused, as of now.
pub async fn seed_dag(store: &Store, file: &str, toml: &str) -> Dag {
    let dag = parse_dag(file, toml).unwrap_or_else(|e| panic!("{e}"));
    store_dag(store, &dag, StoreDag::default()).await;
    dag
}

/// How [`store_dag`] stores a DAG: paused or not, and when.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreDag {
    pub paused: bool,
    /// `None` is now.
    pub now: Option<DateTime<Utc>>,
}

/// Stores a parsed DAG as the scheduler's loader stores it (definition, hash, schedule,
/// timezone, description, owner, tags).
pub async fn store_dag(store: &Store, dag: &Dag, how: StoreDag) {
    let definition = serde_json::to_value(dag).expect("DAG as JSON");
    store
        .upsert_dag(&DagUpsert {
            dag_id: dag.id.clone(),
            file_path: dag.file.clone(),
            definition,
            source_hash: dag.source_hash.clone(),
            schedule: dag.schedule.as_ref().map(|s| s.expression().to_owned()),
            timezone: dag.timezone.name().to_owned(),
            description: dag.description.clone(),
            owner: dag.owner.clone(),
            tags: dag.tags.clone(),
            is_paused: how.paused,
            now: how.now.unwrap_or_else(Utc::now),
        })
        .await
        .expect("upsert DAG");
}

/// The run [`queued_run`] creates: a manual run over one day from `logical_date`.
#[derive(Debug, Clone)]
pub struct QueuedRun<'a> {
    pub run_id: &'a str,
    pub logical_date: DateTime<Utc>,
    /// The trigger's `conf`.
    pub conf: Value,
}

/// Creates a running manual run of `dag` with every instance queued, as a worker finds
/// it once the scheduler has started it.
pub async fn queued_run(store: &Store, dag: &Dag, run: QueuedRun<'_>) -> DagRun {
    let mut tasks = new_task_instances(&plan_run(dag));
    for task in &mut tasks {
        task.state = TaskState::Queued;
    }
    let new_run = NewRun {
        dag_id: dag.id.clone(),
        run_id: run.run_id.to_owned(),
        run_type: RunType::Manual,
        logical_date: run.logical_date,
        data_interval_start: run.logical_date,
        data_interval_end: run.logical_date + chrono::TimeDelta::days(1),
        state: RunState::Running,
        conf: run.conf,
        queued_at: Utc::now(),
        definition_hash: dag.source_hash.clone(),
    };
    let (run, _) = store
        .create_run_with_tasks(&new_run, &tasks)
        .await
        .expect("create run")
        .expect("a new run");
    run
}

/// The task instance `id`, which must exist.
pub async fn instance(store: &Store, id: i64) -> TaskInstance {
    found(store.get_task_instance(id).await, "task instance", id)
}

/// Test setup: puts task instance `id` in `state` directly, skipping the state machine
/// and the events that would lead there (a fixture that needs an instance `queued` or
/// `success` without running it). Code under test never writes a state this way: every
/// transition it makes is a `Transition::on` decision.
pub async fn force_state(store: &Store, id: i64, state: TaskState) -> TaskInstance {
    store
        .force_state_for_tests(id, state)
        .await
        .unwrap_or_else(|err| panic!("force task instance {id} into {state}: {err}"))
}

/// The run `id`, which must exist.
pub async fn dag_run(store: &Store, id: i64) -> DagRun {
    found(store.get_run(id).await, "run", id)
}

/// What a read by id found, which must be there.
fn found<T>(read: Result<Option<T>, StoreError>, what: &str, id: i64) -> T {
    read.unwrap_or_else(|e| panic!("reading {what} {id}: {e}"))
        .unwrap_or_else(|| panic!("no {what} {id}"))
}

/// A try's success at `now`: exit code 0, no output, no callback, nothing left to log;
/// override the rest with `TryOutcome { output: Some(json), ..success(now) }`.
pub fn success(now: DateTime<Utc>) -> TryOutcome {
    TryOutcome {
        new_state: TaskState::Success,
        error: None,
        exit_code: Some(0),
        output: None,
        next_retry_at: None,
        now,
        callback: None,
        progress: Default::default(),
    }
}

/// A claim by `worker` (host `test`, queue `default`) of one try, leased for a minute;
/// override the rest with `ClaimRequest { limit: 10, ..claim_request("w1", now) }`.
pub fn claim_request(worker: &str, now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_owned(),
        hostname: "test".to_owned(),
        queues: vec!["default".to_owned()],
        limit: 1,
        lease: Duration::from_secs(60),
        now,
    }
}

/// Makes the running try `ti_id` look abandoned: its lease ran out an hour ago. The live
/// worker may heartbeat in between, so this repeats until the reap wins.
pub async fn expire_and_reap(store: &Store, reap: &Reap) {
    for _ in 0..50 {
        expire_lease(store, reap.ti_id).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        match store.reap(reap).await {
            Ok(_) => return,
            Err(error) if error.is_stale() => continue,
            Err(error) => panic!("reap: {error}"),
        }
    }
    panic!("the worker kept its lease through 50 reaps");
}

/// Moves the end of the lease of the running try `ti_id` an hour into the past, as a
/// worker that died long ago would leave it. Only the try's `RunningTry` writes to a
/// running try; a test playing a dead worker holds none, so it writes the row itself.
async fn expire_lease(store: &Store, ti_id: i64) {
    const SQL: &str = "UPDATE task_instances SET lease_expires_at = $2 WHERE id = $1";
    let past = Utc::now() - chrono::TimeDelta::hours(1);
    let done = match (store.pg_pool(), store.sqlite_pool()) {
        (Some(pool), _) => sqlx::query(SQL)
            .bind(ti_id)
            .bind(past)
            .execute(pool)
            .await
            .map(|_| ()),
        (None, Some(pool)) => sqlx::query(SQL)
            .bind(ti_id)
            .bind(past)
            .execute(pool)
            .await
            .map(|_| ()),
        (None, None) => panic!("a store without a pool"),
    };
    done.expect("expire the lease");
}

/// Serves `app` on a free local port for the rest of the test; returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
