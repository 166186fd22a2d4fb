//! Upgrades: a database populated by an earlier release (a plain SQL dump made with
//! scripts/make-upgrade-fixtures.sh) is migrated by this build, and its history reads
//! back intact: runs, task instances with their tries, logs, pools, users and tokens.
//! Afterwards the upgraded database runs new work.
//!
//! Each release that adds migrations keeps its predecessor's dump here, so every
//! upgrade path a user can take from a release is tested.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Backend, Env};
use serde_json::Value;

/// The dumps in tests/fixtures/upgrade, by the newest migration of their release.
const FIXTURES: &[&str] = &["0004"];

fn restore(env: &Env, backend: Backend, schema: &str) {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upgrade")
        .join(format!(
            "{}-{schema}.sql",
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
        ));
    let status = match backend {
        Backend::Postgres => Command::new("psql")
            .args([&env.database_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&dump)
            .stdout(Stdio::null())
            .status()
            .expect("psql"),
        Backend::Sqlite => {
            let file = env
                .database_url
                .strip_prefix("sqlite://")
                .expect("a sqlite:// URL");
            Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
                     c.executescript(open(sys.argv[2]).read()); c.commit()",
                    file,
                ])
                .arg(&dump)
                .status()
                .expect("python3 (restores the SQLite dump)")
        }
    };
    assert!(status.success(), "restoring {}", dump.display());
}

fn upgrade_keeps_history(backend: Backend) {
    for schema in FIXTURES {
        let mut env = Env::new(backend);
        let dag = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade/history.toml");
        std::fs::copy(&dag, env.dags().join("history.toml")).expect("copy the DAG");
        restore(&env, backend, schema);
        let migrated = env.ok(&["db", "migrate"]);
        eprintln!("from {schema}: {migrated}");

        let runs = env.json(&["runs", "list", "history"]);
        let runs = runs.as_array().expect("runs");
        assert_eq!(runs.len(), 3, "the three runs survived: {runs:#?}");
        for run in runs {
            assert_eq!(run["state"], "failed", "{run:#}");
            let run_id = run["run_id"].as_str().expect("run id");
            let tis = env.json(&["tasks", "list", "history", run_id]);
            let state = |task: &str| -> Vec<Value> {
                tis.as_array()
                    .expect("tis")
                    .iter()
                    .filter(|t| t["task_id"] == task)
                    .map(|t| t["state"].clone())
                    .collect()
            };
            assert_eq!(state("extract"), ["success"]);
            assert_eq!(state("load"), ["success", "success", "success"], "mapped");
            assert_eq!(state("flaky"), ["success"]);
            assert_eq!(state("report"), ["success"]);
            assert_eq!(state("broken"), ["failed"]);
            assert_eq!(state("after_broken"), ["upstream_failed"]);

            let tries = env.json(&["tasks", "attempts", "history", run_id, "flaky"]);
            let tries = tries.as_array().expect("attempts");
            assert_eq!(tries.len(), 2, "both tries of flaky: {tries:#?}");
            assert_eq!(tries[0]["state"], "up_for_retry");
            assert_eq!(tries[1]["state"], "success");

            let log = env.ok(&["tasks", "logs", "history", run_id, "broken"]);
            assert!(log.contains("about to fail"), "the log survived: {log}");
        }
        let pools = env.ok(&["pools", "list"]);
        assert!(pools.contains("etl"), "{pools}");
        let users = env.ok(&["users", "list"]);
        assert!(users.contains("alice") && users.contains("bob"), "{users}");

        // The upgraded database runs new work.
        env.ok(&["dags", "unpause", "history"]);
        env.spawn(&["scheduler"]);
        env.spawn(&["worker"]);
        let out = env.run(
            &["dags", "trigger", "history", "--wait"],
            Duration::from_secs(120),
        );
        assert!(
            !out.status.success(),
            "the new run fails at `broken`, as the old ones did"
        );
        let runs = env.json(&["runs", "list", "history"]);
        assert_eq!(runs.as_array().map(Vec::len), Some(4), "{runs:#}");
        assert_eq!(runs[0]["state"], "failed", "{}", env.logs());
    }
}

both_backends!(upgrade_keeps_history);
