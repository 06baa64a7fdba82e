//! The harness of the tests that run the real `beckon serve` process: a configuration file
//! written for the test, the process itself (started, killed, stopped, its memory read from
//! `/proc`), HTTP clients bound to one loopback address each (the per-address limit sees
//! them as different clients), and a WebSocket client written by hand over a TCP socket, for
//! what a real client library would not do: send a frame that is not UTF-8 or over the limit,
//! or cost next to nothing while thousands of sockets sit idle.
//!
//! A cluster's node is configured by [`write_cluster_config`], on a port picked beforehand
//! ([`free_addrs`]) since its address is written into its configuration. [`visitors`] holds
//! the clients that browse as the widget does and the checks over the log afterwards.
//!
//! Nothing a test starts outlives it, pass or fail: [`Beckon`] kills its process when dropped.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod chat;
pub mod nodes;
pub mod stale;
pub mod visitors;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// The longest a test waits for something the server should do on its own (start, answer,
/// exit). A bound, not a pause: waits end as soon as the thing happens.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// The origin the test site allows.
pub const ORIGIN: &str = "https://shop.example";
/// A real desktop Chrome on Windows: what a person's browser sends.
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// The site every test here serves.
pub const SITE: &str = "shop";

/// A rule that fires when the cart holds items and the visitor shows exit intent, with no
/// repeat cycle: only a guardrail can keep it from firing again.
pub const CART_EXIT_RULE: &str = r#"[[rules]]
id = "cart-exit"
name = "cart-exit"
status = "live"
priority = 100
when = { all = [ { var = "cart.items", op = "gt", value = 0 }, { var = "behaviour.exit_intent", op = "equals", value = true } ] }
message = { type = "text", text = "Before you go: your cart is saved." }
"#;

/// Writes `beckon.toml` (and the rule file it names) into `dir`: one site, [`SITE`], with
/// `policy` as its `[sites.policy]` lines and `limits` as the `[limits]` table's lines (empty:
/// no table, every default). The database goes in `dir/data`.
pub fn write_config(dir: &Path, policy: &str, limits: &str) -> PathBuf {
    write_config_with(dir, policy, limits, CART_EXIT_RULE)
}

/// [`write_config`] with `rules` as the site's rule file.
pub fn write_config_with(dir: &Path, policy: &str, limits: &str, rules_text: &str) -> PathBuf {
    let sites = sites_table(dir, policy, rules_text);
    let config = dir.join("beckon.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
data = {data:?}
shards = 2

{limits}
{sites}"#,
            data = data_dir(dir).to_str().expect("a UTF-8 path"),
            limits = limits_table(limits),
        ),
    )
    .expect("configuration written");
    config
}

/// A cluster node's part of its configuration: its name, the address it listens on (and at
/// which the other nodes reach it), and the timing of its lease.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The node's name, unique among the live nodes.
    pub name: String,
    /// Where it listens; also its address in the cluster.
    pub addr: SocketAddr,
    /// How long its lease lasts without renewal.
    pub lease: Duration,
    /// How often it renews the lease and reads the live nodes.
    pub heartbeat: Duration,
}

/// Writes `<name>.toml` (and the rule file it names, shared by every node) into `dir`: the
/// node `node` of a cluster on the PostgreSQL `database`, listening on `node.addr` (which is
/// also its address in the cluster), serving [`SITE`] with `policy` and `limits` as in
/// [`write_config`].
///
/// The nodes share the Redis of `BECKON_TEST_REDIS` (default `redis://127.0.0.1:6379`); each
/// test's nodes talk on a channel of their own (named from their database's key).
pub fn write_cluster_config(
    dir: &Path,
    node: &NodeSettings,
    database: &str,
    policy: &str,
    limits: &str,
) -> PathBuf {
    let sites = sites_table(dir, policy, CART_EXIT_RULE);
    let config = dir.join(format!("{}.toml", node.name));
    std::fs::write(
        &config,
        format!(
            r#"listen = "{addr}"
database = {database:?}
shards = 2

{limits}
[cluster]
name = {name:?}
address = "{addr}"
lease = "{lease}ms"
heartbeat = "{heartbeat}ms"
redis = {redis:?}

{sites}"#,
            redis = redis_url(),
            addr = node.addr,
            name = node.name,
            lease = node.lease.as_millis(),
            heartbeat = node.heartbeat.as_millis(),
            limits = limits_table(limits),
        ),
    )
    .expect("configuration written");
    config
}

/// `n` distinct loopback addresses, each with a port free a moment ago (bound, read, let go;
/// all held until every one is read, so no two are the same), for servers whose
/// configurations must name their addresses before they start.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address"))
        .collect()
}

/// The `[limits]` table of `lines` (none when empty).
fn limits_table(lines: &str) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("[limits]\n{lines}\n")
    }
}

/// Writes the rule file `rules.toml` into `dir` and returns the `[[sites]]` table of [`SITE`]
/// that names it, with `policy` as its `[sites.policy]` lines.
fn sites_table(dir: &Path, policy: &str, rules_text: &str) -> String {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, rules_text).expect("rule file written");
    format!(
        r#"[[sites]]
id = "{SITE}"
secret = "sk_shop_secret"
origins = ["{ORIGIN}"]
rules = {rules:?}

[sites.policy]
{policy}
"#,
        rules = rules.to_str().expect("a UTF-8 path"),
    )
}

/// Where [`write_config`] puts the database.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// A running `beckon serve`. Dropping it kills the process (SIGKILL), so a failing test
/// leaves nothing behind.
pub struct Beckon {
    child: Child,
    /// The address it printed once serving.
    pub addr: SocketAddr,
    /// Its process id, for `/proc`.
    pub pid: u32,
}

impl Beckon {
    /// Starts `beckon serve --config config` and waits until it prints the address it serves
    /// on. Its log goes to the test's stderr at `warn`, so a failure shows the server's side.
    pub async fn start(config: &Path) -> Beckon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beckon"))
            .args(["serve", "--config", config.to_str().expect("a UTF-8 path")])
            .env_remove("BECKON_LISTEN")
            .env_remove("BECKON_DATA")
            .env_remove("BECKON_DATABASE")
            .env_remove("BECKON_SHARDS")
            .env(
                "RUST_LOG",
                "beckon=warn,beckon_server=warn,beckon_cluster=warn",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the beckon binary runs");
        let pid = child.id().expect("a running process");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(addr) = line.strip_prefix("beckon is serving on http://") {
                    return addr.parse::<SocketAddr>().expect("an address");
                }
            }
            panic!("beckon exited before serving");
        })
        .await
        .expect("beckon serves within the bound");
        // Keep reading, so a full pipe never blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Beckon { child, addr, pid }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process at once (SIGKILL: no drain, no flush) and waits until it is gone.
    pub async fn sigkill(mut self) {
        self.child.kill().await.expect("SIGKILL delivered");
    }

    /// Stops the process as an operator does (SIGTERM) and checks that it exits 0 within
    /// `within`.
    pub async fn stop(mut self, within: Duration) {
        let pid = libc::pid_t::try_from(self.pid).expect("a pid");
        // SAFETY: `kill` has no memory effects; the pid is our own child's, not yet reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM delivered");
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("beckon exits within the bound")
            .expect("wait");
        assert!(status.success(), "beckon exited with {status}");
    }

    /// The process's resident memory in KiB (`VmRSS`), or `None` once it has exited.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Raises this process's open-file limit to its hard limit (children inherit it, so the
/// server started afterwards may hold as many sockets as the test); returns the new limit.
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

/// An HTTP client whose connections come from `ip` (any of 127.0.0.0/8 reaches a server on
/// 127.0.0.1), so the per-address limit counts it as a client of its own.
pub fn client_from(ip: &str, pooled: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("an address"))
        .timeout(PATIENCE);
    if !pooled {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("HTTP client")
}

/// An HTTP answer: status, `Retry-After`, the body as text and as JSON (`Null` when it is not
/// JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// Reads a response whole.
    pub async fn of(r: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            retry_after,
            text,
            body,
        })
    }

    /// Whether this is a refusal that keeps the protocol's promise: a JSON body whose `error`
    /// is a non-empty string.
    pub fn is_json_error(&self) -> bool {
        self.body["error"].as_str().is_some_and(|e| !e.is_empty())
    }
}

/// `POST /v1/events?site=SITE` of `body` as desktop Chrome from [`ORIGIN`].
pub async fn post_batch(
    http: &reqwest::Client,
    base: &str,
    body: String,
) -> Result<Reply, reqwest::Error> {
    let r = http
        .post(format!("{base}/v1/events?site={SITE}"))
        .header("content-type", "application/json")
        .header("origin", ORIGIN)
        .header("user-agent", CHROME)
        .body(body)
        .send()
        .await?;
    Reply::of(r).await
}

/// A WebSocket frame from the server.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A frame of another data or control opcode (binary, ping, pong).
    Other(u8),
    /// A close frame and its code (1005 when it carries none).
    Close(u16),
}

/// A client WebSocket over a plain TCP socket: the handshake, masked frames up, frames down.
pub struct RawWs {
    stream: TcpStream,
}

/// What an upgrade got instead of `101 Switching Protocols`.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: u16,
    /// `Retry-After`, when given.
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

/// The opcodes a test sends.
pub const TEXT: u8 = 0x1;
/// A binary frame.
pub const BINARY: u8 = 0x2;
/// A close frame.
pub const CLOSE: u8 = 0x8;

impl RawWs {
    /// Connects from `local` to `server` and asks to upgrade `GET {path}` as desktop Chrome
    /// from [`ORIGIN`]. An answer other than 101 is returned as [`Refused`], its body read.
    pub async fn open(local: IpAddr, server: SocketAddr, path: &str) -> Result<RawWs, Refused> {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind to the local address");
        let mut stream = tokio::time::timeout(PATIENCE, socket.connect(server))
            .await
            .expect("connected within the bound")
            .expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: {ORIGIN}\r\nUser-Agent: {CHROME}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("handshake sent");
        // The head is read byte by byte, so no byte of a first frame is taken with it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
                .await
                .expect("the handshake's answer within the bound")
                .expect("handshake read");
            assert!(n > 0, "the server closed during the handshake");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP status line: {head:?}"));
        if status == 101 {
            return Ok(RawWs { stream });
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let body = match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            Some(len) => {
                let mut body = vec![0u8; len];
                tokio::time::timeout(PATIENCE, stream.read_exact(&mut body))
                    .await
                    .expect("the refusal's body within the bound")
                    .expect("body read");
                String::from_utf8_lossy(&body).into_owned()
            }
            None => {
                // Chunked: the refusal is small; read what comes, then take the chunks' data.
                let mut raw = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        raw.extend_from_slice(&buf[..n]);
                        if raw.ends_with(b"0\r\n\r\n") {
                            break;
                        }
                    }
                })
                .await;
                dechunk(&String::from_utf8_lossy(&raw))
            }
        };
        Err(Refused {
            status,
            retry_after: header("retry-after"),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        })
    }

    /// Sends one masked frame with this opcode and payload.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(0x80 | opcode);
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).await
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send(TEXT, text.as_bytes()).await
    }

    /// The next frame from the server, waiting at most [`PATIENCE`]; `None` if the
    /// connection ended (or nothing came) first.
    pub async fn read(&mut self) -> Option<Frame> {
        tokio::time::timeout(PATIENCE, self.read_frame())
            .await
            .ok()?
            .ok()
    }

    /// The next frame that is not a ping or pong.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.read().await? {
                Frame::Other(0x9 | 0xa) => continue,
                frame => return Some(frame),
            }
        }
    }

    /// The next text frame as JSON; fails the test on anything else.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Some(Frame::Text(t)) => serde_json::from_str(&t).expect("a JSON frame"),
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Reads until the server's close frame and returns its code; fails the test if a text
    /// frame comes first or the socket ends without one.
    pub async fn close_code(&mut self) -> u16 {
        match self.next().await {
            Some(Frame::Close(code)) => {
                // Answer the closing handshake, as a browser would.
                let _ = self.send(CLOSE, &code.to_be_bytes()).await;
                code
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    async fn read_frame(&mut self) -> std::io::Result<Frame> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.stream.read_exact(&mut l).await?;
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                self.stream.read_exact(&mut l).await?;
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        // Frames from a server are never masked.
        let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits")];
        self.stream.read_exact(&mut payload).await?;
        Ok(match head[0] & 0x0f {
            0x1 => Frame::Text(String::from_utf8_lossy(&payload).into_owned()),
            0x8 if payload.len() >= 2 => Frame::Close(u16::from_be_bytes([payload[0], payload[1]])),
            0x8 => Frame::Close(1005),
            op => Frame::Other(op),
        })
    }
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The Redis the tests' nodes share.
pub fn redis_url() -> String {
    std::env::var("BECKON_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl Beckon {
    /// Pauses the process (SIGSTOP), as a long stop of the world or a frozen machine does: it
    /// keeps its sockets, its database connections and its lease's row, and runs nothing until
    /// [`Beckon::sigcont`]. (Dropped meanwhile, it is killed all the same.)
    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP, "SIGSTOP");
    }

    /// Wakes a process [`Beckon::sigstop`] paused (SIGCONT).
    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT, "SIGCONT");
    }

    fn signal(&self, signal: libc::c_int, name: &str) {
        let pid = libc::pid_t::try_from(self.pid).expect("a pid");
        // SAFETY: `kill` has no memory effects; the pid is our own child's, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "{name} delivered");
    }
}
