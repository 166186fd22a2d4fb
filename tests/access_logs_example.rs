//! End-to-end test of the shipped example DAG `dags/access_logs.toml`, the pipeline our
//! users describe: Embulk extracts on Fargate (`ecs`, `for_each`), the day's access logs
//! on S3 (an `s3` sensor), an Athena partition and the day's KPIs (`athena`), the KPIs
//! posted to Slack and a dashboard refreshed (`http`), with the Slack webhook and the BI
//! connection kept in SSM Parameter Store. The real scheduler and worker run it against
//! `moto_server` (ECS, CloudWatch Logs, S3, Athena, SSM); Slack and the BI tool are a
//! local HTTP server. The test checks what each service was asked for, and that neither
//! secret shows in any log, rendered field or output.

mod common;

use std::time::{Duration, Instant};

use common::examples::{self, http_server, Received};
use common::{Backend, Env};
use nightshift_testkit::moto::Moto;
use serde_json::{json, Value};

const LOGICAL_DATE: &str = "2026-03-14T00:00:00Z";
const DS: &str = "2026-03-14";
/// The secret part of the Slack webhook (kept in SSM as `/dmp/slack_webhook`).
const WEBHOOK_SECRET: &str = "T0DMP/B0KPI/s3cr3tW3bh00kP4th";
/// The BI tool's API token (in the connection kept in SSM as `/nightshift/connections/bi`).
const BI_TOKEN: &str = "bi-tok-9c2e71f0aa";

/// Sets up the emulator: `param NAME VALUE` (a SecureString), `bucket NAME`,
/// `upload BUCKET KEY BODY`, `results JSON` (the rows the next Athena GetQueryResults
/// answers), `query ID` (prints the query execution as JSON).
const AWS: &str = r#"
import json, sys, boto3, urllib.request
ep, action, args = sys.argv[1], sys.argv[2], sys.argv[3:]
s = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
if action == "param":
    s.client("ssm", endpoint_url=ep).put_parameter(Name=args[0], Value=args[1], Type="SecureString", Overwrite=True)
elif action == "bucket":
    s.client("s3", endpoint_url=ep).create_bucket(Bucket=args[0])
elif action == "upload":
    s.client("s3", endpoint_url=ep).put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
elif action == "results":
    req = urllib.request.Request(ep + "/moto-api/static/athena/query-results", data=args[0].encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    assert urllib.request.urlopen(req).status == 201
elif action == "query":
    q = s.client("athena", endpoint_url=ep).get_query_execution(QueryExecutionId=args[0])["QueryExecution"]
    print(json.dumps({"query": q["Query"], "parameters": q.get("ExecutionParameters", []),
                      "database": q.get("QueryExecutionContext", {}).get("Database"),
                      "output": q.get("ResultConfiguration", {}).get("OutputLocation")}))
"#;

fn aws(moto: &Moto, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["-c", AWS, moto.endpoint.as_str()];
    all.extend_from_slice(args);
    moto.python(&all)
}

/// What the two queries answer, in the order they start (moto hands each started query
/// the next queued result): none for the partition's DDL, then the KPIs as Athena gives
/// them, a header row and the values as text.
fn athena_results() -> String {
    let row = |values: &[&str]| json!({"Data": values.iter().map(|v| json!({"VarCharValue": v})).collect::<Vec<_>>()});
    let columns = ["requests", "users", "orders"];
    json!({"results": [
        {"rows": [], "column_info": []},
        {
            "rows": [row(&columns), row(&["1234", "56", "7"])],
            "column_info": columns.iter().map(|c| json!({"Name": c, "Type": "bigint"})).collect::<Vec<_>>(),
        },
    ]})
    .to_string()
}

/// The requests received until one to `path` arrived (or panics after `limit`).
fn wait_for(
    received: &std::sync::mpsc::Receiver<Received>,
    seen: &mut Vec<Received>,
    path: &str,
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(i) = seen.iter().position(|r| r.request_line.contains(path)) {
            return i;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(r) => seen.push(r),
            Err(_) => panic!("no request to {path}; received {seen:#?}"),
        }
    }
}

#[test]
fn the_access_logs_example_runs_end_to_end() {
    let moto = examples::moto();
    let (http, received) = http_server();
    aws(
        &moto,
        &[
            "param",
            "/dmp/slack_webhook",
            &format!("{http}/services/{WEBHOOK_SECRET}"),
        ],
    );
    let bi = json!({"uri": http, "extra": {"token": BI_TOKEN}}).to_string();
    aws(&moto, &["param", "/nightshift/connections/bi", &bi]);
    for bucket in ["dmp-logs", "dmp-athena-results"] {
        aws(&moto, &["bucket", bucket]);
    }
    // The day's logs are there: the sensor's first poke finds them (waiting for an upload
    // is tests/aws_sources.rs's subject). An empty file does not count (`min_size = 1`).
    let day = format!("access/dt={DS}/");
    aws(
        &moto,
        &[
            "upload",
            "dmp-logs",
            &format!("{day}00.json"),
            "{\"user_id\":1}\n",
        ],
    );
    aws(
        &moto,
        &[
            "upload",
            "dmp-logs",
            &format!("{day}01.json"),
            "{\"user_id\":2}\n",
        ],
    );
    aws(&moto, &["upload", "dmp-logs", &format!("{day}02.json"), ""]);
    aws(&moto, &["results", &athena_results()]);

    let mut env = Env::new(Backend::Sqlite);
    examples::copy_example(&env, &moto, "access_logs.toml");
    // The scheduler also starts the latest scheduled run (`catchup = false`), whose
    // sensor waits for that day's logs, which never come here: let the manual run start
    // beside it rather than queue behind it (`max_active_runs = 1`).
    let dag_file = env.dags().join("access_logs.toml");
    let dag = std::fs::read_to_string(&dag_file).expect("example");
    assert_eq!(dag.matches("\nmax_active_runs = 1\n").count(), 1);
    std::fs::write(
        &dag_file,
        dag.replace("\nmax_active_runs = 1\n", "\nmax_active_runs = 2\n"),
    )
    .expect("write");
    env.set_env(
        "NIGHTSHIFT_CONNECTIONS_BACKEND",
        "aws-ssm:/nightshift/connections/",
    );
    env.set_env("SLACK_WEBHOOK_URL", &format!("{http}/failures"));
    examples::start(&mut env, &moto);

    assert_eq!(
        examples::trigger_and_wait(&env, "access_logs", LOGICAL_DATE),
        [
            "add_partition[-1]",
            "daily_kpi[-1]",
            "extract[0]",
            "extract[1]",
            "extract[2]",
            "post_kpi[-1]",
            "refresh_dashboard[-1]",
            "wait_for_logs[-1]",
        ]
    );
    let run_id = examples::manual_run_id(&env, "access_logs");
    let attempt = |task: &str| -> Value {
        let attempts = env.json(&["tasks", "attempts", "access_logs", &run_id, task]);
        let attempts = attempts.as_array().expect("attempts").clone();
        assert_eq!(attempts.len(), 1, "{task}: {attempts:#?}");
        attempts[0].clone()
    };

    // The sensor matched the day's non-empty files (its output, for a `for_each`).
    let instances = env.json(&["tasks", "list", "access_logs", &run_id]);
    let sensor = instances
        .as_array()
        .expect("instances")
        .iter()
        .find(|ti| ti["task_id"] == "wait_for_logs")
        .expect("the sensor");
    assert_eq!(
        sensor["output"],
        json!([format!("{day}00.json"), format!("{day}01.json")]),
        "{sensor:#}"
    );
    // Athena was asked for the day's partition, then the KPIs with the date bound as a
    // parameter, never spliced.
    let query = |task: &str| {
        let id = attempt(task)["external_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{task}: no query execution id"))
            .to_owned();
        serde_json::from_slice::<Value>(&aws(&moto, &["query", &id])).expect("query json")
    };
    let partition = query("add_partition");
    assert!(
        partition["query"]
            .as_str()
            .expect("query")
            .contains(&format!(
                "PARTITION (dt = '{DS}') LOCATION 's3://dmp-logs/{day}'"
            )),
        "{partition:#}"
    );
    assert_eq!(partition["database"], "dmp");
    assert!(
        partition["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("s3://dmp-athena-results/nightly/")),
        "{partition:#}"
    );
    let kpi = query("daily_kpi");
    assert!(
        kpi["query"]
            .as_str()
            .expect("query")
            .contains("WHERE l.dt = ?"),
        "{kpi:#}"
    );
    assert_eq!(kpi["parameters"], json!([format!("'{DS}'")]));

    // Slack got the day's KPIs from Athena's rows, at the webhook kept in SSM; the BI tool
    // got its refresh with the bearer token of the connection kept in SSM.
    let mut seen = Vec::new();
    let slack = wait_for(&received, &mut seen, "/services/", Duration::from_secs(10));
    assert_eq!(
        seen[slack].request_line,
        format!("POST /services/{WEBHOOK_SECRET} HTTP/1.1")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen[slack].body).expect("slack json"),
        json!({"text": format!("{DS}: 1234 requests, 56 users, 7 orders")})
    );
    let refresh = wait_for(
        &received,
        &mut seen,
        "/api/dashboards/",
        Duration::from_secs(10),
    );
    assert_eq!(
        seen[refresh].request_line,
        "POST /api/dashboards/access/refresh HTTP/1.1"
    );
    assert!(
        seen[refresh]
            .headers
            .contains(&("authorization".to_owned(), format!("Bearer {BI_TOKEN}"))),
        "{:#?}",
        seen[refresh]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen[refresh].body).expect("refresh json"),
        json!({"day": DS})
    );
    seen.extend(received.try_iter());
    // The failure hook heard only of missed deadlines (the run is for a past day, and the
    // scheduler's own run may be past 09:00 in Tokyo), never of a failure.
    assert!(
        !seen.iter().any(
            |r| r.request_line.contains("/failures") && !r.body.contains("missed its deadline")
        ),
        "a failure was announced: {seen:#?}"
    );

    // Neither secret shows in a log, a rendered field, an output or the processes' logs.
    // (`tasks render` of post_kpi would need its upstream's output; the run's instances
    // hold what it rendered.)
    let mut shown = env.ok(&[
        "tasks",
        "render",
        "access_logs",
        "refresh_dashboard",
        "--logical-date",
        LOGICAL_DATE,
    ]);
    for task in ["post_kpi", "refresh_dashboard"] {
        shown += &env.ok(&["tasks", "logs", "access_logs", &run_id, task]);
        shown += &attempt(task).to_string();
    }
    shown += &env
        .json(&["tasks", "list", "access_logs", &run_id])
        .to_string();
    shown += &env.logs();
    for secret in [WEBHOOK_SECRET, BI_TOKEN] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
    assert!(shown.contains("***"), "the masked webhook is shown as ***");
}
