//! A real `nats-server` with JetStream for the services' tests: on a free 127.0.0.1
//! port, its store in a folder the test owns, killed with SIGKILL by its pid and
//! restarted on the same port and store as a crashed broker would be.
//!
//! Shared by the services' broker tests (`services/*/tests/*.rs` include it with
//! `#[path]`). Where `nats-server` is not installed, [`NatsServer::available`] says so
//! and the test skips; under `GAUNTLET_REQUIRE_NATS=1` (CI, which installs it) it fails.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server -js` child process.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// Whether `nats-server` can be run; prints why a test skips when not, and panics
    /// when it is required (`GAUNTLET_REQUIRE_NATS=1`).
    pub fn available() -> bool {
        let found = Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            let required = std::env::var("GAUNTLET_REQUIRE_NATS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "GAUNTLET_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)"
            );
            eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
        }
        found
    }

    /// Starts a broker on a free port with its store under `dir`, and waits (at most
    /// 10 s) until it accepts connections.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let mut s = Self { child: None, port, store: dir.join("jetstream"), log: dir.join("nats.log") };
        s.restart();
        s
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the broker with SIGKILL (by its pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and store, and waits until it is up.
    pub fn restart(&mut self) {
        self.kill();
        std::fs::create_dir_all(&self.store).unwrap();
        let log = std::fs::File::options().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("nats-server")
            .args(["--jetstream", "--addr", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--store_dir")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited at start-up ({status}); its log:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "nats-server not up within 10 s; its log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free now, from below the ephemeral range (so a `bind(:0)` elsewhere cannot take
/// it before the broker binds it); successive calls in one process never repeat, so tests
/// running side by side do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 21_000 + (std::process::id() % 1_000) as u16 * 8;
    for _ in 0..1_000 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 8_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found from {base}")
}
