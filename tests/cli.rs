//! End-to-end tests of the offline commands: `dags validate`, `schedule preview`,
//! `--version`, `dags list` on a fresh SQLite file.

mod common;

use std::time::Duration;

use common::{Backend, Env};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_dags_validate() {
    let env = Env::new(Backend::Sqlite);
    let out = env.ok(&["dags", "validate", &repo("dags")]);
    assert!(out.contains("nightly_dmp"), "{out}");
    assert!(out.contains("hello_commands"), "{out}");
    assert!(out.contains("0 with errors"), "{out}");
}

#[test]
fn broken_dags_give_one_error_each_and_good_files_still_load() {
    let env = Env::new(Backend::Sqlite);
    let out = env.run(
        &[
            "dags",
            "validate",
            &repo("tests/fixtures/broken_dags"),
            "--output",
            "json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "exit code");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let errors = report["errors"].as_array().expect("errors");
    let valid = report["valid"].as_array().expect("valid");
    assert_eq!(valid.len(), 1, "{report:#}");
    assert_eq!(valid[0]["dag_id"], "good");
    let broken = std::fs::read_dir(repo("tests/fixtures/broken_dags"))
        .expect("fixtures")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name() != "good.toml")
                .unwrap_or(false)
        })
        .count();
    assert_eq!(errors.len(), broken, "{report:#}");
    for error in errors {
        let file = error["file"].as_str().expect("file");
        let message = error["message"].as_str().expect("message");
        assert_eq!(
            message.lines().count(),
            1,
            "one error for {file}: {message}"
        );
        let stem = std::path::Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        assert!(message.starts_with(file), "error names the file: {message}");
        assert!(
            message.contains(".toml:"),
            "{stem}: error has a line number: {message}"
        );
    }
}

#[test]
fn schedule_preview_prints_fire_times_in_the_zone() {
    let env = Env::new(Backend::Sqlite);
    let out = env.ok(&[
        "schedule",
        "preview",
        "30 2 * * *",
        "--timezone",
        "America/New_York",
        "--from",
        "2026-03-07T00:00:00Z",
        "--count",
        "3",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // 2026-03-08 02:30 does not exist in New York: the run moves to 03:00 EDT.
    assert_eq!(
        lines,
        [
            "2026-03-07T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00"
        ]
    );
    let bad = env.run(
        &["schedule", "preview", "61 * * * *"],
        Duration::from_secs(10),
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("minute"), "{stderr}");
}

#[test]
fn version_and_help() {
    let env = Env::new(Backend::Sqlite);
    let out = env.ok(&["--version"]);
    assert!(out.starts_with("nightshift "), "{out}");
    let help = env.ok(&["--help"]);
    for command in [
        "standalone",
        "scheduler",
        "worker",
        "web",
        "dags",
        "schedule",
        "db",
    ] {
        assert!(help.contains(command), "--help mentions {command}");
    }
}

#[test]
fn dags_list_loads_the_folder_into_a_fresh_database() {
    let env = Env::new(Backend::Sqlite);
    env.write_dag(
        "one.toml",
        "schedule = \"@daily\"\n[tasks.a]\ntype = \"noop\"\n",
    );
    env.write_dag("broken.toml", "[tasks.a]\ntype = \"bash\"\n");
    let dags = env.json(&["dags", "list"]);
    let ids: Vec<&str> = dags
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["dag_id"].as_str())
        .collect();
    assert_eq!(ids, ["one"]);
}
