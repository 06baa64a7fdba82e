//! The outbox's reference peers, as child processes: a webhook receiver that checks every
//! signature with the official Standard Webhooks library for Python, and an SMTP server
//! (aiosmtpd). Both log what they received as JSON lines. Shared by path with the command's
//! tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running peer.
pub struct Peer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../beckon-outbox/tests/peers")
        .canonicalize()
        .expect("the peers' scripts")
}

/// The Python that has the reference libraries: `BECKON_PYTHON` (set by `scripts/test.sh`),
/// else `python3`.
fn python() -> String {
    let python = std::env::var("BECKON_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import standardwebhooks, aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} lacks standardwebhooks or aiosmtpd: run ./scripts/test.sh, which installs \
         them, or set BECKON_PYTHON to a Python that has them"
    );
    python
}

impl Peer {
    fn start(script: &str, args: &[&str]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let log = dir.path().join("log.jsonl");
        let child = Command::new(python())
            .arg(peers_dir().join(script))
            .arg(&port_file)
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the peer");
        let began = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "{script} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Peer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// A webhook receiver that accepts signatures made with any of `secrets`.
    pub fn webhook_receiver(secrets: &[&str]) -> Peer {
        Peer::start("webhook_receiver.py", secrets)
    }

    /// An SMTP server.
    pub fn smtp() -> Peer {
        Peer::start("smtp_sink.py", &[])
    }

    /// The address of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it has received so far.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `done` holds for what it received (at most `within`), and returns that.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let began = Instant::now();
        loop {
            let records = self.records();
            if done(&records) {
                return records;
            }
            assert!(
                began.elapsed() < within,
                "the peer did not get what was expected in {within:?}; it got {} records: {:?}",
                records.len(),
                records.iter().take(5).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
