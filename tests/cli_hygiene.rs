//! The CLI's console and audit hygiene, on the real binary: every action a command takes
//! is in the audit log as `cli:<os user>`; PostgreSQL's `relation "_sqlx_migrations"
//! already exists, skipping` notice is shown only at DEBUG; no ANSI colour codes are
//! written when stderr is not a terminal.

mod common;

use std::time::Duration;

use common::{Backend, Env};
use nightshift_store::{AuditFilter, Store};

const DAG: &str = r#"
[tasks.hello]
type = "command"
command = "echo hello"
"#;

#[test]
fn cli_actions_are_audited_as_the_os_user() {
    let mut env = Env::new(Backend::Sqlite);
    // The actor is the OS user of the process, not whatever USER says.
    env.set_env("USER", "not-me");
    let os_user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    let os_user = String::from_utf8_lossy(&os_user.stdout).trim().to_owned();
    env.write_dag("audited.toml", DAG);
    // (trigger first: it loads the DAG file into the database)
    env.ok(&["dags", "trigger", "audited"]);
    env.ok(&["dags", "pause", "audited"]);
    env.ok(&["dags", "unpause", "audited"]);
    env.ok(&["pools", "set", "etl", "2"]);
    env.ok(&["pools", "set", "etl", "3"]);
    env.ok(&["pools", "delete", "etl"]);
    env.ok(&["users", "create", "bob", "--role", "viewer"]);
    env.ok(&["tokens", "create", "bob", "ci"]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("sqlite://{}", env.path().join("nightshift.db").display());
    let entries = runtime.block_on(async {
        let store = Store::connect(&url).await.expect("connect");
        store
            .list_audit(&AuditFilter::default())
            .await
            .expect("audit")
    });
    let mut actions: Vec<(String, String, Option<String>)> = entries
        .iter()
        .map(|e| (e.actor.clone(), e.action.clone(), e.dag_id.clone()))
        .collect();
    actions.reverse(); // oldest first
    let expected = [
        ("run.trigger", Some("audited")),
        ("dag.pause", Some("audited")),
        ("dag.unpause", Some("audited")),
        ("pool.create", None),
        ("pool.update", None),
        ("pool.delete", None),
        ("user.create", None),
        ("token.create", None),
    ];
    let got: Vec<(&str, Option<&str>)> = actions
        .iter()
        .map(|(_, action, dag)| (action.as_str(), dag.as_deref()))
        .collect();
    assert_eq!(got, expected, "{entries:#?}");
    let actor = format!("cli:{os_user}");
    assert!(
        actions.iter().all(|(who, _, _)| *who == actor),
        "{actor}: {entries:#?}"
    );
    // The trigger names its run.
    let trigger = entries
        .iter()
        .find(|e| e.action == "run.trigger")
        .expect("trigger entry");
    assert!(
        trigger
            .run_id
            .as_deref()
            .is_some_and(|r| r.starts_with("manual__")),
        "{trigger:?}"
    );
}

/// `db migrate` twice on PostgreSQL (the second run's `CREATE TABLE IF NOT EXISTS`
/// raises the notice): silent at INFO, shown at DEBUG; never with colour codes on a pipe.
#[test]
fn migration_notice_only_at_debug_and_no_colour_on_a_pipe() {
    let mut env = Env::new(Backend::Postgres);
    env.ok(&["db", "migrate"]);
    let notice = "_sqlx_migrations\" already exists";
    env.set_env("NIGHTSHIFT_LOG_LEVEL", "info");
    let info = env.run(&["db", "migrate"], Duration::from_secs(60));
    let info_err = String::from_utf8_lossy(&info.stderr);
    assert!(info.status.success(), "{info_err}");
    assert!(!info_err.contains(notice), "at INFO:\n{info_err}");
    env.set_env("NIGHTSHIFT_LOG_LEVEL", "debug");
    let debug = env.run(&["db", "migrate"], Duration::from_secs(60));
    let debug_err = String::from_utf8_lossy(&debug.stderr);
    assert!(debug.status.success(), "{debug_err}");
    assert!(debug_err.contains(notice), "at DEBUG:\n{debug_err}");
    assert!(
        !debug_err.contains('\u{1b}'),
        "colour codes on a pipe:\n{debug_err}"
    );
}

/// Waits until `count(logs)` reaches `want` (or 20 s pass) and returns the last count.
fn wait_for(env: &Env, want: usize, count: impl Fn(&str) -> usize) -> usize {
    let started = std::time::Instant::now();
    loop {
        let n = count(&env.logs());
        if n >= want || started.elapsed() > Duration::from_secs(20) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A broken DAG file is warned about once, and again only when its error changes: the
/// folder syncs after every change in it (here: a good file rewritten four times), and
/// those passes stay quiet about the unchanged broken file.
#[test]
fn a_broken_dag_file_is_reported_when_it_changes_not_every_pass() {
    let mut env = Env::new(Backend::Sqlite);
    env.write_dag("good.toml", DAG);
    env.write_dag("broken.toml", "[tasks.a]\ntype = \"nope\"\n");
    env.spawn(&["scheduler"]);
    let warned = |logs: &str| logs.matches("DAG file not loaded").count();
    assert_eq!(wait_for(&env, 1, warned), 1, "{}", env.logs());
    for i in 0..4 {
        env.write_dag("good.toml", &format!("description = \"pass {i}\"\n{DAG}"));
        // Give each change its own sync pass (the watcher settles for 300 ms).
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(warned(&env.logs()), 1, "{}", env.logs());
    // A different error is news.
    env.write_dag(
        "broken.toml",
        "[tasks.a]\ntype = \"noop\"\ndepends_on = [\"zz\"]\n",
    );
    assert_eq!(wait_for(&env, 2, warned), 2, "{}", env.logs());
    // Fixed: said once at INFO.
    env.write_dag("broken.toml", "[tasks.a]\ntype = \"noop\"\n");
    let fixed = |logs: &str| logs.matches("DAG file no longer has an error").count();
    assert_eq!(wait_for(&env, 1, fixed), 1, "{}", env.logs());
    assert_eq!(warned(&env.logs()), 2, "{}", env.logs());
}

/// `dags trigger --wait` says it is waiting before anything else, prints a progress line
/// (tasks done/total) while a long run goes, then the result.
#[test]
fn trigger_wait_prints_progress_in_order() {
    let mut env = Env::new(Backend::Sqlite);
    env.write_dag(
        "slow.toml",
        "[tasks.first]\ntype = \"command\"\ncommand = \"echo first\"\n\
         [tasks.slow]\ntype = \"command\"\ncommand = \"sleep 7\"\ndepends_on = [\"first\"]\n",
    );
    env.spawn(&["scheduler"]);
    env.spawn(&["worker"]);
    let out = env.run(
        &["dags", "trigger", "slow", "--wait"],
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", env.logs());
    let lines: Vec<&str> = stderr.lines().collect();
    let waiting = lines
        .iter()
        .position(|l| l.starts_with("triggered ") && l.contains("waiting"))
        .unwrap_or_else(|| panic!("no waiting line:\n{stderr}"));
    let progress = lines
        .iter()
        .position(|l| l.contains("/2 tasks done"))
        .unwrap_or_else(|| panic!("no progress line:\n{stderr}"));
    let result = lines
        .iter()
        .position(|l| l.ends_with(" success") && l.starts_with("run "))
        .unwrap_or_else(|| panic!("no result line:\n{stderr}"));
    assert!(waiting < progress && progress < result, "{stderr}");
    assert!(stdout.contains("slow"), "the result table:\n{stdout}");
}
