//! Every bound the server keeps, in one place: each is a named, documented setting (the
//! `[limits]` table of the configuration file), with a default that is safe on the open
//! internet. A limit of 0 turns that limit off where that makes sense (rates), never where it
//! would let memory grow without bound.

use std::time::Duration;

/// The server's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second one client address may make (HTTP requests and socket upgrades);
    /// 0 turns the limit off.
    pub per_ip_per_second: u32,
    /// How many requests one address may make at once before the rate applies.
    pub per_ip_burst: u32,
    /// Event batches per second one site may send in all; 0 turns the limit off.
    pub per_site_per_second: u32,
    /// How many batches one site may send at once before the rate applies.
    pub per_site_burst: u32,
    /// The header that carries the client's address when Beckon runs behind a proxy
    /// (`x-forwarded-for`, `x-real-ip`, `forwarded`); `None` trusts only the socket's peer.
    pub trusted_proxy_header: Option<String>,
    /// Open TCP connections the server accepts at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Live sessions one node holds in memory; past it, the longest-idle session without a
    /// socket is dropped from memory (its state is on disk) to make room.
    pub max_live_sessions: usize,
    /// Open WebSockets one visitor may have (tabs); one more is closed with 1008.
    pub max_sockets_per_visitor: usize,
    /// Open WebSockets the node holds in all (an upgraded socket leaves `max_connections`);
    /// past it an upgrade is refused with 503 and `Retry-After`.
    pub max_sockets: usize,
    /// How often the server pings an open WebSocket.
    pub ws_ping: Duration,
    /// A WebSocket that sends nothing (not even a pong) this long is closed.
    pub ws_idle_timeout: Duration,
    /// The longest a request may take from its headers to its answer.
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The longest a client may take to send a request's body.
    pub body_read_timeout: Duration,
    /// How long a shed request's client is told to wait (`Retry-After`).
    pub retry_after: Duration,
    /// How long the raw event log is kept; older batches are pruned. Orders, exposures and
    /// visitor states are kept.
    pub retention: Duration,
    /// How long a shutdown waits for in-flight requests before closing their connections.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_ip_per_second: 20,
            per_ip_burst: 100,
            per_site_per_second: 5_000,
            per_site_burst: 10_000,
            trusted_proxy_header: None,
            max_connections: 16_384,
            max_live_sessions: 200_000,
            max_sockets_per_visitor: 8,
            max_sockets: 100_000,
            ws_ping: Duration::from_secs(30),
            ws_idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(2),
            retention: Duration::from_secs(90 * 24 * 60 * 60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// No rate limits: for benchmarks and tests that send much from one address.
    pub fn unthrottled() -> Limits {
        Limits {
            per_ip_per_second: 0,
            per_site_per_second: 0,
            ..Limits::default()
        }
    }
}
