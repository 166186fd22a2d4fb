//! End-to-end tests of the offline commands: `dags validate`, `schedule preview`,
//! `--version`, `dags list`, `tasks mark`, `db clean` on a fresh SQLite file.

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

/// Runs `args` with `stdin` as standard input; returns (success, stdout, stderr).
fn run_with_stdin(env: &Env, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = env
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nightshift");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn users_reset_password_prints_a_new_one_and_ends_sign_ins() {
    use nightshift_store::{NewSession, Store};

    let env = Env::new(Backend::Sqlite);
    let first = env.ok(&["users", "create", "ada", "--role", "admin"]);
    let token = env.ok(&["tokens", "create", "ada", "script"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("sqlite://{}", env.path().join("nightshift.db").display());
    let store = runtime.block_on(Store::connect(&url)).expect("store");
    let session = |name: &str| {
        runtime.block_on(async {
            let user = store
                .get_user_by_name("ada")
                .await
                .expect("get")
                .expect("ada");
            let now = chrono::Utc::now();
            store
                .create_session(&NewSession {
                    token_hash: name.to_owned(),
                    user_id: user.id,
                    csrf_token: "csrf".to_owned(),
                    ip: None,
                    now,
                    expires_at: now + chrono::TimeDelta::hours(1),
                })
                .await
                .expect("session");
            user.password_hash
        })
    };
    let alive = |session: &str| {
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let session = store.session_user(session, now).await.expect("session");
            let token = store
                .api_token_user(&hex_sha256(token.trim()), now)
                .await
                .expect("token");
            (session.is_some(), token.is_some())
        })
    };
    let old_hash = session("before-reset");
    assert_eq!(alive("before-reset"), (true, true));

    // Generated: printed once on stdout; sessions and tokens end.
    let printed = env.ok(&["users", "reset-password", "ada"]);
    let password = printed.trim();
    assert_eq!(password.len(), 20, "{printed:?}");
    assert_ne!(password, first.trim());
    let new_hash = session("after-reset");
    assert!(nightshift_web::verify_password(&new_hash, password));
    assert!(!nightshift_web::verify_password(&old_hash, password));
    assert_eq!(alive("before-reset"), (false, false));

    // From standard input, keeping tokens.
    let token = env.ok(&["tokens", "create", "ada", "script-2"]);
    let alive_now = |session: &str| {
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let session = store.session_user(session, now).await.expect("session");
            let token = store
                .api_token_user(&hex_sha256(token.trim()), now)
                .await
                .expect("token");
            (session.is_some(), token.is_some())
        })
    };
    assert_eq!(alive_now("after-reset"), (true, true));
    let (ok, stdout, stderr) = run_with_stdin(
        &env,
        &[
            "users",
            "reset-password",
            "ada",
            "--password-stdin",
            "--keep-tokens",
        ],
        "chosen by the admin\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "", "a given password is not printed");
    assert_eq!(alive_now("after-reset"), (false, true));
    let hash = runtime
        .block_on(store.get_user_by_name("ada"))
        .expect("get")
        .expect("ada")
        .password_hash;
    assert!(nightshift_web::verify_password(
        &hash,
        "chosen by the admin"
    ));

    // Unknown users and short passwords are refused.
    let out = env.run(
        &["users", "reset-password", "nobody"],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"nobody\""));
    let (ok, _, stderr) = run_with_stdin(
        &env,
        &["users", "reset-password", "ada", "--password-stdin"],
        "short\n",
    );
    assert!(!ok && stderr.contains("at least 8"), "{stderr}");
}

#[test]
fn users_create_refuses_look_alike_names() {
    let env = Env::new(Backend::Sqlite);
    for name in ["admin\u{200b}", "\u{430}dmin", "ad min"] {
        let out = env.run(
            &["users", "create", name, "--role", "admin"],
            Duration::from_secs(60),
        );
        assert!(!out.status.success(), "{name:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("user name"), "{name:?}: {stderr}");
    }
    env.ok(&["users", "create", "on-call.bot@example", "--role", "viewer"]);
}

fn hex_sha256(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Passwords pasted into a URI without percent-encoding them: the startup error (database
/// URL) and the connections error or listing (`NIGHTSHIFT_CONN_*`) print the URI with
/// `***` and never the password.
#[test]
fn careless_passwords_never_reach_the_terminal() {
    const PASSWORDS: [&str; 7] = [
        "p#ss",
        "p/ss",
        "p?ss",
        "p@ss/w?rd#x",
        "p@ss",
        "pä ss密",
        "p%zz%41 ss",
    ];
    std::thread::scope(|scope| {
        for password in PASSWORDS {
            scope.spawn(move || {
                let mut env = Env::new(Backend::Sqlite);
                env.set_env(
                    "NIGHTSHIFT_DATABASE_URL",
                    &format!("postgres://etl:{password}@127.0.0.1:1/dwh"),
                );
                let out = env.run(&["pools", "list"], Duration::from_secs(60));
                let (stdout, stderr) = (
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                );
                assert_eq!(out.status.code(), Some(1), "{password}: {stderr}");
                assert!(
                    stderr.contains("postgres://etl:***@127.0.0.1:1/dwh"),
                    "{password}: {stderr}"
                );
                assert!(
                    !stderr.contains(password) && !stdout.contains(password),
                    "{password}: {stderr}"
                );
            });
            scope.spawn(move || {
                let mut env = Env::new(Backend::Sqlite);
                env.set_env(
                    "NIGHTSHIFT_CONN_WH",
                    &format!("postgres://etl:{password}@db.internal:5432/dwh"),
                );
                let out = env.run(&["connections", "list"], Duration::from_secs(60));
                let shown = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(!shown.contains(password), "{password}: {shown}");
                if out.status.success() {
                    assert!(shown.contains("db.internal"), "{password}: {shown}");
                } else {
                    assert!(
                        shown.contains("postgres://etl:***@db.internal:5432/dwh"),
                        "{password}: {shown}"
                    );
                }
            });
        }
    });
}

/// `tasks mark` skips instances already in the target state (as Airflow does) instead of
/// failing on them, and a second mark finds nothing to change.
#[test]
fn tasks_mark_skips_instances_already_in_the_state() {
    let env = Env::new(Backend::Sqlite);
    env.write_dag(
        "marks.toml",
        "[tasks.a]\ntype = \"noop\"\nfor_each = [\"x\", \"y\"]\n\
         [tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n",
    );
    let runs = env.json(&["dags", "trigger", "marks"]);
    let run_id = runs[0]["run_id"].as_str().expect("run_id").to_owned();
    let mark = |extra: &[&str]| {
        let mut args = vec!["tasks", "mark", "marks", &run_id, "a", "success"];
        args.extend_from_slice(extra);
        let marked = env.json(&args);
        marked
            .as_array()
            .expect("a list")
            .iter()
            .map(|ti| {
                assert_eq!(ti["state"], "success", "{ti}");
                ti["map_index"].as_i64().expect("map_index")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(mark(&["--map-index", "0"]), [0]);
    assert_eq!(
        mark(&[]),
        [1],
        "a[0] is success already: skipped, not an error"
    );
    assert_eq!(mark(&[]), Vec::<i64>::new(), "nothing left to mark");
}

#[test]
fn db_clean_counts_then_deletes_and_never_an_unfinished_run() {
    let env = Env::new(Backend::Sqlite);
    env.write_dag("kept.toml", "[tasks.a]\ntype = \"noop\"\n");
    let runs = env.json(&[
        "dags",
        "trigger",
        "kept",
        "--logical-date",
        "2020-01-01T00:00:00Z",
    ]);
    let run_id = runs[0]["run_id"].as_str().expect("run_id").to_owned();
    std::thread::sleep(Duration::from_millis(1_100));
    for dry_run in [true, false] {
        let mut args = vec!["db", "clean", "--older-than", "1s"];
        if dry_run {
            args.push("--dry-run");
        }
        let report = env.json(&args);
        assert_eq!(report["dry_run"], dry_run, "{report}");
        assert_eq!(
            report["deleted"]["dag_runs"], 0,
            "a queued run stays: {report}"
        );
        assert_eq!(report["deleted"]["task_instances"], 0, "{report}");
    }
    let listed = env.json(&["runs", "list", "kept"]);
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    let table = env.ok(&[
        "db",
        "clean",
        "--older-than",
        "90d",
        "--dag",
        "kept",
        "--dry-run",
    ]);
    assert!(table.contains("would delete"), "{table}");
    assert!(table.contains("task_logs"), "{table}");
    let bad = env.run(
        &["db", "clean", "--older-than", "soon"],
        Duration::from_secs(30),
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--older-than"),
        "{bad:?}"
    );
    let vacuumed = env.ok(&["db", "vacuum"]);
    assert!(vacuumed.contains("auto_vacuum is now 2"), "{vacuumed}");
}
