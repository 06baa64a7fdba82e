//! `beckon serve` as an operator stops it: SIGTERM (what `docker stop`, systemd and Kubernetes
//! send) or Ctrl-C. The order is stop accepting, let the requests in flight finish, close what
//! is left after `drain_timeout`, stop the shards, flush the writer, exit 0, and every batch
//! that was acknowledged is in the database afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use beckon_engine::SiteId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The longest a test waits for something the server should do on its own. A bound, not a
/// pause: waits end as soon as the thing happens.
const PATIENCE: Duration = Duration::from_secs(20);
const ORIGIN: &str = "https://shop.example";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const DRAIN: Duration = Duration::from_secs(6);

/// Starts `beckon serve` on port 0 over a database in `dir`; returns the process and the
/// address it printed once serving.
async fn serve(dir: &Path) -> (Child, SocketAddr) {
    let config = dir.join("beckon.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
data = {data:?}
shards = 2

[limits]
per_ip_per_second = 0
header_read_timeout = "10m"
drain_timeout = "{drain}s"

[[sites]]
id = "shop"
secret = "sk_shop_secret"
origins = ["{ORIGIN}"]

# The visitors of these tests get ids the server makes at random: none is held out, so a
# test that waits for an intervention never draws the holdout arm (one in ten by default).
[sites.policy]
holdout_percent = 0.0
"#,
            data = dir.join("data").to_str().unwrap(),
            drain = DRAIN.as_secs(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("BECKON_LISTEN")
        .env_remove("BECKON_DATA")
        .env_remove("BECKON_SHARDS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the beckon binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

async fn exits_cleanly(child: &mut Child, within: Duration) {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("beckon exits within the bound")
        .expect("wait");
    assert!(status.success(), "beckon exited with {status}");
}

/// Connects until the server refuses: it has stopped accepting.
async fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "beckon still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A batch whose head is sent and read by the server (it answered `100 Continue`, so a
/// handler is waiting for the body): a request in flight.
struct InFlight {
    stream: TcpStream,
    body: String,
}

impl InFlight {
    async fn start(addr: SocketAddr, visitor: &str) -> InFlight {
        let body = serde_json::json!({
            "visitor": visitor, "session": format!("s_{visitor}"),
            "events": [{"id": format!("s_{visitor}:1"), "type": "page", "url": "https://shop.example/",
                        "path": "/", "title": "Home", "page_type": "home", "referrer": ""}],
        })
        .to_string();
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/events?site=shop HTTP/1.1\r\nHost: shop\r\nOrigin: {ORIGIN}\r\n\
             User-Agent: {CHROME}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("100 Continue within the bound")
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("HTTP/1.1 100"), "{got:?}");
        InFlight { stream, body }
    }

    /// Sends the body; the status of the answer, or `None` if the connection was closed.
    async fn finish(mut self) -> Option<u16> {
        self.stream.write_all(self.body.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut raw))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&raw);
        text.split(' ').nth(1)?.parse().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_batches_in_flight_then_exits_with_every_acknowledged_batch_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path()).await;
    // Clients that sent half their headers and went quiet: only the drain timeout ends them.
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /v1/events?site=shop HTTP/1.1\r\nHost: sh")
            .await
            .unwrap();
        stalled.push(s);
    }
    let visitors: Vec<String> = (0..10).map(|i| format!("v_term{i}")).collect();
    let mut in_flight = Vec::new();
    for v in &visitors {
        in_flight.push(InFlight::start(addr, v).await);
    }

    signal(&child, "TERM");
    // Once it stops accepting, the bodies arrive: the drain lets those requests finish.
    wait_until_refused(addr).await;
    let finishing: Vec<_> = in_flight
        .into_iter()
        .map(|f| tokio::spawn(f.finish()))
        .collect();
    let mut answers = Vec::new();
    for f in finishing {
        answers.push(f.await.expect("no panic"));
    }
    exits_cleanly(&mut child, DRAIN + PATIENCE).await;

    let accepted: Vec<&String> = visitors
        .iter()
        .zip(&answers)
        .filter(|(_, a)| **a == Some(202))
        .map(|(v, _)| v)
        .collect();
    assert!(
        !accepted.is_empty(),
        "no batch in flight was let finish: {answers:?}"
    );
    let store = beckon::open_store(&dir.path().join("data")).await.unwrap();
    let site = SiteId::parse("shop").unwrap();
    for v in accepted {
        let events = store
            .session_events(
                &site,
                &beckon_engine::SessionId::parse(&format!("s_{v}")).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{v} was acknowledged, so it is stored");
    }
    drop(stalled);
}

#[tokio::test]
async fn ctrl_c_stops_the_server_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    signal(&child, "INT");
    exits_cleanly(&mut child, DRAIN + PATIENCE).await;
}

/// A batch posted with reqwest, with the token of an identity obtained first: the answer.
async fn post(
    http: &reqwest::Client,
    addr: SocketAddr,
    identity: &serde_json::Value,
    events: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({
        "visitor": identity["visitor"], "token": identity["token"], "session": "s_import",
        "events": events,
    });
    let r = http
        .post(format!("http://{addr}/v1/events?site=shop"))
        .header("origin", ORIGIN)
        .header("user-agent", CHROME)
        .body(body.to_string())
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), 202);
    r.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_imported_into_a_running_servers_database_take_effect_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path()).await;
    let http = reqwest::Client::new();
    // A visitor with an open visit and a cart; the site has no rules yet.
    let first = serde_json::json!({
        "session": "s_import",
        "events": [
            {"id": "s_import:1", "type": "page", "url": "https://shop.example/cart", "path": "/cart",
             "title": "Cart", "page_type": "cart", "referrer": ""},
            {"id": "s_import:2", "type": "cart", "value": 40, "currency": "EUR", "items": 2},
            {"id": "s_import:pointer", "type": "activity"},
        ],
    });
    let r = http
        .post(format!("http://{addr}/v1/events?site=shop"))
        .header("origin", ORIGIN)
        .header("user-agent", CHROME)
        .body(first.to_string())
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = r.json().await.unwrap();
    let identity = answer["identity"].clone();
    assert!(identity["token"].is_string(), "{answer}");

    // Another process imports rules into the same database while the server runs.
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"[[rules]]
id = "leaving-cart"
name = "Leaving with a cart"
status = "live"
when = { all = [ { var = "cart.items", op = "gt", value = 0 }, { var = "behaviour.exit_intent", op = "equals", value = true } ] }
message = { type = "text", text = "Your cart is saved" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["rules", "import", rules.to_str().unwrap(), "--site", "shop"])
        .args(["--config", dir.path().join("beckon.toml").to_str().unwrap()])
        .env_remove("BECKON_DATA")
        .output()
        .expect("beckon rules import runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Within seconds, the running server decides with them, in the visit already open.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 2;
    loop {
        n += 1;
        let events = serde_json::json!([{"id": format!("s_import:{n}"), "type": "exit_intent"}]);
        let answer = post(&http, addr, &identity, events).await;
        if answer["interventions"][0]["rule"] == "leaving-cart" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the imported rules never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&child, "TERM");
    exits_cleanly(&mut child, DRAIN + PATIENCE).await;
}
