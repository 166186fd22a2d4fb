//! The official Airflow API clients, installed from PyPI and unchanged, against a real
//! `nightshift standalone`: apache-airflow-client 2.10.0 on `/api/v1` with HTTP Basic
//! auth (tests/airflow/client2.py), and apache-airflow-client 3.3.2 on `/api/v2` with a
//! token from `POST /auth/token` (tests/airflow/client3.py). Each script goes through the client's own models,
//! which check every response's types, enums and nullability, and asserts real values.
//! The clients' virtualenvs come from scripts/ensure-airflow-clients.sh.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Env};

const SLOW: &str = "af_slow";
const FLAKY: &str = "af_flaky";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/nightshift")
}

/// The Python of one client's virtualenv, installed by scripts/ensure-airflow-clients.sh.
fn client_python(venv: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/ensure-airflow-clients.sh"))
        .status()
        .expect("bash runs scripts/ensure-airflow-clients.sh");
    assert!(status.success(), "installing the Airflow clients failed");
    cache_dir().join(venv).join("bin/python")
}

fn wait_for_health(env: &Env, base: &str, python: &Path) {
    let started = Instant::now();
    let url = format!("{base}/health");
    while started.elapsed() < Duration::from_secs(30) {
        let up = Command::new(python)
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)",
                &url,
            ])
            .output()
            .is_ok_and(|out| out.status.success());
        if up {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not answer within 30 s\n{}", env.logs());
}

fn secret(env: &Env, args: &[&str]) -> String {
    let out = env.ok(args);
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("`nightshift {}` printed nothing", args.join(" ")))
        .trim()
        .to_owned()
}

/// A standalone nightshift with the example DAGs and an admin, `ada` (pools need one).
struct Server {
    env: Env,
    base: String,
    password: String,
    flag: PathBuf,
}

fn start(backend: Backend, python: &Path) -> Server {
    let mut env = Env::new(backend);
    let flag = env.path().join("flaky.flag");
    env.write_dag(
        &format!("{SLOW}.toml"),
        r#"
description = "waits, then reports"
owner = "data"
tags = ["compat", "slow"]

[tasks.wait]
type = "command"
command = "sleep 120"

[tasks.after]
type = "command"
depends_on = ["wait"]
command = "echo after"
"#,
    );
    env.write_dag(
        &format!("{FLAKY}.toml"),
        &format!(
            r#"
tags = ["compat"]

[tasks.work]
type = "command"
retries = 0
command = "if test -f '{flag}'; then echo 'flag found'; else echo 'no flag yet'; exit 1; fi"

[tasks.report]
type = "command"
depends_on = ["work"]
command = "echo report"
"#,
            flag = flag.display()
        ),
    );
    env.write_dag("af_plain.toml", "[tasks.a]\ntype = \"noop\"\n");
    env.write_dag("broken.toml", "[tasks.a]\ntype = \"bash\"\n");
    let bind = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{bind}");
    env.spawn(&["standalone", "--bind", &bind]);
    wait_for_health(&env, &base, python);
    let password = secret(&env, &["users", "create", "ada", "--role", "admin"]);
    Server {
        env,
        base,
        password,
        flag,
    }
}

/// Runs one client script against `server`; panics with its output when it fails.
fn run_script(server: &Server, python: &Path, script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let broken = server.env.dags().join("broken.toml");
    let out = Command::new(python)
        .arg(root.join("tests/airflow").join(script))
        .env("NS_BASE_URL", &server.base)
        .env("NS_USER", "ada")
        .env("NS_PASSWORD", &server.password)
        .env("NS_SLOW_DAG", SLOW)
        .env("NS_FLAKY_DAG", FLAKY)
        .env("NS_FLAKY_FLAG", &server.flag)
        .env("NS_BROKEN_FILE", broken.display().to_string())
        .output()
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- nightshift\n{}",
        server.env.logs()
    );
    assert!(
        stdout.contains("all calls parsed and checked"),
        "{script} did not finish\n{stdout}"
    );
}

/// Each client in turn against one server: 2.10.0 on `/api/v1`, then 3.3.2 on `/api/v2`.
fn every_client(backend: Backend) {
    let client2 = client_python("airflow-client-2");
    let client3 = cache_dir().join("airflow-client-3/bin/python");
    let server = start(backend, &client2);
    run_script(&server, &client2, "client2.py");
    run_script(&server, &client3, "client3.py");
}

#[test]
fn airflow_clients_work_unchanged_on_sqlite() {
    every_client(Backend::Sqlite);
}

#[test]
fn airflow_clients_work_unchanged_on_postgres() {
    every_client(Backend::Postgres);
}
