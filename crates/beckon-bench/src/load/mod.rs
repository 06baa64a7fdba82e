//! The whole server under load: a generator of visitors that speaks the wire protocol
//! (`docs/wire-protocol.md`) over real sockets, a bare endpoint to compare against, and the
//! process plumbing to start, watch and stop servers.
//!
//! The engine benchmarks measure `Engine::decide` alone; this measures what a site sees: a
//! batch is only counted once the server has acknowledged it, and acknowledging means (for
//! Beckon) that it was decided on and durably stored. The bare endpoint ([`bare`]) parses the
//! same batches and answers at once, so the two throughputs give the cost of durability and
//! deciding as a ratio, on the same machine, in the same run.
//!
//! - [`visit`]: one visitor's events, with a realistic mix, and the identity the server gives;
//! - [`http`]: a minimal keep-alive HTTP/1.1 client (one connection, one request at a time);
//! - [`drive`]: closed-loop phases over HTTP and WebSocket, counting acknowledgements;
//! - [`idle`]: many idle WebSocket visitors spread over child processes and source addresses;
//! - [`bare`]: the bare axum endpoint;
//! - [`server`]: starting `beckon serve` and the bare endpoint as processes;
//! - [`proc`]: CPU time, RSS and open-file limits from `/proc`.
//!
//! The `load-report` binary runs the phases and prints the figures beside the product's
//! targets.

pub mod bare;
pub mod drive;
pub mod http;
pub mod idle;
pub mod proc;
pub mod server;
pub mod visit;

use std::net::SocketAddr;

/// A real desktop Chrome on Windows. The server judges bots by user agent and keeps them out
/// of the log; a generator without a browser's user agent would measure the bot path.
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The `i`-th of `n` distinct browsers' user agents (desktop and mobile Chrome, Firefox and
/// Safari, each at its own version); [`CHROME`] alone when `n` is 1. Each distinct user agent
/// is one the server has to match against its bot patterns and parse once.
pub fn user_agent(n: usize, i: usize) -> String {
    if n <= 1 {
        return CHROME.to_owned();
    }
    let (kind, v) = (i % 5, i / 5);
    let (major, minor) = (100 + v % 60, v / 60);
    match kind {
        0 => format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{minor}.0 Safari/537.36"
        ),
        1 => format!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{}.{} Safari/605.1.15",
            major % 20 + 1,
            minor
        ),
        2 => format!(
            "Mozilla/5.0 (X11; Linux x86_64; rv:{major}.0) Gecko/20100101 Firefox/{major}.{minor}"
        ),
        3 => format!(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{minor}.0 Mobile Safari/537.36"
        ),
        _ => format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{minor} Mobile/15E148 Safari/604.1",
            major % 10
        ),
    }
}

/// The site key the generated visitors send events for.
pub const SITE: &str = "load";

/// The origin of the generated visitors' pages.
pub const ORIGIN: &str = "http://load.test";

/// Where to send load: a server's address, and the site and origin the visitors claim.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's listening address.
    pub addr: SocketAddr,
    /// The site key.
    pub site: String,
    /// The `Origin` header of every request.
    pub origin: String,
}

impl Target {
    /// A target for [`SITE`] from [`ORIGIN`].
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            site: SITE.to_owned(),
            origin: ORIGIN.to_owned(),
        }
    }
}
