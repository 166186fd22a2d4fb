//! Test harness for end-to-end tests: runs the real `nightshift` binary against a fresh
//! SQLite file or a fresh PostgreSQL database, with its own DAG folder.

#![allow(dead_code)]

pub mod examples;
pub mod pg_server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One isolated nightshift installation: a temp dir with a DAG folder and a database.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub backend: Backend,
    extra_env: Vec<(String, String)>,
    children: Vec<Child>,
    /// How many roles were spawned (numbers their log files).
    spawned: usize,
    /// Whether the database is ours to drop from `DATABASE_URL`'s server.
    drop_database: bool,
}

/// A fresh PostgreSQL database on the server `DATABASE_URL` names.
fn fresh_pg_database() -> String {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("ns_e2e_{}_{}", std::process::id(), rand_suffix());
    let status = Command::new("psql")
        .args([&admin, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .stdout(Stdio::null())
        .status()
        .expect("psql must be installed to create test databases");
    assert!(status.success(), "creating database {name}");
    match admin.rfind('/') {
        Some(slash) => format!("{}/{name}", &admin[..slash]),
        None => panic!("DATABASE_URL {admin:?} has no database part"),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Env {
    pub fn new(backend: Backend) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("dags")).expect("dags dir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("nightshift.db").display()),
            Backend::Postgres => fresh_pg_database(),
        };
        Env {
            dir,
            database_url,
            backend,
            extra_env: vec![("NIGHTSHIFT_DAGS_PAUSED_AT_CREATION".into(), "false".into())],
            children: Vec::new(),
            spawned: 0,
            drop_database: backend == Backend::Postgres,
        }
    }

    /// An installation on a database the caller owns (e.g. on a private [`pg_server`]).
    pub fn on_database(database_url: String) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("dags")).expect("dags dir");
        Env {
            dir,
            database_url,
            backend: Backend::Postgres,
            extra_env: vec![("NIGHTSHIFT_DAGS_PAUSED_AT_CREATION".into(), "false".into())],
            children: Vec::new(),
            spawned: 0,
            drop_database: false,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dags(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    /// Writes a DAG file into the DAG folder.
    pub fn write_dag(&self, name: &str, source: &str) {
        std::fs::write(self.dags().join(name), source).expect("write DAG");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightshift"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("NIGHTSHIFT_DATABASE_URL", &self.database_url)
            .env("NIGHTSHIFT_DAGS_FOLDER", self.dags())
            .env("NIGHTSHIFT_LOG_LEVEL", "warn")
            .env_remove("NIGHTSHIFT_BIND");
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs a command to completion with a time limit. Its output is read while it runs,
    /// so a chatty command never blocks on a full pipe.
    pub fn run(&self, args: &[&str], limit: Duration) -> Output {
        use std::io::Read;
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nightshift");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`nightshift {}` did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}\nlogs:\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                    String::from_utf8_lossy(&stderr.join().unwrap_or_default()),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// Runs a command that must succeed within two minutes and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_within(args, Duration::from_secs(120))
    }

    /// Runs a command that must succeed within `limit` and returns its stdout; a failure
    /// shows the logs of the spawned roles as well.
    pub fn ok_within(&self, args: &[&str], limit: Duration) -> String {
        let out = self.run(args, limit);
        assert!(
            out.status.success(),
            "`nightshift {}` failed ({})\nstdout:\n{}\nstderr:\n{}\nlogs:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command with `--output json` appended and parses its stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Starts a long-running role (`scheduler`, `worker`, …); it is killed when the Env drops.
    pub fn spawn(&mut self, args: &[&str]) -> u32 {
        let log = std::fs::File::create(
            self.path()
                .join(format!("{}-{}.log", args[0], self.spawned)),
        )
        .expect("log file");
        let child = self
            .command(args)
            .env("NIGHTSHIFT_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nightshift");
        let pid = child.id();
        self.spawned += 1;
        self.children.push(child);
        pid
    }

    /// Sends SIGTERM to a child started with [`Env::spawn`] and waits for it to exit.
    pub fn terminate(&mut self, pid: u32) -> Option<ExitStatus> {
        let at = self.children.iter().position(|c| c.id() == pid)?;
        let mut child = self.children.swap_remove(at);
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        child.wait().ok()
    }

    /// Children started with [`Env::spawn`] that exited on their own since the last call
    /// (killed ones are waited for by [`Env::kill`] and never show up here).
    pub fn exited(&mut self) -> Vec<(u32, ExitStatus)> {
        let mut exited = Vec::new();
        self.children.retain_mut(|child| match child.try_wait() {
            Ok(Some(status)) => {
                exited.push((child.id(), status));
                false
            }
            _ => true,
        });
        exited
    }

    /// Sends SIGKILL to a child started with [`Env::spawn`].
    pub fn kill(&mut self, pid: u32) {
        if let Some(at) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.swap_remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The stderr logs of every spawned role, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    all.push_str(&format!("--- {}\n", path.display()));
                    all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        all
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.drop_database {
            let admin = std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
            if let Some(name) = self.database_url.rsplit('/').next() {
                let _ = Command::new("psql")
                    .args([
                        &admin,
                        "-q",
                        "-c",
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Runs `command` (the binary, or a helper such as `psql`), which must succeed, and
/// returns its stdout; a failure shows both of its outputs.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates a `#[test]` per backend from one body `fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::common::Backend::Sqlite) })*
        }
        mod pg {
            $(#[test] fn $name() { super::$name($crate::common::Backend::Postgres) })*
        }
    };
}
