//! End-to-end test of the web UI in headless Chromium: the real `nightshift standalone`
//! on a fresh SQLite file, users and tokens made with the CLI, and the browser driven by
//! `tests/browser/e2e.mjs` (playwright-core). Needs Chromium (`/usr/bin/chromium`) and
//! Node.js, which `scripts/ensure-services.sh` installs; the npm package is installed
//! here (`npm ci`) when missing. Screenshots of every page (1366×900 and 390×844) land
//! outside the repository: in `$NIGHTSHIFT_ARTIFACTS/browser`, else
//! `~/.cache/nightshift/artifacts/browser`. axe-core checks every page for accessibility.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env};

const DAG_ID: &str = "e2e_flaky";
const TASK_ID: &str = "flaky";

/// Fails on its first try (leaving a marker file in `cwd`), succeeds once it exists.
fn flaky_dag(cwd: &Path) -> String {
    format!(
        r#"
description = "fails once, then **succeeds** when retried"
owner = "on-call"
tags = ["e2e", "nightly"]

[tasks.flaky]
type = "command"
retries = 0
doc = """
## Runbook
1. Read the log's last lines.
2. Retry with **+ downstream**; see [the docs](https://example.com/runbook).

| step | who |
|------|-----|
| retry | on-call |
"""
cwd = "{cwd}"
command = "if test -f ok; then echo 'second try: ok'; else touch ok; echo 'first try: failing on purpose'; exit 1; fi"

[tasks.report]
type = "command"
depends_on = ["flaky"]
command = "echo report"
"#,
        cwd = cwd.display()
    )
}

/// Runs a few seconds, printing a line a second: the task page tails its log live (htmx).
const LIVE_DAG: &str = r#"
description = "prints a tick a second, for the live log"

[tasks.ticker]
type = "command"
command = "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done"
"#;

/// The 03:10 path's pipeline: `load` fails (an error on stderr after a few log lines)
/// until the marker file `loaded` exists in `cwd`, which its failing try leaves behind, so
/// a retry succeeds; `report` needs it. The run-failure alert goes to the script's local
/// HTTP receiver on `alert_port`.
fn nightly_dag(cwd: &Path, alert_port: u16) -> String {
    format!(
        r#"
description = "the nightly load, for the 03:10 path"

[on_failure]
url = "http://127.0.0.1:{alert_port}/alert"

[tasks.extract]
type = "command"
command = "echo 'extracted 1200 rows'"

[tasks.load]
type = "command"
depends_on = ["extract"]
retries = 0
cwd = "{cwd}"
command = "if test -f loaded; then echo 'loaded 1200 rows'; else touch loaded; for i in 1 2 3 4 5 6 7 8; do echo \"load: batch $i of 8\"; done; echo 'ERROR: warehouse refused the batch: disk full' >&2; exit 3; fi"

[tasks.report]
type = "command"
depends_on = ["load"]
command = "echo report"
"#,
        cwd = cwd.display()
    )
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` unless playwright-core and axe-core are already installed.
fn ensure_npm_packages() {
    let dir = browser_dir();
    let installed = ["playwright-core", "axe-core"].iter().all(|package| {
        dir.join(format!("node_modules/{package}/package.json"))
            .is_file()
    });
    if installed {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm must be installed (scripts/ensure-services.sh installs Node.js)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// Where screenshots go: outside the repository (a CI job collects them from there).
fn artifacts_dir() -> PathBuf {
    let base = match std::env::var_os("NIGHTSHIFT_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
            home.join(".cache/nightshift/artifacts")
        }
    };
    base.join("browser")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_health(env: &Env, base: &str) {
    let started = Instant::now();
    let url = format!("{base}/health");
    while started.elapsed() < Duration::from_secs(30) {
        let up = Command::new("node")
            .args([
                "-e",
                "fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))",
                &url,
            ])
            .status()
            .is_ok_and(|s| s.success());
        if up {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not answer within 30 s\n{}", env.logs());
}

/// The last non-empty line of a command's stdout (the CLI prints secrets alone there).
fn secret(env: &Env, args: &[&str]) -> String {
    let out = env.ok(args);
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("`nightshift {}` printed nothing", args.join(" ")))
        .trim()
        .to_owned()
}

#[test]
fn on_call_retries_a_failed_task_in_the_browser() {
    let chromium = std::env::var("NS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: run scripts/ensure-services.sh (installs Debian's chromium)"
    );
    ensure_npm_packages();

    let mut env = Env::new(Backend::Sqlite);
    env.write_dag(&format!("{DAG_ID}.toml"), &flaky_dag(env.path()));
    env.write_dag("e2e_live.toml", LIVE_DAG);
    let nightly_dir = env.path().join("nightly");
    std::fs::create_dir_all(&nightly_dir).expect("the nightly DAG's working directory");
    let alert_port = free_port();
    env.write_dag("e2e_nightly.toml", &nightly_dag(&nightly_dir, alert_port));

    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let base = format!("http://{bind}");
    env.spawn(&["standalone", "--bind", &bind]);
    wait_for_health(&env, &base);

    let operator_password = secret(&env, &["users", "create", "otto", "--role", "operator"]);
    let viewer_password = secret(&env, &["users", "create", "vera", "--role", "viewer"]);
    let admin_password = secret(&env, &["users", "create", "ada", "--role", "admin"]);
    let operator_token = secret(&env, &["tokens", "create", "otto", "e2e"]);
    let viewer_token = secret(&env, &["tokens", "create", "vera", "e2e"]);

    let artifacts = artifacts_dir();
    let started = Instant::now();
    let out = Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .current_dir(browser_dir())
        .env("NS_BASE_URL", &base)
        .env("NS_DAG_ID", DAG_ID)
        .env("NS_TASK_ID", TASK_ID)
        .env("NS_ARTIFACTS", &artifacts)
        .env("NS_CHROMIUM", &chromium)
        .env("NS_OPERATOR", "otto")
        .env("NS_OPERATOR_PASSWORD", &operator_password)
        .env("NS_OPERATOR_TOKEN", &operator_token)
        .env("NS_VIEWER", "vera")
        .env("NS_VIEWER_PASSWORD", &viewer_password)
        .env("NS_VIEWER_TOKEN", &viewer_token)
        .env("NS_ADMIN", "ada")
        .env("NS_ADMIN_PASSWORD", &admin_password)
        .env("NS_NIGHTLY_DAG", "e2e_nightly")
        .env("NS_ALERT_PORT", alert_port.to_string())
        .env("NS_NIGHTLY_MARKER", nightly_dir.join("loaded"))
        .stdin(Stdio::null())
        .output()
        .expect("node must be installed (scripts/ensure-services.sh installs Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\nnightshift logs:\n{}",
        out.status,
        env.logs()
    );
    eprintln!("{stdout}browser scenario took {:?}", started.elapsed());
    for shot in [
        "oncall-desktop-1-alert-link.png",
        "oncall-desktop-2-confirm.png",
        "oncall-desktop-3-green.png",
        "oncall-phone-1-alert-link.png",
        "oncall-phone-2-confirm.png",
        "oncall-phone-3-green.png",
        "dag-list.png",
        "grid.png",
        "graph.png",
        "task.png",
        "pools.png",
        "desktop-run.png",
        "phone-run.png",
        "phone-dags.png",
        "phone-graph.png",
        "phone-task.png",
        "phone-login.png",
    ] {
        assert!(artifacts.join(shot).is_file(), "screenshot {shot} missing");
    }
}
