//! S3 arrival and connections and secrets from AWS, against `moto_server`, with a real
//! scheduler and worker in process on both store backends: a sensor in `s3` mode that
//! becomes true when the test uploads the objects and a `for_each` over the keys it
//! matched; connections kept in SSM Parameter Store (a `SecureString` URI) and Secrets
//! Manager (an RDS-style JSON secret) running `sql` tasks on the local PostgreSQL, with
//! `secret()` values in templates, and none of those secrets in any log line, rendered
//! field, output or error; and the errors for a missing, malformed or refused one. The
//! real binary's `nightshift connections test NAME` reads a connection from SSM.

mod common;
mod inprocess;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use nightshift_core::secret_store::ConnectionsBackend;
use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, Store, TaskInstance};
use nightshift_testkit::moto::Moto;
use nightshift_testkit::Service;
use nightshift_worker::WorkerConfig;

use inprocess::{all_finished, queued_manual_run, quick_worker, start_scheduler, wait_until};

/// How long a test waits for a run.
const LIMIT: Duration = Duration::from_secs(60);
use serde_json::json;

nightshift_testkit::both_backends!(
    an_s3_sensor_waits_for_the_upload_and_for_each_fans_out_over_its_keys,
    a_connection_in_ssm_runs_sql_and_its_secrets_never_show,
    an_rds_secret_in_secrets_manager_runs_sql_and_its_secrets_never_show,
    a_missing_or_malformed_connection_fails_naming_it_and_where,
);

/// The password of the connection kept in SSM (the local PostgreSQL trusts any).
const SSM_PASSWORD: &str = "ssm-pw-7f3e9c41";
/// The password of the RDS-style secret in Secrets Manager: characters a URI must encode.
const SM_PASSWORD: &str = "sm-pw/8#c@d:e%21";
/// A single value read with `secret("ssm:/dmp/slack_webhook")`.
const WEBHOOK: &str = "https://hooks.example.invalid/T0-secret-b7e2";
/// A single value read with `secret("secretsmanager:dmp/api_token")`.
const API_TOKEN: &str = "tok-5d1c9a7e33";

/// Puts values into the emulator: `param NAME VALUE` (a SecureString), `secret NAME
/// VALUE`, `bucket NAME`, `upload BUCKET KEY BODY`.
const PUT: &str = r#"
import sys, boto3
s = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
ep, action, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if action == "param":
    s.client("ssm", endpoint_url=ep).put_parameter(Name=args[0], Value=args[1], Type="SecureString", Overwrite=True)
elif action == "secret":
    s.client("secretsmanager", endpoint_url=ep).create_secret(Name=args[0], SecretString=args[1])
elif action == "bucket":
    s.client("s3", endpoint_url=ep).create_bucket(Bucket=args[0])
elif action == "upload":
    s.client("s3", endpoint_url=ep).put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
"#;

fn put(moto: &Moto, args: &[&str]) {
    let mut all = vec!["-c", PUT, moto.endpoint.as_str()];
    all.extend_from_slice(args);
    moto.python(&all);
}

fn start_worker(store: &Store, env: BTreeMap<String, String>, backend: Option<&str>) -> Service {
    let config = WorkerConfig {
        lease: Duration::from_secs(5),
        heartbeat_interval: Duration::from_millis(500),
        env,
        connections_backend: backend
            .map(|b| ConnectionsBackend::parse(b).unwrap_or_else(|e| panic!("{e}"))),
        ..quick_worker("w1", "test-host")
    };
    inprocess::start_worker(store, config)
}

/// Stores `toml` as DAG `aws` and creates a queued manual run of it.
async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/aws.toml", toml).await;
    queued_manual_run(store, &dag, "manual__aws").await
}

fn find<'a>(instances: &'a [TaskInstance], task_id: &str, map_index: i32) -> &'a TaskInstance {
    instances
        .iter()
        .find(|ti| ti.task_id == task_id && ti.map_index == map_index)
        .unwrap_or_else(|| panic!("no instance {task_id}[{map_index}]: {instances:#?}"))
}

/// Everything the store keeps of the run that a person may see: each instance (its
/// rendered fields, output and error), each try, and every log line.
async fn everything_shown(store: &Store, run: &DagRun) -> String {
    let mut text = String::new();
    for ti in store.list_task_instances(run.id).await.expect("instances") {
        text.push_str(&format!("{ti:?}\n"));
        for attempt in store.list_attempts(ti.id).await.expect("attempts") {
            text.push_str(&format!("{attempt:?}\n"));
            let lines = store
                .read_logs(ti.id, attempt.try_number, 0, 100_000)
                .await
                .expect("logs");
            for line in lines {
                text.push_str(&format!("{}\n", line.line));
            }
        }
    }
    text
}

fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} is shown:\n{text}");
    }
}

async fn an_s3_sensor_waits_for_the_upload_and_for_each_fans_out_over_its_keys(store: Store) {
    let moto = Moto::start_async().await;
    put(&moto, &["bucket", "landing"]);
    put(&moto, &["upload", "landing", "other/ignored.json", "{}"]);
    let run = seed(
        &store,
        r#"
[tasks.wait_logs]
type = "sensor"
mode = "s3"
bucket = "landing"
prefix = "logs/{{ ds }}/"
min_objects = 2
min_size = 2
poke_interval = "300ms"
timeout = "2m"

[tasks.wait_marker]
type = "sensor"
mode = "s3"
bucket = "landing"
key = "logs/{{ ds }}/_SUCCESS"
poke_interval = "300ms"

[tasks.load]
type = "command"
depends_on = ["wait_marker"]
for_each = { from = "wait_logs" }
command = ["echo", "loading {{ item }}"]
"#,
    )
    .await;
    let ds = Utc::now().format("%Y-%m-%d").to_string();
    let _scheduler = start_scheduler(&store);
    let _worker = start_worker(&store, moto.env(), None);

    // Both sensors poke, find nothing yet and wait without a slot.
    wait_until(&store, &run, "both sensors to wait", LIMIT, |tis| {
        ["wait_logs", "wait_marker"]
            .iter()
            .all(|t| find(tis, t, -1).state == TaskState::UpForReschedule)
    })
    .await;
    // One object is too small to count; one is not enough.
    put(
        &moto,
        &[
            "upload",
            "landing",
            &format!("logs/{ds}/a.json"),
            "{\"n\": 1}",
        ],
    );
    put(
        &moto,
        &["upload", "landing", &format!("logs/{ds}/empty.json"), ""],
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let tis = store.list_task_instances(run.id).await.expect("instances");
    assert!(!find(&tis, "wait_logs", -1).state.is_finished(), "{tis:#?}");
    put(
        &moto,
        &[
            "upload",
            "landing",
            &format!("logs/{ds}/b.json"),
            "{\"n\": 2}",
        ],
    );
    put(
        &moto,
        &["upload", "landing", &format!("logs/{ds}/_SUCCESS"), ""],
    );

    let tis = wait_until(&store, &run, "the run to finish", LIMIT, all_finished).await;
    let keys = json!([format!("logs/{ds}/a.json"), format!("logs/{ds}/b.json")]);
    let sensor = find(&tis, "wait_logs", -1);
    assert_eq!(sensor.state, TaskState::Success, "{tis:#?}");
    assert_eq!(sensor.output.as_ref(), Some(&keys));
    assert_eq!(sensor.try_number, 1, "waiting spent no try: {sensor:?}");
    assert_eq!(
        find(&tis, "wait_marker", -1).output,
        Some(json!([format!("logs/{ds}/_SUCCESS")]))
    );
    for (i, key) in keys.as_array().into_iter().flatten().enumerate() {
        let load = find(&tis, "load", i32::try_from(i).expect("index"));
        assert_eq!(load.state, TaskState::Success, "{load:?}");
        let key = key.as_str().unwrap_or_default();
        assert_eq!(load.output, Some(json!(format!("loading {key}"))));
    }
    let log = everything_shown(&store, &run).await;
    assert!(
        log.contains(&format!("poke 1: not yet (0 objects of at least 2 bytes under s3://landing/logs/{ds}/, waiting for 2)")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "not yet (s3://landing/logs/{ds}/_SUCCESS does not exist yet)"
        )),
        "{log}"
    );
}

/// The DAG of the two connection tests: a `sql` task on connection `warehouse` (which
/// only the backend knows), and a command that prints two `secret()` values.
const CONNECTION_DAG: &str = r#"
[tasks.query]
type = "sql"
connection = "warehouse"
sql = "SELECT current_user AS who, :day AS day"
parameters = { day = "{{ ds }}" }

[tasks.notify]
type = "command"
command = ["echo", "posting to {{ secret('ssm:/dmp/slack_webhook') }} with {{ secret(\"secretsmanager:dmp/api_token\") }}"]
env = { TOKEN = "{{ secret('secretsmanager:dmp/api_token') }}" }
"#;

/// Runs [`CONNECTION_DAG`] with `backend` and checks its outcome and that none of
/// `secrets` shows anywhere.
async fn run_connection_dag(store: &Store, moto: &Moto, backend: &str, secrets: &[&str]) {
    put(moto, &["param", "/dmp/slack_webhook", WEBHOOK]);
    put(moto, &["secret", "dmp/api_token", API_TOKEN]);
    let run = seed(store, CONNECTION_DAG).await;
    let _scheduler = start_scheduler(store);
    let _worker = start_worker(store, moto.env(), Some(backend));
    let tis = wait_until(store, &run, "the run to finish", LIMIT, all_finished).await;
    let query = find(&tis, "query", -1);
    assert_eq!(query.state, TaskState::Success, "{tis:#?}");
    let ds = Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        query.output,
        Some(json!([{ "who": "postgres", "day": ds }]))
    );
    let notify = find(&tis, "notify", -1);
    assert_eq!(notify.state, TaskState::Success, "{tis:#?}");
    assert_eq!(notify.output, Some(json!("posting to *** with ***")));
    assert_eq!(
        notify.rendered.as_ref().map(|r| r["env"].clone()),
        Some(json!({ "TOKEN": "***" }))
    );
    let shown = everything_shown(store, &run).await;
    assert!(shown.contains("posting to *** with ***"), "{shown}");
    let mut all = secrets.to_vec();
    all.extend([WEBHOOK, API_TOKEN]);
    assert_hidden(&shown, &all);
    web_shows_no_secret(store, &all).await;
}

fn hex_sha256(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The API's answers and the UI's pages about the run's tasks (instances, tries, logs,
/// rendered fields) show none of `secrets`.
async fn web_shows_no_secret(store: &Store, secrets: &[&str]) {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use nightshift_store::{NewApiToken, NewSession, NewUser, Role};
    use tower::ServiceExt;

    let now = Utc::now();
    let user = store
        .create_user(&NewUser {
            username: "vera".to_owned(),
            password_hash: "not-used".to_owned(),
            role: Role::Viewer,
            now,
        })
        .await
        .expect("user");
    store
        .create_api_token(&NewApiToken {
            token_hash: hex_sha256("token-of-vera"),
            user_id: user.id,
            name: "test".to_owned(),
            now,
            expires_at: None,
        })
        .await
        .expect("token");
    store
        .create_session(&NewSession {
            token_hash: hex_sha256("session-of-vera"),
            user_id: user.id,
            csrf_token: "csrf".to_owned(),
            ip: None,
            now,
            expires_at: now + chrono::TimeDelta::hours(1),
        })
        .await
        .expect("session");
    let app = nightshift_web::app(nightshift_web::AppState {
        store: store.clone(),
        settings: nightshift_web::WebSettings::default(),
        metrics: None,
        login: Default::default(),
    });
    let api = "/api/v1/dags/aws/dagRuns/manual__aws/taskInstances";
    let ui = "/dags/aws/runs/manual__aws";
    let mut paths = vec![api.to_owned(), ui.to_owned()];
    for task in ["query", "notify"] {
        paths.extend([
            format!("{api}/{task}"),
            format!("{api}/{task}/tries"),
            format!("{api}/{task}/logs/1"),
            format!("{api}/{task}/logs/1/download"),
            format!("{ui}/tasks/{task}"),
            format!("{ui}/tasks/{task}/log?try=1&after=0"),
        ]);
    }
    let mut masked_somewhere = false;
    for path in paths {
        let request = Request::builder().uri(&path);
        let request = if path.starts_with("/api/") {
            request.header(header::AUTHORIZATION, "Bearer token-of-vera")
        } else {
            request.header(header::COOKIE, "nightshift_session=session-of-vera")
        };
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        // HTML escapes `/`, `&`, quotes: read the page as a person would.
        let body = String::from_utf8_lossy(&body)
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_hidden(&body, secrets);
        masked_somewhere |= body.contains("***");
    }
    assert!(masked_somewhere, "the masked values are shown as ***");
}

async fn a_connection_in_ssm_runs_sql_and_its_secrets_never_show(store: Store) {
    let moto = Moto::start_async().await;
    let uri = format!("postgres://postgres:{SSM_PASSWORD}@127.0.0.1:5432/postgres");
    put(&moto, &["param", "/nightshift/connections/warehouse", &uri]);
    run_connection_dag(
        &store,
        &moto,
        "aws-ssm:/nightshift/connections/",
        &[SSM_PASSWORD, &uri],
    )
    .await;
}

async fn an_rds_secret_in_secrets_manager_runs_sql_and_its_secrets_never_show(store: Store) {
    let moto = Moto::start_async().await;
    let secret = json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "username": "postgres",
        "password": SM_PASSWORD,
        "dbname": "postgres",
        "dbInstanceIdentifier": "warehouse-1",
    })
    .to_string();
    put(
        &moto,
        &["secret", "nightshift/connections/warehouse", &secret],
    );
    // As the URI writes it, too.
    let encoded = "sm-pw%2F8%23c%40d%3Ae%2521";
    run_connection_dag(
        &store,
        &moto,
        "aws-secretsmanager:nightshift/connections/",
        &[SM_PASSWORD, encoded],
    )
    .await;
}

async fn a_missing_or_malformed_connection_fails_naming_it_and_where(store: Store) {
    let moto = Moto::start_async().await;
    let hidden = "hunter2-malformed-9c";
    // Not JSON at all (a quote is missing), and JSON without the fields of an RDS secret.
    put(
        &moto,
        &[
            "secret",
            "ns/broken",
            &format!("{{\"engine\": \"postgres\", \"password\": \"{hidden}}}"),
        ],
    );
    put(
        &moto,
        &[
            "secret",
            "ns/partial",
            &format!("{{\"engine\": \"postgres\", \"password\": \"{hidden}\"}}"),
        ],
    );
    let run = seed(
        &store,
        r#"
[tasks.missing]
type = "sql"
connection = "nowhere"
sql = "SELECT 1"

[tasks.broken]
type = "sql"
connection = "broken"
sql = "SELECT 1"

[tasks.partial]
type = "sql"
connection = "partial"
sql = "SELECT 1"

[tasks.no_param]
type = "command"
command = "echo {{ secret('ssm:/dmp/nothing') }}"
"#,
    )
    .await;
    let _scheduler = start_scheduler(&store);
    let _worker = start_worker(&store, moto.env(), Some("aws-secretsmanager:ns/"));
    let tis = wait_until(&store, &run, "the run to finish", LIMIT, all_finished).await;
    let mut errors = BTreeMap::new();
    for task in ["missing", "broken", "partial", "no_param"] {
        let ti = find(&tis, task, -1);
        assert_eq!(ti.state, TaskState::Failed, "{ti:?}");
        let attempts = store.list_attempts(ti.id).await.expect("attempts");
        let last = attempts.last().and_then(|a| a.error.clone());
        errors.insert(task, last.unwrap_or_default());
    }
    let error = |task: &str| errors[task].clone();
    assert_eq!(
        error("missing"),
        "connection \"nowhere\": Secrets Manager secret ns/nowhere does not exist (connections_backend aws-secretsmanager:ns/)"
    );
    let broken = error("broken");
    assert!(
        broken.starts_with("connection \"broken\": Secrets Manager secret ns/broken: not a URI nor a JSON object: "),
        "{broken}"
    );
    let partial = error("partial");
    assert!(
        partial.starts_with("connection \"partial\": Secrets Manager secret ns/partial: JSON secret without \"uri\" is read as an RDS secret"),
        "{partial}"
    );
    assert!(partial.ends_with("but it has no \"host\""), "{partial}");
    assert_eq!(
        error("no_param"),
        "secret(\"ssm:/dmp/nothing\"): SSM parameter /dmp/nothing does not exist"
    );
    assert_hidden(&everything_shown(&store, &run).await, &[hidden]);
}

/// `nightshift connections test` (the real binary) finds a connection only SSM knows,
/// connects with it, and names a missing one and where it was looked up.
#[test]
fn connections_test_reads_a_connection_from_ssm() {
    let moto = Moto::start();
    let uri = format!("postgres://postgres:{SSM_PASSWORD}@127.0.0.1:5432/postgres");
    put(&moto, &["param", "/nightshift/connections/warehouse", &uri]);
    let mut env = common::Env::new(common::Backend::Sqlite);
    for (key, value) in moto.env() {
        env.set_env(&key, &value);
    }
    env.set_env(
        "NIGHTSHIFT_CONNECTIONS_BACKEND",
        "aws-ssm:/nightshift/connections/",
    );
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let out = env.run(
        &["connections", "test", "warehouse"],
        Duration::from_secs(60),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(
            "ok: warehouse (postgres://postgres:***@127.0.0.1:5432/postgres): SELECT 1 answered in "
        ),
        "{stdout}"
    );
    assert_hidden(&format!("{stdout}{stderr}"), &[SSM_PASSWORD]);

    let out = env.run(&["connections", "test", "nowhere"], Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stderr.trim(),
        "failed: connection \"nowhere\": SSM parameter /nightshift/connections/nowhere does not exist (connections_backend aws-ssm:/nightshift/connections/)"
    );
}

/// Makes an IAM user without any policy on a moto server that checks permissions, and
/// prints its access key as JSON.
const NOBODY: &str = r#"
import json, sys, boto3
s = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
iam = s.client("iam", endpoint_url=sys.argv[1])
iam.create_user(UserName="nobody")
key = iam.create_access_key(UserName="nobody")["AccessKey"]
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

/// A moto server that checks IAM permissions after its first two requests; killed when
/// dropped.
struct StrictMoto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for StrictMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Access refused by AWS: `connections test` says so, naming the connection and the
/// secret it read, and fails.
#[test]
fn refused_access_names_the_connection_and_where() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(nightshift_testkit::moto::python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = StrictMoto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = std::process::Command::new(nightshift_testkit::moto::python())
        .args(["-c", NOBODY, &moto.endpoint])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).expect("key JSON");
    let mut env = common::Env::new(common::Backend::Sqlite);
    for (name, value) in [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", key["id"].as_str().unwrap_or_default()),
        (
            "AWS_SECRET_ACCESS_KEY",
            key["secret"].as_str().unwrap_or_default(),
        ),
        ("AWS_REGION", "us-east-1"),
        (
            "NIGHTSHIFT_CONNECTIONS_BACKEND",
            "aws-secretsmanager:nightshift/connections/",
        ),
    ] {
        env.set_env(name, value);
    }
    let out = env.run(
        &["connections", "test", "warehouse"],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(
            "failed: connection \"warehouse\": access denied reading Secrets Manager secret nightshift/connections/warehouse: "
        ),
        "{stderr}"
    );
    assert!(stderr.contains("secretsmanager:GetSecretValue"), "{stderr}");
}
