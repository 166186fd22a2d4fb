//! `moto_server`, the ECS, Athena and Redshift Data API emulator the `ecs`, `athena` and
//! `redshift` kinds are tested against (extended by `worker/tests/moto/moto_ext.py` with
//! exit codes, stop codes and awslogs lines, and by `warehouse_ext.py` with failing,
//! running and cancelled queries), on a free port with the fixtures of
//! `worker/tests/moto/setup.py`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `moto_server`, killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The subnet and security group `setup.py` created (Fargate's `awsvpc` needs them).
    pub subnet: String,
    pub security_group: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The python of the moto virtualenv; `scripts/ensure-moto.sh` installs it when it is
/// missing, once per test process.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = root().join("scripts/ensure-moto.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

impl Moto {
    /// Starts `moto_server` and creates the fixtures (cluster `nightly`, task definition
    /// `nightly-extract`, log group `/ecs/nightly`, a subnet and a security group). Blocks
    /// while it starts; from async code, call it through `spawn_blocking`.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(python())
            .arg(root().join("worker/tests/moto/moto_ext.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            subnet: String::new(),
            security_group: String::new(),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let setup = root().join("worker/tests/moto/setup.py");
        let fixtures: Value = moto.python_json(&[&setup.display().to_string(), &moto.endpoint]);
        moto.subnet = fixtures["subnet"].as_str().expect("subnet").to_owned();
        moto.security_group = fixtures["security_group"]
            .as_str()
            .expect("security group")
            .to_owned();
        moto
    }

    /// [`Moto::start`] from async code.
    pub async fn start_async() -> Moto {
        tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("moto setup")
    }

    /// Runs the virtualenv's python with `args` (a script and its arguments, or `-c`
    /// and code), which must succeed.
    pub fn python(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(python())
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("python {args:?}: {e}"));
        assert!(out.status.success(), "python {args:?} failed");
        out.stdout
    }

    /// [`Moto::python`], whose output is JSON.
    pub fn python_json(&self, args: &[&str]) -> Value {
        let out = self.python(args);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "python {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// The environment that points the AWS SDK at this emulator, with ECS, Athena and
    /// Redshift polling fast enough for tests.
    pub fn env(&self) -> BTreeMap<String, String> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("NIGHTSHIFT_ECS_POLL_INTERVAL", "100ms"),
            ("NIGHTSHIFT_ECS_POLL_MAX", "300ms"),
            ("NIGHTSHIFT_ATHENA_POLL_INTERVAL", "100ms"),
            ("NIGHTSHIFT_ATHENA_POLL_MAX", "300ms"),
            ("NIGHTSHIFT_REDSHIFT_POLL_INTERVAL", "100ms"),
            ("NIGHTSHIFT_REDSHIFT_POLL_MAX", "300ms"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
