//! The `bigquery` kind through the real worker runtime against `bqemulator` (wrapped by
//! `tests/bqemulator/bqemu_ext.py`: submissions and cancels recorded, `NS_HOLD` and
//! `NS_SLOW` markers in the query text), on PostgreSQL (with `DATABASE_URL`) and SQLite.

use nightshift_core::connection::{Connection, Connections};
use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, Store};
use nightshift_worker::kind::bigquery::parse_external_id;
use nightshift_worker::WorkerConfig;
use serde_json::{json, Value};

mod common;

use common::{attempts, has_line, reap_and_requeue, start, wait_for, wait_state, worker_config};
use nightshift_testkit::bqemulator::BqEmulator;
use nightshift_testkit::{both_backends, queued_run, t, QueuedRun};

both_backends!(
    bigquery_binds_parameters_and_keeps_rows,
    bigquery_failure_logs_the_error,
    bigquery_timeout_cancels_the_job,
    bigquery_new_try_reattaches_to_the_job_of_a_dead_worker,
    bigquery_dry_run_logs_the_bytes,
);

struct Bq(BqEmulator);

async fn emulator() -> Bq {
    Bq(BqEmulator::start_async().await)
}

impl Bq {
    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.0.endpoint))
            .await
            .expect("emulator answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Every jobs.insert body the emulator was sent.
    async fn submissions(&self) -> Vec<Value> {
        self.get("/nsext/submissions")
            .await
            .as_array()
            .cloned()
            .expect("a list")
    }

    /// Every job id jobs.cancel was called for.
    async fn cancels(&self) -> Vec<String> {
        serde_json::from_value(self.get("/nsext/cancels").await).expect("ids")
    }

    async fn job(&self, id: &str) -> Value {
        self.get(&format!(
            "/bigquery/v2/projects/{}/jobs/{id}",
            nightshift_testkit::bqemulator::PROJECT
        ))
        .await
    }
}

fn config(id: &str, bq: &Bq) -> WorkerConfig {
    let mut connections = Connections::new();
    connections.insert(Connection::parse("bq", &bq.0.connection_uri(), None).expect("connection"));
    let env = [
        ("NIGHTSHIFT_BIGQUERY_POLL_INTERVAL", "100ms"),
        ("NIGHTSHIFT_BIGQUERY_POLL_MAX", "300ms"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    WorkerConfig {
        env,
        connections,
        ..worker_config(id)
    }
}

async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/d.toml", toml).await;
    let how = QueuedRun {
        run_id: "manual__bigquery",
        logical_date: t("2026-01-01T03:00:00Z"),
        conf: json!({}),
    };
    queued_run(store, &dag, how).await
}

/// The job id in a stored external id (`bq:US.JOB`).
fn job_of(external_id: &str) -> String {
    let (connection, location, job) = parse_external_id(external_id).expect("a BigQuery id");
    assert_eq!((connection, location), ("bq", Some("US")), "{external_id}");
    job.to_owned()
}

const BIGQUERY: &str = r#"
[tasks.q]
type = "bigquery"
connection = "bq"
"#;

async fn bigquery_binds_parameters_and_keeps_rows(store: Store) {
    let bq = emulator().await;
    let sql = "SELECT @day AS day, x, x * @factor AS scaled FROM UNNEST([1, 2, 3]) AS x WHERE x > @n ORDER BY x";
    let run = seed(
        &store,
        &format!(
            "{BIGQUERY}sql = \"{sql}\"\nparameters = {{ day = \"{{{{ ds }}}}\", n = 1, factor = 1.5 }}\nlabels = {{ team = \"dmp\", pipeline = \"nightly\" }}\nmax_rows = 1\n"
        ),
    )
    .await;
    let worker = start(&store, config("w1", &bq));
    let done = wait_state(&store, &run, "q", TaskState::Success).await;
    worker.stop().await;

    let attempt = attempts(&store, &done).await.pop().expect("attempt");
    let id = job_of(&attempt.external_id.expect("the job id on the attempt"));
    assert_eq!(done.external_id, None);
    let output = done.output.clone().expect("output");
    assert_eq!(output["job_id"], json!(id));
    assert_eq!(output["columns"], json!(["day", "x", "scaled"]));
    assert_eq!(
        output["rows"],
        json!([{"day": "2026-01-01", "x": 2, "scaled": 3.0}])
    );
    assert_eq!(output["truncated"], json!(true), "2 rows, 1 kept");
    assert_eq!(output["statement_type"], json!("SELECT"));

    // One submission, with the parameters bound (not spliced) and the labels.
    let submissions = bq.submissions().await;
    assert_eq!(submissions.len(), 1, "{submissions:#?}");
    let sent = &submissions[0];
    assert_eq!(sent["jobReference"]["jobId"], json!(id));
    assert_eq!(sent["jobReference"]["location"], json!("US"));
    assert_eq!(sent["configuration"]["query"]["query"], json!(sql));
    assert_eq!(
        sent["configuration"]["query"]["queryParameters"],
        json!([
            {"name": "day", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "2026-01-01"}},
            {"name": "factor", "parameterType": {"type": "FLOAT64"}, "parameterValue": {"value": "1.5"}},
            {"name": "n", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "1"}},
        ])
    );
    assert_eq!(
        sent["configuration"]["labels"],
        json!({"team": "dmp", "pipeline": "nightly"})
    );
    assert_eq!(bq.job(&id).await["status"]["state"], json!("DONE"));
    has_line(
        &store,
        &done,
        1,
        &format!("started BigQuery job {id} (project p1, location US, 3 parameter(s))"),
    )
    .await;
    has_line(
        &store,
        &done,
        1,
        &format!("BigQuery job {id}: 0 bytes processed"),
    )
    .await;
}

async fn bigquery_failure_logs_the_error(store: Store) {
    let bq = emulator().await;
    let run = seed(
        &store,
        &format!("{BIGQUERY}sql = \"SELECT nope FROM nowhere\"\nretries = 3\n"),
    )
    .await;
    let worker = start(&store, config("w1", &bq));
    // notFound is not retryable: the task fails without spending its retries.
    let failed = wait_state(&store, &run, "q", TaskState::Failed).await;
    worker.stop().await;
    assert_eq!(failed.try_number, 1);
    let attempt = attempts(&store, &failed).await.pop().expect("attempt");
    let id = job_of(attempt.external_id.as_deref().expect("job id"));
    let error = attempt.error.expect("error");
    assert_eq!(
        error,
        format!("BigQuery job {id} failed: Not found: Table nowhere was not found in location US [notFound]")
    );
    has_line(
        &store,
        &failed,
        1,
        "BigQuery error [notFound]: Not found: Table nowhere was not found in location US",
    )
    .await;
}

async fn bigquery_timeout_cancels_the_job(store: Store) {
    let bq = emulator().await;
    let run = seed(
        &store,
        &format!("{BIGQUERY}sql = \"SELECT 1 -- NS_HOLD\"\ntimeout = \"2s\"\n"),
    )
    .await;
    let worker = start(&store, config("w1", &bq));
    let failed = wait_state(&store, &run, "q", TaskState::Failed).await;
    worker.stop().await;
    let attempt = attempts(&store, &failed).await.pop().expect("attempt");
    assert_eq!(attempt.error.as_deref(), Some("timed out after 2s"));
    let id = job_of(attempt.external_id.as_deref().expect("job id"));
    assert_eq!(bq.cancels().await, std::slice::from_ref(&id));
    assert_eq!(
        bq.job(&id).await["status"]["errorResult"]["reason"],
        json!("stopped")
    );
    has_line(
        &store,
        &failed,
        1,
        &format!("timed out after 2s (try 1): cancelling BigQuery job {id}"),
    )
    .await;
    has_line(
        &store,
        &failed,
        1,
        &format!("BigQuery job {id}: DONE (cancelled)"),
    )
    .await;
}

async fn bigquery_new_try_reattaches_to_the_job_of_a_dead_worker(store: Store) {
    let bq = emulator().await;
    let run = seed(
        &store,
        &format!("{BIGQUERY}sql = \"SELECT 7 AS n -- NS_SLOW\"\nretries = 2\n"),
    )
    .await;
    let doomed = start(&store, config("w1", &bq));
    let first = wait_for(&store, &run, "q", -1, "given a job id", |ti| {
        ti.external_id.is_some()
    })
    .await;
    // Killed right after the submission reached BigQuery.
    eventually!("the job is submitted", bq.submissions().await.len() == 1);
    doomed.kill().await;
    let stored = first.external_id.clone().expect("id");
    let id = job_of(&stored);
    reap_and_requeue(&store, &first).await;

    let worker = start(&store, config("w2", &bq));
    let done = wait_state(&store, &run, "q", TaskState::Success).await;
    worker.stop().await;
    assert_eq!(done.try_number, 2);
    let submissions = bq.submissions().await;
    assert_eq!(submissions.len(), 1, "one submission: {submissions:#?}");
    assert_eq!(submissions[0]["jobReference"]["jobId"], json!(id));
    let tries = attempts(&store, &done).await;
    assert_eq!(tries[1].external_id.as_deref(), Some(stored.as_str()));
    assert_eq!(
        done.output.clone().expect("output")["rows"],
        json!([{"n": 7}])
    );
    has_line(
        &store,
        &done,
        2,
        &format!("re-attaching to BigQuery job {id} (stored by an earlier try"),
    )
    .await;
    assert!(bq.cancels().await.is_empty());
    // Nothing was queued to stop: the retry owns the job.
    assert!(store
        .external_stops(done.id)
        .await
        .expect("stops")
        .is_empty());
}

async fn bigquery_dry_run_logs_the_bytes(store: Store) {
    let bq = emulator().await;
    let run = seed(
        &store,
        &format!(
            "{BIGQUERY}sql = \"SELECT @n AS n\"\nparameters = {{ n = 5 }}\ndry_run = true\nmaximum_bytes_billed = 1000000\n"
        ),
    )
    .await;
    let worker = start(&store, config("w1", &bq));
    let done = wait_state(&store, &run, "q", TaskState::Success).await;
    worker.stop().await;
    let output = done.output.clone().expect("output");
    assert_eq!(
        output,
        json!({"dry_run": true, "total_bytes_processed": 0, "columns": ["n"]})
    );
    let submissions = bq.submissions().await;
    assert_eq!(submissions.len(), 1, "{submissions:#?}");
    assert_eq!(submissions[0]["configuration"]["dryRun"], json!(true));
    assert_eq!(
        submissions[0]["configuration"]["query"]["maximumBytesBilled"],
        json!("1000000")
    );
    // A dry run creates no job: no id is kept.
    let attempt = attempts(&store, &done).await.pop().expect("attempt");
    assert_eq!(attempt.external_id, None);
    has_line(
        &store,
        &done,
        1,
        "BigQuery dry run: the query is valid and would process 0 bytes",
    )
    .await;
}
