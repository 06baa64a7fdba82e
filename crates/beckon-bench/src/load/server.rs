//! The servers under load, as processes of their own: `beckon serve` (the release binary,
//! built here if asked) on a fresh data folder, and the bare endpoint (this binary again,
//! with `--bare-server`). Each is its own process so that its CPU time and memory can be
//! read from `/proc` apart from the generator's.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::http::{self, Connection};
use super::{ORIGIN, SITE};

/// The longest a server may take to answer `/readyz` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a server may take to drain and exit after `SIGTERM`.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process this program started.
pub struct Process {
    /// `beckon` or `bare`.
    pub name: &'static str,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Option<PathBuf>,
    /// The data folder and configuration, removed when the process is dropped.
    _dir: Option<tempfile::TempDir>,
}

/// How to start `beckon serve`.
#[derive(Clone, Debug)]
pub struct BeckonSetup {
    /// The `beckon` binary.
    pub binary: PathBuf,
    /// A rule file for the site, imported at start.
    pub rules: Option<PathBuf>,
    /// Connections the server must accept at once (written as `max_connections` where the
    /// binary has that setting).
    pub max_connections: usize,
    /// Where the temporary data folder goes (the system's temporary folder by default).
    pub data_parent: Option<PathBuf>,
}

/// A started `beckon serve`, and what its configuration said about limits.
pub struct Beckon {
    /// The process.
    pub process: Process,
    /// The `[limits]` settings written, as `key = value` lines; empty when the binary has no
    /// `[limits]` table.
    pub limits: Vec<String>,
    /// The binary's `--version`.
    pub version: String,
}

impl Process {
    /// Asks the process to stop (`SIGTERM`), waits for it, and kills it if it will not.
    pub async fn stop(mut self) -> Result<(), String> {
        if super::proc::terminate(self.pid).is_ok() {
            if let Ok(status) = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
                return match status {
                    Ok(s) if s.success() || s.code().is_none() => Ok(()),
                    Ok(s) => Err(format!("{} exited with {s}{}", self.name, self.log_tail())),
                    Err(e) => Err(e.to_string()),
                };
            }
        }
        let _ = self.child.kill().await;
        Err(format!(
            "{} did not stop within {STOP_TIMEOUT:?}; killed",
            self.name
        ))
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let Some(text) = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "\n--- last lines of its log ---\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }
}

/// Builds `beckon` in release next to this binary (the same target folder), unless
/// `explicit` names a binary; returns its path.
pub fn locate_beckon(explicit: Option<&Path>, build: bool) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("{} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("this binary has no folder")?;
    if dir.file_name().is_some_and(|n| n != "release") {
        eprintln!(
            "load-report: warning: this is not a release build; the generator itself will be slow"
        );
    }
    let target = dir.parent().ok_or("this binary's folder has no parent")?;
    let binary = target.join("release").join("beckon");
    if build {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "load-report: building beckon (release) in {}",
            target.display()
        );
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "beckon",
                "--bin",
                "beckon",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of beckon failed ({status})"));
        }
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "no beckon binary at {} (build it, or pass --beckon PATH)",
            binary.display()
        ))
    }
}

/// Starts `beckon serve` on a free loopback port, with a fresh data folder and one site
/// ([`SITE`], allowing [`ORIGIN`]) whose rate limits are off where the binary has them.
pub async fn start_beckon(setup: &BeckonSetup) -> Result<Beckon, String> {
    start_node(setup, None).await
}

/// A node of a cluster: the PostgreSQL database's URL and the node's name.
#[derive(Clone, Debug)]
pub struct Node {
    /// The database all nodes share.
    pub database: String,
    /// The Redis all nodes share.
    pub redis: String,
    /// This node's name.
    pub name: String,
}

/// Starts `beckon serve` as one node of a cluster on `node.database` (lease 5 s, heartbeat
/// 1 s, its address its own listener).
pub async fn start_cluster_node(setup: &BeckonSetup, node: &Node) -> Result<Beckon, String> {
    start_node(setup, Some(node)).await
}

async fn start_node(setup: &BeckonSetup, node: Option<&Node>) -> Result<Beckon, String> {
    let defaults = output(&setup.binary, &["default-config"]).await?;
    let version = output(&setup.binary, &["--version"])
        .await?
        .trim()
        .to_owned();
    let limits = limit_lines(&defaults, setup.max_connections);
    let dir = match &setup.data_parent {
        Some(parent) => tempfile::Builder::new()
            .prefix("beckon-load")
            .tempdir_in(parent),
        None => tempfile::Builder::new().prefix("beckon-load").tempdir(),
    }
    .map_err(|e| format!("cannot create a data folder: {e}"))?;
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("beckon.toml");
    let mut text = config_text(
        addr,
        &dir.path().join("data"),
        setup.rules.as_deref(),
        &limits,
    );
    if let Some(node) = node {
        text = format!(
            "database = {}\n{text}\n[cluster]\nname = {}\naddress = {}\nredis = {}\n",
            toml_string(&node.database),
            toml_string(&node.name),
            toml_string(&addr.to_string()),
            toml_string(&node.redis),
        );
    }
    std::fs::write(&config, text).map_err(|e| format!("cannot write the configuration: {e}"))?;
    let log = dir.path().join("beckon.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(&setup.binary)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", setup.binary.display()))?;
    let mut process = Process {
        name: "beckon",
        pid: child.id().ok_or("beckon exited at once")?,
        addr,
        child,
        log: Some(log),
        _dir: Some(dir),
    };
    wait_ready(&mut process).await?;
    Ok(Beckon {
        process,
        limits,
        version,
    })
}

/// Starts the bare endpoint: `exe --bare-server`, which prints the address it listens on.
pub async fn start_bare(exe: &Path) -> Result<Process, String> {
    let mut child = Command::new(exe)
        .args([
            "--bare-server",
            "--listen",
            "127.0.0.1:0",
            "--site",
            SITE,
            "--origin",
            ORIGIN,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the bare endpoint: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| "the bare endpoint did not say where it listens")?
        .map_err(|e| e.to_string())?
        .ok_or("the bare endpoint exited at once")?;
    let addr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or(format!(
            "unexpected first line from the bare endpoint: {line:?}"
        ))?;
    let mut process = Process {
        name: "bare",
        pid: child.id().ok_or("the bare endpoint exited at once")?,
        addr,
        child,
        log: None,
        _dir: None,
    };
    wait_ready(&mut process).await?;
    Ok(process)
}

/// The configuration of the benchmark's server.
pub fn config_text(
    addr: SocketAddr,
    data: &Path,
    rules: Option<&Path>,
    limits: &[String],
) -> String {
    let mut text = format!(
        "# Written by load-report.\nlisten = {}\ndata = {}\nshards = 0\n",
        toml_string(&addr.to_string()),
        toml_string(&data.to_string_lossy()),
    );
    if !limits.is_empty() {
        text.push_str("\n[limits]\n");
        for line in limits {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "\n[[sites]]\nid = {}\nsecret = \"sk_load_benchmark\"\norigins = [{}]\n",
        toml_string(SITE),
        toml_string(ORIGIN)
    ));
    if let Some(rules) = rules {
        text.push_str(&format!(
            "rules = {}\n",
            toml_string(&rules.to_string_lossy())
        ));
    }
    text
}

/// The `[limits]` settings that turn rate limits off and admit `max_connections`, each only
/// if the binary's `default-config` names it: a binary from before `[limits]` refuses
/// unknown settings.
pub fn limit_lines(default_config: &str, max_connections: usize) -> Vec<String> {
    if !default_config.contains("[limits]") {
        return Vec::new();
    }
    let knows = |key: &str| {
        default_config.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ', '\t']);
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    [
        ("per_ip_per_second", "0".to_owned()),
        ("per_site_per_second", "0".to_owned()),
        ("max_connections", max_connections.to_string()),
    ]
    .into_iter()
    .filter(|(key, _)| knows(key))
    .map(|(key, value)| format!("{key} = {value}"))
    .collect()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Polls `GET /readyz` until it answers 200.
async fn wait_ready(process: &mut Process) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if !process.is_running() {
            return Err(format!(
                "{} exited while starting{}",
                process.name,
                process.log_tail()
            ));
        }
        if let Ok(mut c) = Connection::open(process.addr).await {
            if let Ok(answer) = c.send(&http::get(process.addr, "/readyz")).await {
                if answer.status == 200 {
                    return Ok(());
                }
            }
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{} was not ready within {START_TIMEOUT:?}{}",
                process.name,
                process.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn output(binary: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_written_only_where_the_binary_has_them() {
        assert!(limit_lines("listen = \"x\"\n", 100).is_empty());
        let new = "[limits]\n# per_ip_per_second = 20\nper_site_per_second = 5000\nmax_connections = 16384\n";
        assert_eq!(
            limit_lines(new, 120_000),
            [
                "per_ip_per_second = 0",
                "per_site_per_second = 0",
                "max_connections = 120000"
            ]
        );
        let partial = "[limits]\nper_ip_per_second = 20\n";
        assert_eq!(limit_lines(partial, 1), ["per_ip_per_second = 0"]);
    }

    #[test]
    fn the_configuration_is_toml_with_one_site() {
        let text = config_text(
            "127.0.0.1:9".parse().unwrap(),
            Path::new("/tmp/a \"b\""),
            Some(Path::new("/r.toml")),
            &["per_ip_per_second = 0".to_owned()],
        );
        assert!(text.contains("data = \"/tmp/a \\\"b\\\"\""), "{text}");
        assert!(text.contains("[limits]\nper_ip_per_second = 0\n"), "{text}");
        assert!(text.contains("origins = [\"http://load.test\"]"), "{text}");
    }
}
