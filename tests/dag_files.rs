//! End-to-end tests of hostile DAG folders against the real binary: `sql_file` pointing at
//! `/proc/self/environ`, `../../etc/passwd`, a FIFO, a symlink out of the folder or a
//! 100 MiB file is a clear load error, nothing from outside the folder reaches the store,
//! and `/health` keeps answering quickly while such a folder loads; `dags validate` runs
//! the same checks (a missing `sql_file` is an error, not "ok").

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, Env};

/// In the server's environment, so `/proc/self/environ` would show it.
const ENV_SECRET: &str = "e2e-environ-secret-4f9a";
/// In a file outside the DAG folder.
const FILE_SECRET: &str = "e2e-file-secret-77c1";

fn sql_dag(sql_file: &str) -> String {
    format!("[tasks.t]\ntype = \"sql\"\nconnection = \"wh\"\nsql_file = {sql_file:?}\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `GET /health`: its status line and how long the whole answer took, or `None` when
/// nothing listens yet.
fn health(port: u16) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply.lines().next().unwrap_or_default().to_owned();
    Some((status, started.elapsed()))
}

/// A DAG folder with one DAG per hostile `sql_file` and one good DAG; returns the bad
/// file names.
fn hostile_folder(env: &Env, outside: &Path) -> Vec<&'static str> {
    let dags = env.dags();
    let secret = outside.join("secret.sql");
    std::fs::write(&secret, FILE_SECRET).expect("write secret");
    env.write_dag("environ.toml", &sql_dag("/proc/self/environ"));
    // Enough `..` to reach `/` from any temp folder, then /etc/passwd.
    env.write_dag(
        "passwd.toml",
        &sql_dag(&format!("{}etc/passwd", "../".repeat(32))),
    );
    env.write_dag("traversal.toml", &sql_dag("../../etc/passwd"));
    std::os::unix::fs::symlink(&secret, dags.join("link.sql")).expect("symlink");
    env.write_dag("link.toml", &sql_dag("link.sql"));
    let made = std::process::Command::new("mkfifo")
        .arg(dags.join("fifo.sql"))
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo");
    env.write_dag("fifo.toml", &sql_dag("fifo.sql"));
    let huge = std::fs::File::create(dags.join("huge.sql")).expect("create");
    huge.set_len(100 * 1024 * 1024).expect("sparse 100 MiB");
    env.write_dag("huge.toml", &sql_dag("huge.sql"));
    std::fs::create_dir_all(dags.join("sql")).expect("mkdir");
    std::fs::write(dags.join("sql/ok.sql"), "SELECT 1").expect("write");
    env.write_dag("good.toml", &sql_dag("sql/ok.sql"));
    vec![
        "environ.toml",
        "passwd.toml",
        "traversal.toml",
        "link.toml",
        "fifo.toml",
        "huge.toml",
    ]
}

fn health_stays_fast_while_hostile_sql_files_load(backend: Backend) {
    let mut env = Env::new(backend);
    env.set_env("E2E_SECRET", ENV_SECRET);
    let outside = tempfile::tempdir().expect("temp dir");
    let bad = hostile_folder(&env, outside.path());
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    env.spawn(&["standalone", "--bind", &bind]);

    // Poll /health from the start: through the first load and the reloads below.
    let started = Instant::now();
    let mut answered = Vec::new();
    let mut import_errors = Vec::new();
    let mut touched = false;
    while started.elapsed() < Duration::from_secs(90) {
        if let Some((status, took)) = health(port) {
            answered.push((status, took));
        }
        if !touched && answered.len() > 5 {
            // A change makes the loader read the folder again while we keep asking.
            env.write_dag("later.toml", &sql_dag("fifo.sql"));
            touched = true;
        }
        if touched && answered.len() > 60 {
            import_errors = stored_import_errors(&env);
            if import_errors.len() > bad.len() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        answered.len() > 60,
        "/health answered {} times in 90 s\n{}",
        answered.len(),
        env.logs()
    );
    // The first answer warms the server up (its first database connection); every later
    // one must be quick, the loader's reads never holding up the runtime.
    let slowest = answered[1..]
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} /health answers; the first took {:?}, the slowest after it {slowest:?}",
        answered.len(),
        answered[0].1
    );
    for (status, _) in &answered {
        assert!(status.contains(" 200"), "{status}");
    }
    assert!(
        slowest < Duration::from_millis(100),
        "/health took {slowest:?} while the DAG folder loaded"
    );

    // Every hostile file is an import error naming file, line and field; the FIFO twice.
    let dags = env.dags();
    for name in bad.iter().chain(["later.toml"].iter()) {
        let file = dags.join(name).display().to_string();
        let message = import_errors
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, m)| m.as_str())
            .unwrap_or_else(|| panic!("no import error for {name}: {import_errors:#?}"));
        assert!(
            message.starts_with(&format!(
                "{file}:4:12: tasks.t.sql_file: cannot read sql_file"
            )),
            "{message}"
        );
    }
    let all: String = import_errors.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        !all.contains(ENV_SECRET) && !all.contains(FILE_SECRET),
        "{all}"
    );

    // The good DAG loaded with its SQL; no definition holds anything from outside.
    let definitions = stored_definitions(&env);
    assert_eq!(
        definitions
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    for (id, definition) in &definitions {
        assert!(definition.contains("SELECT 1"), "{id}: {definition}");
        for leak in [ENV_SECRET, FILE_SECRET, "root:x:0:0"] {
            assert!(!definition.contains(leak), "{id} holds {leak:?}");
        }
    }
}

/// The import errors the running scheduler stored, as (file, message).
fn stored_import_errors(env: &Env) -> Vec<(String, String)> {
    with_store(env, |store| async move {
        store
            .list_import_errors()
            .await
            .expect("import errors")
            .into_iter()
            .map(|e| (e.file_path, e.message))
            .collect()
    })
}

/// Every stored DAG's id and definition JSON.
fn stored_definitions(env: &Env) -> Vec<(String, String)> {
    with_store(env, |store| async move {
        store
            .list_dags(&nightshift_store::DagFilter::default())
            .await
            .expect("dags")
            .into_iter()
            .map(|d| (d.dag_id, d.definition.to_string()))
            .collect()
    })
}

fn with_store<T, F: std::future::Future<Output = T>>(
    env: &Env,
    body: impl FnOnce(nightshift_store::Store) -> F,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = nightshift_store::Store::connect(&env.database_url)
            .await
            .expect("store");
        let out = body(store.clone()).await;
        store.close().await;
        out
    })
}

fn validate_checks_sql_files(backend: Backend) {
    let env = Env::new(backend);
    let outside = tempfile::tempdir().expect("temp dir");
    let bad = hostile_folder(&env, outside.path());
    env.write_dag("missing.toml", &sql_dag("sql/nope.sql"));
    let out = env.run(&["dags", "validate"], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for name in bad.iter().chain(["missing.toml"].iter()) {
        assert!(
            stdout.contains(&format!(
                "error  {}:4:12: tasks.t.sql_file",
                env.dags().join(name).display()
            )),
            "{name}: {stdout}"
        );
    }
    assert!(stdout.contains("does not exist"), "{stdout}");
    assert!(stdout.contains("ok     good (1 tasks)"), "{stdout}");
    assert!(!stdout.contains(FILE_SECRET), "{stdout}");

    // A bare file name (its folder is the working directory) works too.
    common::stdout_of(
        env.command(&["dags", "validate", "good.toml"])
            .current_dir(env.dags()),
    );

    // Naming one file inside the DAG folder holds it to that folder.
    let nested = env.dags().join("nested");
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::write(nested.join("up.toml"), sql_dag("../sql/ok.sql")).expect("write");
    let file = nested.join("up.toml").display().to_string();
    let out = env.run(&["dags", "validate", &file], Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

both_backends!(
    health_stays_fast_while_hostile_sql_files_load,
    validate_checks_sql_files,
);
