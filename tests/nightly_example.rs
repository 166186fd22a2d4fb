//! End-to-end test of the shipped example DAG `dags/nightly_dmp.toml`: the real scheduler
//! and worker run it with its extracts on `moto_server` (the ECS emulator, extended by
//! `worker/tests/moto/moto_ext.py`), its warehouse in a fresh PostgreSQL database and its
//! KPI post sent to a local HTTP server. Nightshift's own database is SQLite; the
//! warehouse must be PostgreSQL, as `dags/sql/build_marts.sql` is.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::examples::{self, container_env, http_server, Received};
use common::{Backend, Env};
use nightshift_testkit::moto::Moto;
use serde_json::Value;

/// The run's logical date: midnight UTC is the same day in the DAG's Asia/Tokyo.
const LOGICAL_DATE: &str = "2026-03-14T00:00:00Z";
const DS: &str = "2026-03-14";
const TABLES: [&str; 3] = ["Student", "Lesson", "Teacher"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh PostgreSQL database for the warehouse, dropped at the end.
struct Warehouse {
    admin: String,
    name: String,
    url: String,
}

impl Warehouse {
    fn new() -> Warehouse {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("ns_warehouse_{}_{nanos}", std::process::id());
        let url = match admin.rfind('/') {
            Some(slash) => format!("{}/{name}", &admin[..slash]),
            None => panic!("DATABASE_URL {admin:?} has no database part"),
        };
        let warehouse = Warehouse { admin, name, url };
        let create = format!("CREATE DATABASE {}", warehouse.name);
        warehouse.psql(&warehouse.admin, &create);
        warehouse
    }

    fn psql(&self, url: &str, sql: &str) -> String {
        common::stdout_of(Command::new("psql").args([
            url,
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))
    }

    fn query(&self, sql: &str) -> String {
        self.psql(&self.url, sql)
    }
}

impl Drop for Warehouse {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Copies the example and its SQL into the test's DAG folder.
fn copy_example(env: &Env, moto: &Moto) {
    examples::copy_example(env, moto, "nightly_dmp.toml");
    let sql_dir: PathBuf = env.dags().join("sql");
    std::fs::create_dir(&sql_dir).expect("sql dir");
    std::fs::copy(
        root().join("dags/sql/build_marts.sql"),
        sql_dir.join("build_marts.sql"),
    )
    .expect("copy build_marts.sql");
}

#[test]
fn the_nightly_example_runs_end_to_end() {
    let moto = examples::moto();
    let warehouse = Warehouse::new();
    // What the extracts would have loaded: lessons of the target date and of the day before.
    warehouse.query(
        "CREATE SCHEMA staging;
         CREATE TABLE staging.lesson (teacher_id bigint, student_id bigint, started_at timestamp);
         INSERT INTO staging.lesson VALUES
           (1, 10, '2026-03-14 09:00'), (1, 11, '2026-03-14 10:00'), (1, 10, '2026-03-14 11:00'),
           (2, 12, '2026-03-14 09:30'), (2, 12, '2026-03-13 09:30');",
    );
    let (http, received) = http_server();

    let mut env = Env::new(Backend::Sqlite);
    copy_example(&env, &moto);
    env.set_env("NIGHTSHIFT_CONN_WAREHOUSE", &warehouse.url);
    env.set_env("NIGHTSHIFT_CONN_KPI", &http);
    env.set_env("SLACK_WEBHOOK_URL", &format!("{http}/slack"));
    examples::start(&mut env, &moto);

    // Every instance succeeded: one extract per table, then the marts and the post.
    assert_eq!(
        examples::trigger_and_wait(&env, "nightly_dmp", LOGICAL_DATE),
        [
            "build_marts[-1]",
            "check_marts[-1]",
            "extract[0]",
            "extract[1]",
            "extract[2]",
            "post_kpi[-1]",
        ]
    );

    // The marts were built for the run's date, from that date's lessons only. (The
    // scheduler also starts the DAG's latest scheduled run, for today: catchup = false.)
    assert_eq!(
        warehouse.query(&format!(
            "SELECT target_date, teacher_id, lessons, students FROM mart.daily_lessons \
             WHERE target_date = '{DS}' ORDER BY teacher_id"
        )),
        format!("{DS}|1|3|2\n{DS}|2|1|1\n")
    );

    // The KPI post carried the run's date and id; no failure notification was sent.
    let run_id = examples::manual_run_id(&env, "nightly_dmp");
    let text = format!("marts built for {DS} (run {run_id})");
    let mut posts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let post = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no KPI post with {text:?}; received {posts:#?}"));
        let body: Value = serde_json::from_str(&got.body).unwrap_or(Value::Null);
        if body["text"] == text.as_str() {
            break (got, body);
        }
        posts.push(got);
    };
    assert_eq!(post.0.request_line, "POST /kpi HTTP/1.1");
    assert_eq!(
        post.1,
        serde_json::json!({"text": text, "dag": "nightly_dmp"})
    );
    posts.extend(received.try_iter());
    // The run is for a past day, so its `[deadline] at = "09:00"` had passed when it was
    // created: announced once through `[on_failure]`'s Slack hook, and nothing else was.
    let (late, others): (Vec<_>, Vec<_>) = posts
        .iter()
        .filter(|p| !p.request_line.starts_with("POST /kpi "))
        .partition(|p| p.body.contains("missed its deadline"));
    assert!(
        others.is_empty(),
        "a failure notification was sent: {others:#?}"
    );
    // The scheduler's own run for today may be late too (between 09:00 in Tokyo and the
    // next 03:00 it is): each run is announced at most once, and only through Slack.
    let link = run_id.replace('+', "%2B").replace(':', "%3A");
    let (ours, scheduled): (Vec<&Received>, Vec<&Received>) =
        late.iter().copied().partition(|p| p.body.contains(&link));
    assert!(
        ours.len() <= 1,
        "the deadline was announced twice: {ours:#?}"
    );
    assert!(
        scheduled.len() <= 1 && scheduled.iter().all(|p| p.body.contains("scheduled__")),
        "the scheduled run's deadline was announced twice: {scheduled:#?}"
    );
    for late in late {
        assert_eq!(late.request_line, "POST /slack HTTP/1.1");
    }

    // Each extract's attempt recorded its ECS task ARN, one distinct task per table.
    let mut arns = Vec::new();
    for (map_index, table) in TABLES.iter().enumerate() {
        let attempts = env.json(&[
            "tasks",
            "attempts",
            "nightly_dmp",
            &run_id,
            "extract",
            "--map-index",
            &map_index.to_string(),
        ]);
        let attempts = attempts.as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        let arn = attempts[0]["external_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no external_id: {attempts:#?}"))
            .to_owned();
        assert!(arn.starts_with("arn:aws:ecs:us-east-1:"), "{arn}");
        assert!(arn.contains("/dmp/"), "a task of cluster dmp: {arn}");
        assert_eq!(
            container_env(&moto, &arn),
            serde_json::json!({"CLASSNAME": table, "TARGET_DATE": DS}),
            "{arn}"
        );
        arns.push(arn);
    }
    arns.sort();
    arns.dedup();
    assert_eq!(arns.len(), TABLES.len(), "{arns:?}");
}
