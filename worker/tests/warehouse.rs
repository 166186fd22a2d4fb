//! The `athena` and `redshift` kinds, and the stopping of given-up tries' external jobs
//! (ECS tasks too), through the real worker runtime against `moto_server` (extended by
//! `tests/moto/warehouse_ext.py`: `NS_FAIL:`, `NS_HOLD` and `NS_SLOW` markers in the
//! query text), on PostgreSQL (with `DATABASE_URL`) and SQLite.

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use chrono::Utc;
use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, Store};
use nightshift_worker::WorkerConfig;
use serde_json::json;

mod common;

use common::{
    attempts, has_line, reap, reap_and_requeue, start, system_lines, wait_for, wait_state,
    worker_config,
};
use nightshift_testkit::moto::Moto;
use nightshift_testkit::{both_backends, queued_run, t, QueuedRun};

both_backends!(
    athena_binds_parameters_and_keeps_rows,
    athena_failure_names_the_reason,
    athena_timeout_stops_the_query,
    athena_run_cancel_stops_the_query,
    athena_new_try_reattaches_to_the_query_of_a_dead_worker,
    athena_query_of_a_reaped_try_without_retries_is_stopped,
    redshift_binds_parameters_and_keeps_rows,
    redshift_batch_runs_every_statement,
    redshift_failure_names_the_error,
    redshift_timeout_cancels_the_statement,
    redshift_run_cancel_cancels_the_statement,
    redshift_new_try_reattaches_to_the_statement_of_a_dead_worker,
    ecs_task_of_a_reaped_try_without_retries_is_stopped,
);

struct Aws(Moto);

async fn moto() -> Aws {
    Aws(Moto::start_async().await)
}

impl Aws {
    fn athena(&self) -> aws_sdk_athena::Client {
        let config = aws_sdk_athena::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.0.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_athena::Client::from_conf(config)
    }

    fn redshift(&self) -> aws_sdk_redshiftdata::Client {
        let config = aws_sdk_redshiftdata::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.0.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_redshiftdata::Client::from_conf(config)
    }

    fn ecs(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.0.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// Every query the emulator was sent.
    async fn athena_queries(&self) -> Vec<String> {
        self.athena()
            .list_query_executions()
            .send()
            .await
            .expect("ListQueryExecutions")
            .query_execution_ids()
            .to_vec()
    }

    async fn athena_query(&self, id: &str) -> aws_sdk_athena::types::QueryExecution {
        self.athena()
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .expect("GetQueryExecution")
            .query_execution()
            .cloned()
            .expect("the query")
    }

    async fn statements(&self) -> Vec<String> {
        self.redshift()
            .list_statements()
            .send()
            .await
            .expect("ListStatements")
            .statements()
            .iter()
            .map(|s| s.id().to_owned())
            .collect()
    }

    async fn statement(
        &self,
        id: &str,
    ) -> aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput {
        self.redshift()
            .describe_statement()
            .id(id)
            .send()
            .await
            .expect("DescribeStatement")
    }

    /// Queues the rows the next Athena GetQueryResults answers (moto's results API).
    async fn athena_results(&self, columns: &[&str], rows: &[&[&str]]) {
        let row = |values: &[&str]| json!({"Data": values.iter().map(|v| json!({"VarCharValue": v})).collect::<Vec<_>>()});
        let mut all = vec![row(columns)];
        all.extend(rows.iter().map(|r| row(r)));
        let body = json!({
            "results": [{
                "rows": all,
                "column_info": columns.iter().map(|c| json!({"Name": c, "Type": "varchar"})).collect::<Vec<_>>(),
            }]
        });
        let answer = reqwest::Client::new()
            .post(format!(
                "{}/moto-api/static/athena/query-results",
                self.0.endpoint
            ))
            .json(&body)
            .send()
            .await
            .expect("moto results API");
        assert_eq!(answer.status(), 201);
    }
}

fn config(id: &str, moto: &Aws) -> WorkerConfig {
    WorkerConfig {
        env: moto.0.env(),
        ..worker_config(id)
    }
}

async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/d.toml", toml).await;
    let how = QueuedRun {
        run_id: "manual__warehouse",
        logical_date: t("2026-01-01T03:00:00Z"),
        conf: json!({}),
    };
    queued_run(store, &dag, how).await
}

const ATHENA: &str = r#"
[tasks.q]
type = "athena"
database = "logs"
workgroup = "primary"
output_location = "s3://results/athena/"
"#;

async fn athena_binds_parameters_and_keeps_rows(store: Store) {
    let moto = moto().await;
    moto.athena_results(&["dt", "n"], &[&["2026-01-01", "3"], &["2026-01-01", "4"]])
        .await;
    let run = seed(
        &store,
        &format!(
            "{ATHENA}sql = \"SELECT dt, n FROM events WHERE dt = ? AND n > ?\"\nparameters = [\"{{{{ ds }}}}\", 2]\n"
        ),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let done = wait_state(&store, &run, "q", TaskState::Success).await;
    worker.stop().await;

    let attempt = attempts(&store, &done).await.pop().expect("attempt");
    let id = attempt.external_id.expect("the query id on the attempt");
    assert_eq!(done.external_id, None);
    let output = done.output.clone().expect("output");
    assert_eq!(output["query_execution_id"], json!(id));
    assert_eq!(output["columns"], json!(["dt", "n"]));
    assert_eq!(
        output["rows"],
        json!([{"dt": "2026-01-01", "n": "3"}, {"dt": "2026-01-01", "n": "4"}])
    );
    assert_eq!(output["truncated"], json!(false));
    // Bound as ExecutionParameters, not spliced into the text.
    let q = moto.athena_query(&id).await;
    assert_eq!(
        q.query().unwrap_or_default(),
        "SELECT dt, n FROM events WHERE dt = ? AND n > ?"
    );
    assert_eq!(q.execution_parameters(), ["'2026-01-01'", "2"]);
    assert_eq!(
        q.query_execution_context().and_then(|c| c.database()),
        Some("logs")
    );
    assert_eq!(moto.athena_queries().await, std::slice::from_ref(&id));
    has_line(
        &store,
        &done,
        1,
        &format!("started Athena query {id} (workgroup primary, 2 parameter(s)"),
    )
    .await;
    has_line(
        &store,
        &done,
        1,
        "data scanned 2048 bytes, engine time 150 ms",
    )
    .await;
}

async fn athena_failure_names_the_reason(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &format!("{ATHENA}sql = \"SELECT x -- NS_FAIL: SYNTAX_ERROR: line 1:8: Column 'x' cannot be resolved\"\nretries = 3\n"),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    // Athena says the error is not retryable: the task fails without spending retries.
    let failed = wait_state(&store, &run, "q", TaskState::Failed).await;
    worker.stop().await;
    assert_eq!(failed.try_number, 1);
    let attempt = attempts(&store, &failed).await.pop().expect("attempt");
    let error = attempt.error.expect("error");
    assert!(
        error.contains("failed: SYNTAX_ERROR: line 1:8: Column 'x' cannot be resolved"),
        "{error}"
    );
    has_line(&store, &failed, 1, "Column 'x' cannot be resolved").await;
}

async fn athena_query_of_a_reaped_try_without_retries_is_stopped(store: Store) {
    let moto = moto().await;
    let run = seed(&store, &format!("{ATHENA}sql = \"SELECT 1 -- NS_HOLD\"\n")).await;
    let doomed = start(&store, config("w1", &moto));
    let first = wait_for(&store, &run, "q", -1, "given a query id", |ti| {
        ti.external_id.is_some()
    })
    .await;
    doomed.kill().await;
    let id = first.external_id.clone().expect("id");
    reap(&store, &first, TaskState::Failed).await;

    // The next worker (any worker) stops it.
    let worker = start(&store, config("w2", &moto));
    eventually!("the query is cancelled at the emulator", {
        moto.athena_query(&id)
            .await
            .status()
            .and_then(|s| s.state())
            == Some(&aws_sdk_athena::types::QueryExecutionState::Cancelled)
    });
    eventually!("the stop is recorded in the try's log", {
        system_lines(&store, &first, 1)
            .await
            .iter()
            .any(|l| l.contains(&format!("stopped Athena query {id}")))
    });
    worker.stop().await;
    let ti = common::instance(&store, &run, "q", -1).await;
    assert_eq!(
        (ti.state, ti.external_id.clone()),
        (TaskState::Failed, None)
    );
    has_line(&store, &ti, 1, "the try was given up (running -> failed)").await;
}

const REDSHIFT: &str = r#"
[tasks.s]
type = "redshift"
database = "dev"
cluster_identifier = "nightly"
db_user = "etl"
"#;

async fn redshift_binds_parameters_and_keeps_rows(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &format!(
            "{REDSHIFT}sql = \"SELECT * FROM addresses WHERE day = :day AND n > :n\"\nparameters = {{ day = \"{{{{ ds }}}}\", n = 5 }}\nmax_rows = 2\n"
        ),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let done = wait_state(&store, &run, "s", TaskState::Success).await;
    worker.stop().await;
    let attempt = attempts(&store, &done).await.pop().expect("attempt");
    let id = attempt.external_id.expect("statement id");
    let output = done.output.clone().expect("output");
    assert_eq!(output["statement_id"], json!(id));
    assert_eq!(output["columns"], json!(["Number", "Street", "City"]));
    assert_eq!(
        output["rows"],
        json!([
            {"Number": 10, "Street": "Alpha st", "City": "Vancouver"},
            {"Number": 50, "Street": "Beta st", "City": "Toronto"}
        ])
    );
    assert_eq!(output["truncated"], json!(true));
    let s = moto.statement(&id).await;
    assert_eq!(
        s.query_string().unwrap_or_default(),
        "SELECT * FROM addresses WHERE day = :day AND n > :n"
    );
    let params: Vec<(String, String)> = s
        .query_parameters()
        .iter()
        .map(|p| (p.name().to_owned(), p.value().to_owned()))
        .collect();
    assert_eq!(
        params,
        [
            ("day".to_owned(), "2026-01-01".to_owned()),
            ("n".to_owned(), "5".to_owned())
        ]
    );
    assert_eq!(s.cluster_identifier(), Some("nightly"));
    assert_eq!(s.db_user(), Some("etl"));
    has_line(
        &store,
        &done,
        1,
        &format!("started Redshift statement {id} (ExecuteStatement"),
    )
    .await;
}

async fn redshift_batch_runs_every_statement(store: Store) {
    let moto = moto().await;
    let toml = r#"
[tasks.s]
type = "redshift"
database = "dev"
workgroup_name = "nightly-wg"
sqls = ["DELETE FROM marts.kpi WHERE day = '{{ ds }}'", "INSERT INTO marts.kpi SELECT 1"]
"#;
    let run = seed(&store, toml).await;
    let worker = start(&store, config("w1", &moto));
    let done = wait_state(&store, &run, "s", TaskState::Success).await;
    worker.stop().await;
    let id = attempts(&store, &done)
        .await
        .pop()
        .and_then(|a| a.external_id)
        .expect("id");
    let s = moto.statement(&id).await;
    assert_eq!(s.workgroup_name(), Some("nightly-wg"));
    let subs: Vec<&str> = s
        .sub_statements()
        .iter()
        .map(|sub| sub.query_string().unwrap_or_default())
        .collect();
    assert_eq!(
        subs,
        [
            "DELETE FROM marts.kpi WHERE day = '2026-01-01'",
            "INSERT INTO marts.kpi SELECT 1"
        ]
    );
    assert_eq!(
        done.output.clone().expect("output")["rows"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

async fn redshift_failure_names_the_error(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &format!("{REDSHIFT}sql = \"SELECT * FROM t -- NS_FAIL: ERROR: relation \\\"t\\\" does not exist\"\n"),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let failed = wait_state(&store, &run, "s", TaskState::Failed).await;
    worker.stop().await;
    let error = attempts(&store, &failed)
        .await
        .pop()
        .and_then(|a| a.error)
        .expect("error");
    assert!(
        error.contains("failed: ERROR: relation \"t\" does not exist"),
        "{error}"
    );
    has_line(&store, &failed, 1, "relation \"t\" does not exist").await;
}

/// What the timeout, cancel and re-attach tests ask of each warehouse kind alike.
#[derive(Debug, Clone, Copy)]
enum Warehouse {
    Athena,
    Redshift,
}

impl Warehouse {
    /// The DAG of one task of this kind running `sql`, with `extra` fields.
    fn dag(self, sql: &str, extra: &str) -> String {
        let base = match self {
            Warehouse::Athena => ATHENA,
            Warehouse::Redshift => REDSHIFT,
        };
        format!("{base}sql = \"{sql}\"\n{extra}")
    }

    fn task(self) -> &'static str {
        match self {
            Warehouse::Athena => "q",
            Warehouse::Redshift => "s",
        }
    }

    /// The job's name in the try's log.
    fn job(self, id: &str) -> String {
        match self {
            Warehouse::Athena => format!("Athena query {id}"),
            Warehouse::Redshift => format!("Redshift statement {id}"),
        }
    }

    /// What the try logs as it stops its job after an interrupt.
    fn stopping(self, id: &str) -> String {
        match self {
            Warehouse::Athena => format!("stopping {}", self.job(id)),
            Warehouse::Redshift => format!("cancelling {}", self.job(id)),
        }
    }

    /// What the given-up job's stop logs (the `external_stops` queue's kind and line).
    fn stopped(self, id: &str) -> (&'static str, String) {
        match self {
            Warehouse::Athena => (
                "athena",
                format!("stopped {} (StopQueryExecution)", self.job(id)),
            ),
            Warehouse::Redshift => (
                "redshift",
                format!("stopped {} (CancelStatement)", self.job(id)),
            ),
        }
    }

    /// Every job the emulator was sent.
    async fn submissions(self, moto: &Aws) -> Vec<String> {
        match self {
            Warehouse::Athena => moto.athena_queries().await,
            Warehouse::Redshift => moto.statements().await,
        }
    }

    /// Whether the emulator says the job was stopped (CANCELLED, ABORTED).
    async fn was_stopped(self, moto: &Aws, id: &str) -> bool {
        match self {
            Warehouse::Athena => {
                moto.athena_query(id).await.status().and_then(|s| s.state())
                    == Some(&aws_sdk_athena::types::QueryExecutionState::Cancelled)
            }
            Warehouse::Redshift => {
                moto.statement(id).await.status()
                    == Some(&aws_sdk_redshiftdata::types::StatusString::Aborted)
            }
        }
    }
}

async fn athena_timeout_stops_the_query(store: Store) {
    timeout_stops_the_job(store, Warehouse::Athena).await;
}

async fn redshift_timeout_cancels_the_statement(store: Store) {
    timeout_stops_the_job(store, Warehouse::Redshift).await;
}

async fn athena_run_cancel_stops_the_query(store: Store) {
    run_cancel_stops_the_job(store, Warehouse::Athena).await;
}

async fn redshift_run_cancel_cancels_the_statement(store: Store) {
    run_cancel_stops_the_job(store, Warehouse::Redshift).await;
}

async fn athena_new_try_reattaches_to_the_query_of_a_dead_worker(store: Store) {
    new_try_reattaches_to_the_job_of_a_dead_worker(store, Warehouse::Athena).await;
}

async fn redshift_new_try_reattaches_to_the_statement_of_a_dead_worker(store: Store) {
    new_try_reattaches_to_the_job_of_a_dead_worker(store, Warehouse::Redshift).await;
}

/// A try past its timeout stops its job through the cancel API and fails.
async fn timeout_stops_the_job(store: Store, wh: Warehouse) {
    let moto = moto().await;
    let run = seed(&store, &wh.dag("SELECT 1 -- NS_HOLD", "timeout = \"2s\"\n")).await;
    let worker = start(&store, config("w1", &moto));
    let failed = wait_state(&store, &run, wh.task(), TaskState::Failed).await;
    worker.stop().await;
    let attempt = attempts(&store, &failed).await.pop().expect("attempt");
    assert_eq!(attempt.error.as_deref(), Some("timed out after 2s"));
    let id = attempt.external_id.expect("the job's id");
    assert!(wh.was_stopped(&moto, &id).await, "{wh:?} {id} still runs");
    has_line(
        &store,
        &failed,
        1,
        &format!("timed out after 2s (try 1): {}", wh.stopping(&id)),
    )
    .await;
}

/// The UI's and the API's cancel of the run: the running try loses its lease at once,
/// and its job is stopped through the `external_stops` queue.
async fn run_cancel_stops_the_job(store: Store, wh: Warehouse) {
    let moto = moto().await;
    let run = seed(&store, &wh.dag("SELECT 1 -- NS_HOLD", "")).await;
    let worker = start(&store, config("w1", &moto));
    let running = wait_for(&store, &run, wh.task(), -1, "given a job id", |ti| {
        ti.external_id.is_some()
    })
    .await;
    let id = running.external_id.clone().expect("id");
    let run_now = nightshift_testkit::dag_run(&store, run.id).await;
    store
        .cancel_run(&run_now, Utc::now())
        .await
        .expect("cancel");
    eventually!("the job is stopped at the emulator", {
        wh.was_stopped(&moto, &id).await
    });
    eventually!("the stop is settled", {
        store
            .external_stops(running.id)
            .await
            .expect("stops")
            .iter()
            .all(|s| s.done_at.is_some())
    });
    worker.stop().await;
    let stops = store.external_stops(running.id).await.expect("stops");
    assert_eq!(stops.len(), 1, "{stops:?}");
    let (kind, line) = wh.stopped(&id);
    assert_eq!(
        (stops[0].kind.as_str(), stops[0].external_id.as_str()),
        (kind, id.as_str())
    );
    let ti = common::instance(&store, &run, wh.task(), -1).await;
    assert_eq!(
        (ti.state, ti.external_id.clone()),
        (TaskState::Failed, None)
    );
    has_line(&store, &ti, 1, &line).await;
}

/// A worker dies while its job runs: the next try re-attaches to that job (one
/// submission at the emulator) and nothing is queued to stop.
async fn new_try_reattaches_to_the_job_of_a_dead_worker(store: Store, wh: Warehouse) {
    let moto = moto().await;
    moto.athena_results(&["n"], &[&["1"]]).await;
    let run = seed(&store, &wh.dag("SELECT 1 -- NS_SLOW", "retries = 2\n")).await;
    let doomed = start(&store, config("w1", &moto));
    let first = wait_for(&store, &run, wh.task(), -1, "given a job id", |ti| {
        ti.external_id.is_some()
    })
    .await;
    doomed.kill().await;
    let id = first.external_id.clone().expect("id");
    reap_and_requeue(&store, &first).await;

    let worker = start(&store, config("w2", &moto));
    let done = wait_state(&store, &run, wh.task(), TaskState::Success).await;
    worker.stop().await;
    assert_eq!(done.try_number, 2);
    assert_eq!(
        wh.submissions(&moto).await,
        std::slice::from_ref(&id),
        "one submission"
    );
    let tries = attempts(&store, &done).await;
    assert_eq!(tries[1].external_id.as_deref(), Some(id.as_str()));
    if let Warehouse::Athena = wh {
        assert_eq!(
            done.output.clone().expect("output")["rows"],
            json!([{"n": "1"}])
        );
    }
    has_line(
        &store,
        &done,
        2,
        &format!("re-attaching to {} (stored by an earlier try", wh.job(&id)),
    )
    .await;
    assert!(store
        .external_stops(done.id)
        .await
        .expect("stops")
        .is_empty());
}

async fn ecs_task_of_a_reaped_try_without_retries_is_stopped(store: Store) {
    let moto = moto().await;
    let toml = format!(
        r#"
[tasks.extract]
type = "ecs"
cluster = "nightly"
task_definition = "nightly-extract"
launch_type = "FARGATE"
subnets = ["{}"]
security_groups = ["{}"]
container = "extract"
environment = {{ NS_FAKE_HOLD = "1" }}
"#,
        moto.0.subnet, moto.0.security_group
    );
    let run = seed(&store, &toml).await;
    let doomed = start(&store, config("w1", &moto));
    let first = wait_for(&store, &run, "extract", -1, "given an ARN", |ti| {
        ti.external_id.is_some()
    })
    .await;
    doomed.kill().await;
    let arn = first.external_id.clone().expect("ARN");
    reap(&store, &first, TaskState::Failed).await;

    let worker = start(&store, config("w2", &moto));
    eventually!("the ECS task is stopped at the emulator", {
        ecs_task(&moto, &arn).await.last_status() == Some("STOPPED")
    });
    eventually!("the stop is recorded in the try's log", {
        system_lines(&store, &first, 1)
            .await
            .iter()
            .any(|l| l.contains(&format!("stopped ECS task {arn}")))
    });
    worker.stop().await;
    let task = ecs_task(&moto, &arn).await;
    assert!(
        task.stopped_reason()
            .is_some_and(|r| r.starts_with("nightshift: the try was given up (running -> failed)")),
        "{:?}",
        task.stopped_reason()
    );
    // Its startedBy carries this installation's id.
    let installation = store.installation_id().await.expect("installation id");
    assert_eq!(installation.len(), 32, "{installation}");
}

async fn ecs_task(moto: &Aws, arn: &str) -> aws_sdk_ecs::types::Task {
    moto.ecs()
        .describe_tasks()
        .cluster("nightly")
        .tasks(arn)
        .send()
        .await
        .expect("DescribeTasks")
        .tasks()
        .first()
        .cloned()
        .expect("the task")
}
