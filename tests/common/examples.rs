//! What the end-to-end tests of the shipped example DAGs share: `moto_server` with the
//! ECS fixtures the examples' extracts name, a copy of an example in a test's DAG folder,
//! the container environment ECS was asked for, and a local HTTP server standing in for
//! Slack and the other webhooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use nightshift_testkit::moto::Moto;
use serde_json::Value;

use super::Env;

/// What the examples' `extract` tasks name in ECS: cluster `dmp`, the Fargate task
/// definition `dmp-extract` (container `extract`) logging to `/ecs/dmp-extract`.
const ECS_FIXTURES: &str = r#"
import sys, boto3
s = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
ecs = s.client("ecs", endpoint_url=sys.argv[1])
s.client("logs", endpoint_url=sys.argv[1]).create_log_group(logGroupName="/ecs/dmp-extract")
ecs.create_cluster(clusterName="dmp")
ecs.register_task_definition(
    family="dmp-extract", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
    cpu="256", memory="512",
    containerDefinitions=[{
        "name": "extract", "image": "example.invalid/embulk:1", "memory": 512, "essential": True,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/dmp-extract", "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "ecs"}},
    }],
)
"#;

/// The emulator with the test fixtures and the examples' ECS cluster and task definition.
pub fn moto() -> Moto {
    let moto = Moto::start();
    moto.python(&["-c", ECS_FIXTURES, &moto.endpoint]);
    moto
}

/// The environment override of an ECS task's first container, as a JSON object.
const CONTAINER_ENV: &str = r#"
import json, sys, boto3
s = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
task = s.client("ecs", endpoint_url=sys.argv[1]).describe_tasks(cluster="dmp", tasks=[sys.argv[2]])["tasks"][0]
env = task["overrides"]["containerOverrides"][0].get("environment", [])
print(json.dumps({e["name"]: e["value"] for e in env}))
"#;

pub fn container_env(moto: &Moto, arn: &str) -> Value {
    moto.python_json(&["-c", CONTAINER_ENV, &moto.endpoint, arn])
}

/// Copies `dags/<file>` into the test's DAG folder, substituting only the example's
/// placeholder subnet and security group ids, which moto cannot create under those names.
pub fn copy_example(env: &Env, moto: &Moto, file: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("dags").join(file)).expect("example");
    for placeholder in ["\"subnet-0abc\"", "\"sg-0abc\""] {
        assert_eq!(source.matches(placeholder).count(), 1, "{placeholder}");
    }
    let dag = source
        .replace("\"subnet-0abc\"", &format!("\"{}\"", moto.subnet))
        .replace("\"sg-0abc\"", &format!("\"{}\"", moto.security_group));
    env.write_dag(file, &dag);
}

/// One request the local HTTP server received.
#[derive(Debug)]
pub struct Received {
    pub request_line: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A local HTTP server answering every request `200 {"ok":true}`; returns its base URL
/// and the requests it receives.
pub fn http_server() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(received) = serve_one(stream) {
                if tx.send(received).is_err() {
                    return;
                }
            }
        }
    });
    (url, rx)
}

fn serve_one(mut stream: TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().ok()?;
            }
            headers.push((name, value.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let reply = "{\"ok\":true}";
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    Some(Received {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Starts a scheduler and a worker on `env` pointed at the emulator, with the pool
/// `fargate` the examples' extracts run in.
pub fn start(env: &mut Env, moto: &Moto) {
    for (key, value) in moto.env() {
        env.set_env(&key, &value);
    }
    env.ok(&["pools", "set", "fargate", "8"]);
    env.spawn(&["scheduler"]);
    env.spawn(&["worker"]);
}

/// Triggers `dag` for `logical_date` and waits for the run; asserts every instance
/// succeeded and returns them as sorted `task[map_index]` names.
pub fn trigger_and_wait(env: &Env, dag: &str, logical_date: &str) -> Vec<String> {
    let out = env.ok_within(
        &[
            "dags",
            "trigger",
            dag,
            "--logical-date",
            logical_date,
            "--wait",
            "--output",
            "json",
        ],
        Duration::from_secs(180),
    );
    let instances: Value = serde_json::from_str(&out).expect("json");
    let mut tasks: Vec<String> = instances
        .as_array()
        .expect("instances")
        .iter()
        .map(|ti| {
            assert_eq!(ti["state"], "success", "{ti:#}");
            format!(
                "{}[{}]",
                ti["task_id"].as_str().expect("task_id"),
                ti["map_index"]
            )
        })
        .collect();
    tasks.sort();
    tasks
}

/// The id of `dag`'s manual run (the scheduler also starts the latest scheduled run:
/// the examples have `catchup = false`).
pub fn manual_run_id(env: &Env, dag: &str) -> String {
    let runs = env.json(&["runs", "list", dag]);
    runs.as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .find(|id| id.starts_with("manual__"))
        .unwrap_or_else(|| panic!("no manual run in {runs:#}"))
        .to_owned()
}
