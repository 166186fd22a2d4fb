//! A private PostgreSQL server for tests that stop and restart the database: its own
//! data directory and port, so restarting it disturbs no other test and no service of
//! the machine. Uses the server binaries of the installed PostgreSQL (Debian's
//! `/usr/lib/postgresql/<version>/bin`, or `pg_ctl` on `PATH`); run as root, the server
//! runs as the `postgres` user, as PostgreSQL refuses to run as root.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PgServer {
    /// Creates a data directory and starts a server on a free port.
    pub fn start() -> PgServer {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("ns-pg-")
            .tempdir()
            .expect("tempdir for PostgreSQL");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL data directory");
        }
        let port = free_port();
        let server = PgServer {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = server.data();
        server.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.ctl("start");
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let status = Command::new("psql")
            .args([
                &self.url("postgres"),
                "-q",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .stdout(Stdio::null())
            .status()
            .expect("psql");
        assert!(status.success(), "CREATE DATABASE {name}");
        self.url(name)
    }

    /// Stops the server the way a crash or `pg_ctlcluster stop --mode fast` would: open
    /// connections are cut.
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) {
        self.ctl("start");
    }

    /// `pg_ctl restart`: what `pg_ctlcluster <version> <cluster> restart` does.
    pub fn restart(&self) {
        self.ctl("restart");
    }

    fn ctl(&self, action: &str) {
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60", "-m", "fast"];
        if action != "stop" {
            args.extend(["-o", &options]);
        }
        args.push(action);
        self.pg("pg_ctl", &args);
    }

    /// One of the server's programs, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        }
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {} failed: {}\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed server's binary directory.
fn server_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    // Elsewhere the server binaries are usually on PATH.
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL server binaries (pg_ctl, initdb) must be installed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
