//! `bqemulator`, the BigQuery REST emulator the `bigquery` kind is tested against, wrapped
//! by `worker/tests/bqemulator/bqemu_ext.py` (submissions and cancels recorded, held,
//! slow and cancelled jobs, 409 on a repeated jobs.insert as BigQuery answers), on free
//! ports with the project `p1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The project the emulator serves.
pub const PROJECT: &str = "p1";

/// A running emulator, killed when dropped.
pub struct BqEmulator {
    child: Child,
    /// `http://127.0.0.1:PORT` (the REST API).
    pub endpoint: String,
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The python of the emulator's virtualenv; `scripts/ensure-bqemulator.sh` installs it
/// when it is missing, once per test process.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = root().join("scripts/ensure-bqemulator.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl BqEmulator {
    /// Starts the emulator and waits until its REST API answers. Blocks; from async
    /// code, call [`BqEmulator::start_async`].
    pub fn start() -> BqEmulator {
        let rest = free_port();
        let grpc = free_port();
        let child = Command::new(python())
            .arg(root().join("worker/tests/bqemulator/bqemu_ext.py"))
            .arg("start")
            .args(["--rest-port", &rest.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--project", PROJECT])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bqemulator");
        let emulator = BqEmulator {
            child,
            endpoint: format!("http://127.0.0.1:{rest}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", rest)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "bqemulator never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emulator
    }

    /// [`BqEmulator::start`] from async code.
    pub async fn start_async() -> BqEmulator {
        tokio::task::spawn_blocking(BqEmulator::start)
            .await
            .expect("bqemulator start")
    }

    /// The URI of a `bigquery` connection to this emulator.
    pub fn connection_uri(&self) -> String {
        format!(
            "bigquery://{PROJECT}?location=US&endpoint={}",
            self.endpoint
        )
    }
}
