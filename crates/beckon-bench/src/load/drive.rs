//! Closed-loop load: each connection (or socket) sends a batch, waits for its
//! acknowledgement, and sends the next, visitor after visitor.
//!
//! Only acknowledged events count. Over HTTP that is a `202` whose `accepted` and
//! `duplicates` add up to the batch; over a WebSocket an `ack` frame naming exactly the
//! batch's ids. Throughput and latency are taken inside a [`Window`] (after a warm-up); the
//! totals (sent, acknowledged) cover the whole phase, so a test can check that nothing was
//! lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::Target;
use super::http::{self, Connection};
use super::visit::{Identity, Visit};

/// The most distinct error messages kept; more are counted under one line.
const MAX_ERROR_KINDS: usize = 16;
/// How long a failed connection waits before it tries again, so that a refusing server is
/// not spun against.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// When a phase is measured: from `start` (after the warm-up) to `end`, when connections stop
/// sending.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// When measurement starts.
    pub start: Instant,
    /// When measurement ends and connections send no new batch.
    pub end: Instant,
}

impl Window {
    /// A window that opens `warmup` from now and lasts `measure`.
    pub fn after(warmup: Duration, measure: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + measure,
        }
    }

    /// Its length.
    pub fn length(&self) -> Duration {
        self.end - self.start
    }

    fn contains(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }
}

/// How to drive a phase.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent connections (HTTP) or sockets (WebSocket), each one batch in flight.
    pub connections: usize,
    /// Events per batch.
    pub batch: usize,
    /// Batches per visit: each visit sends a number in this range, then a new visitor
    /// begins on the same connection.
    pub visit_batches: (u32, u32),
    /// When to measure, and when to stop.
    pub window: Window,
    /// Stop each connection after this many batches, even inside the window (for tests).
    pub max_batches: Option<u64>,
    /// Seed of the visitors' ids and events; give each phase its own, or the visitors of
    /// one phase are resends of another's.
    pub seed: u64,
    /// Distinct user agents the visitors' browsers send ([`super::user_agent`]): 1, every
    /// visitor the same browser.
    pub user_agents: usize,
}

/// What a phase counted.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Batches sent, in the whole phase.
    pub batches: u64,
    /// Events sent, in the whole phase.
    pub events_sent: u64,
    /// Events acknowledged, in the whole phase.
    pub events_acked: u64,
    /// Of those, acknowledged as already stored (HTTP `duplicates`): should be 0.
    pub duplicates: u64,
    /// Events acknowledged within the window.
    pub window_acked: u64,
    /// Ack latency of the batches acknowledged within the window, in microseconds.
    pub latency: Histogram<u64>,
    /// Visits begun.
    pub visits: u64,
    /// Identities the server issued (a server with visitor tokens issues one per visit).
    pub identities: u64,
    /// Interventions received.
    pub interventions: u64,
    /// Failures by message: refused batches, partial acknowledgements, broken connections.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            batches: 0,
            events_sent: 0,
            events_acked: 0,
            duplicates: 0,
            window_acked: 0,
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            visits: 0,
            identities: 0,
            interventions: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Tally {
    /// Adds another connection's counts.
    pub fn merge(&mut self, other: Tally) {
        self.batches += other.batches;
        self.events_sent += other.events_sent;
        self.events_acked += other.events_acked;
        self.duplicates += other.duplicates;
        self.window_acked += other.window_acked;
        self.latency.add(&other.latency).expect("same bounds");
        self.visits += other.visits;
        self.identities += other.identities;
        self.interventions += other.interventions;
        for (k, n) in other.errors {
            self.error_n(k, n);
        }
    }

    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn error(&mut self, what: impl Into<String>) {
        self.error_n(what.into(), 1);
    }

    fn error_n(&mut self, mut what: String, n: u64) {
        if what.len() > 120 {
            let mut cut = 120;
            while !what.is_char_boundary(cut) {
                cut -= 1;
            }
            what.truncate(cut);
        }
        if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&what) {
            what = "(other errors)".to_owned();
        }
        *self.errors.entry(what).or_default() += n;
    }

    fn acked(&mut self, window: &Window, sent_at: Instant, events: u64) {
        let now = Instant::now();
        self.events_acked += events;
        if window.contains(now) {
            self.window_acked += events;
            let us = now.duration_since(sent_at).as_micros() as u64;
            self.latency.saturating_record(us.max(1));
        }
    }
}

/// `POST /v1/events` from `load.connections` keep-alive connections.
pub async fn http(target: &Target, load: &Load) -> Tally {
    fan_out(target, load, http_connection).await
}

/// Visitors over `GET /v1/ws`, `load.connections` sockets at a time: each visit opens a
/// socket, sends its batches one at a time, and closes it.
pub async fn websocket(target: &Target, load: &Load) -> Tally {
    fan_out(target, load, ws_connection).await
}

/// The WebSocket settings of the generator's sockets: small buffers, since a generator holds
/// many sockets and reads small frames.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a WebSocket for `visit` over an already connected stream, as the widget on a page
/// of `target.origin` would.
pub async fn ws_handshake(
    target: &Target,
    visit: &Visit,
    stream: TcpStream,
) -> Result<WebSocketStream<TcpStream>, String> {
    let url = format!("ws://{}{}", target.addr, visit.ws_path(&target.site));
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    headers.insert(
        "origin",
        HeaderValue::from_str(&target.origin).map_err(|e| e.to_string())?,
    );
    headers.insert(
        "user-agent",
        HeaderValue::from_str(&visit.user_agent).map_err(|e| e.to_string())?,
    );
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(r) => format!(
                "upgrade refused: HTTP {} {}",
                r.status().as_u16(),
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
            ),
            e => format!("upgrade failed: {e}"),
        })?;
    Ok(ws)
}

/// How a socket's wait for an acknowledgement ended.
pub enum AckWait {
    /// The batch was acknowledged.
    Acked,
    /// The server refused it (an `error` frame or an ack of other ids); the socket is usable.
    Refused(String),
    /// The socket broke.
    Broken(String),
}

/// What a socket saw besides acknowledgements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// `identity` frames (adopted).
    pub identities: u64,
    /// `intervention` frames.
    pub interventions: u64,
}

/// Reads frames until the acknowledgement of `ids`: adopts an `identity`, counts
/// interventions, answers pings (tungstenite queues the pong while reading).
pub async fn wait_for_ack(
    ws: &mut WebSocketStream<TcpStream>,
    visit: &mut Visit,
    ids: &[String],
    seen: &mut Seen,
) -> AckWait {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return AckWait::Broken(match frame {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".to_owned(),
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return AckWait::Broken(format!("socket error: {e}")),
            None => return AckWait::Broken("the socket ended".to_owned()),
        };
        let frame: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return AckWait::Refused("a frame that is not JSON".to_owned()),
        };
        match frame.get("type").and_then(Value::as_str) {
            Some("identity") => {
                if let Some(identity) = Identity::of(&frame) {
                    seen.identities += 1;
                    visit.adopt(identity);
                }
            }
            Some("ack") => {
                let acked: Vec<&str> = frame["ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                return if acked.len() == ids.len() && acked.iter().zip(ids).all(|(a, b)| a == b) {
                    AckWait::Acked
                } else {
                    AckWait::Refused(format!(
                        "an ack of {} ids for a batch of {}",
                        acked.len(),
                        ids.len()
                    ))
                };
            }
            Some("intervention") => seen.interventions += 1,
            Some("error") => {
                return AckWait::Refused(format!(
                    "error frame: {}",
                    frame["error"].as_str().unwrap_or("?")
                ));
            }
            _ => {}
        }
    }
}

async fn fan_out<F, Fut>(target: &Target, load: &Load, connection: F) -> Tally
where
    F: Fn(Arc<Target>, Arc<Load>, u64) -> Fut,
    Fut: Future<Output = Tally> + Send + 'static,
{
    let target = Arc::new(target.clone());
    let load = Arc::new(load.clone());
    let tasks: Vec<_> = (0..load.connections as u64)
        .map(|i| tokio::spawn(connection(target.clone(), load.clone(), i)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally.error(format!("a connection task failed: {e}")),
        }
    }
    tally
}

/// A generator of its own for connection `i` of a phase.
fn rng_for(load: &Load, i: u64) -> fastrand::Rng {
    // splitmix64 of seed and index: neighbouring seeds give unrelated streams.
    let mut z = load
        .seed
        .wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    fastrand::Rng::with_seed(z ^ (z >> 31))
}

fn new_visit(load: &Load, rng: &mut fastrand::Rng, tally: &mut Tally) -> Visit {
    let (lo, hi) = load.visit_batches;
    tally.visits += 1;
    let lo = lo.max(1);
    let batches = rng.u32(lo..=hi.max(lo));
    let user_agent = super::user_agent(load.user_agents, rng.usize(..load.user_agents.max(1)));
    Visit::new(rng, batches, user_agent)
}

fn keep_going(load: &Load, batches: u64) -> bool {
    Instant::now() < load.window.end && load.max_batches.is_none_or(|m| batches < m)
}

async fn http_connection(target: Arc<Target>, load: Arc<Load>, i: u64) -> Tally {
    let mut rng = rng_for(&load, i);
    let mut tally = Tally::default();
    let mut conn: Option<Connection> = None;
    let mut visit = new_visit(&load, &mut rng, &mut tally);
    let path = format!(
        "/v1/events?site={}",
        super::visit::query_escape(&target.site)
    );
    let mut sent = 0;
    while keep_going(&load, sent) {
        if visit.is_over() {
            visit = new_visit(&load, &mut rng, &mut tally);
        }
        let c = match conn.take().filter(|c| !c.is_closing()) {
            Some(c) => conn.insert(c),
            None => match Connection::open(target.addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.error(format!("connect: {e}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let batch = visit.next_batch(&mut rng, load.batch);
        let n = batch.ids.len() as u64;
        let request = http::post(
            target.addr,
            &path,
            &target.origin,
            &visit.user_agent,
            &visit.http_body(&target.site, &batch),
        );
        sent += 1;
        tally.batches += 1;
        tally.events_sent += n;
        let sent_at = Instant::now();
        let answer = match c.send(&request).await {
            Ok(a) => a,
            Err(e) => {
                tally.error(format!("HTTP: {e}"));
                conn = None;
                continue;
            }
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status != 202 {
            let why = body["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
            tally.error(format!("HTTP {}: {why}", answer.status));
            continue;
        }
        let count = |k: &str| body[k].as_u64().unwrap_or(0);
        let (accepted, duplicates) = (count("accepted"), count("duplicates"));
        if accepted + duplicates != n {
            tally.error(format!(
                "202 acknowledging {} of {n} events",
                accepted + duplicates
            ));
            continue;
        }
        tally.duplicates += duplicates;
        tally.interventions += body["interventions"].as_array().map_or(0, |a| a.len()) as u64;
        if let Some(identity) = Identity::of(&body) {
            tally.identities += 1;
            visit.adopt(identity);
        }
        tally.acked(&load.window, sent_at, n);
    }
    tally
}

async fn ws_connection(target: Arc<Target>, load: Arc<Load>, i: u64) -> Tally {
    let mut rng = rng_for(&load, i);
    let mut tally = Tally::default();
    let mut sent = 0;
    'visits: while keep_going(&load, sent) {
        let mut visit = new_visit(&load, &mut rng, &mut tally);
        let stream = match TcpStream::connect(target.addr).await {
            Ok(s) => s,
            Err(e) => {
                tally.error(format!("connect: {e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let mut ws = match ws_handshake(&target, &visit, stream).await {
            Ok(ws) => ws,
            Err(e) => {
                tally.error(e);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let mut first = true;
        while !visit.is_over() && keep_going(&load, sent) {
            let batch = visit.next_batch(&mut rng, load.batch);
            let n = batch.ids.len() as u64;
            let frame = visit.ws_frame(&batch, first);
            first = false;
            sent += 1;
            tally.batches += 1;
            tally.events_sent += n;
            let sent_at = Instant::now();
            if let Err(e) = ws.send(Message::Text(frame.into())).await {
                tally.error(format!("send: {e}"));
                continue 'visits;
            }
            let mut seen = Seen::default();
            let wait = wait_for_ack(&mut ws, &mut visit, &batch.ids, &mut seen).await;
            tally.identities += seen.identities;
            tally.interventions += seen.interventions;
            match wait {
                AckWait::Acked => tally.acked(&load.window, sent_at, n),
                AckWait::Refused(why) => tally.error(why),
                AckWait::Broken(why) => {
                    tally.error(why);
                    continue 'visits;
                }
            }
        }
        // The visit is over: the page is left, the socket closed. The close handshake is
        // not awaited; the server sees the close frame either way.
        let _ = ws.close(None).await;
    }
    tally
}
