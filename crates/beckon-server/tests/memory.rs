//! What an idle WebSocket costs the server: opens N sockets (2000 unless
//! `BECKON_IDLE_SOCKETS` says otherwise), first bare, then each with a live session (one page
//! view), and reports the growth of this process's resident memory per socket.
//!
//! The clients are plain blocking TCP sockets that speak the handshake and one frame by hand
//! and then never read, so what they cost in this process is a file descriptor each, and the
//! growth is the server's. A socket with tungstenite's default 128 KiB read buffer costs
//! about 137 KB; the bound asserted here is generous, and a change that gives each socket a
//! large buffer again fails it. Run with `--nocapture` to see the figures.

mod raw_ws;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};

use beckon_engine::Policy;
use beckon_server::token::Tokens;
use support::*;

const SHOP: &str = "shop";
/// Sockets opened (with sessions) before measuring, so that what grows once (allocator arenas,
/// the shards' first maps, SQLite's page cache) is not counted per socket.
const WARM_UP: usize = 300;
/// The most a socket with its session may cost, in bytes.
const BOUND: f64 = 32.0 * 1024.0;

/// The system allocator, counting the bytes in use: the heap's growth per socket, exact,
/// beside the resident memory's (which also holds the allocator's slack).
struct Counting;

static HEAP: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident memory and heap in use, in bytes.
fn usage() -> (f64, f64) {
    (rss_bytes() as f64, HEAP.load(Ordering::Relaxed) as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_with_its_session_costs_a_few_kilobytes() {
    let n: usize = std::env::var("BECKON_IDLE_SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = file_store(&dir.path().join("beckon.db")).await;
    install(
        store.as_ref(),
        &Site::new(SHOP, DEMO_RULES, Policy::default()),
    )
    .await;
    let server = TestServer::start(store).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let tokens = server.tokens.clone();

    let (warm, report) = tokio::task::spawn_blocking(move || {
        let mut warm: Vec<TcpStream> = (0..WARM_UP).map(|i| open(&addr, &tokens, "w", i)).collect();
        page_views(&mut warm, "w");
        let base = usage();
        let mut sockets: Vec<TcpStream> = (0..n).map(|i| open(&addr, &tokens, "m", i)).collect();
        // One round trip on the last socket: the server has run every socket opened before.
        send_page(sockets.last_mut().expect("n > 0"), "m", n - 1);
        read_ack(sockets.last_mut().expect("n > 0"));
        let bare = usage();
        page_views(&mut sockets[..n - 1], "m");
        let with_session = usage();
        let per =
            |after: (f64, f64)| ((after.0 - base.0) / n as f64, (after.1 - base.1) / n as f64);
        let report = (per(bare), per(with_session));
        drop(sockets);
        (warm, report)
    })
    .await
    .expect("the clients ran");
    let (bare, with_session) = report;
    println!(
        "{n} idle sockets, per socket: bare {:.1} KiB resident ({:.1} KiB heap); \
         with its session {:.1} KiB resident ({:.1} KiB heap)",
        bare.0 / 1024.0,
        bare.1 / 1024.0,
        with_session.0 / 1024.0,
        with_session.1 / 1024.0,
    );
    assert!(
        with_session.0 < BOUND,
        "an idle socket with its session costs {:.0} bytes",
        with_session.0
    );
    drop(warm);
    server.shutdown().await;
}

/// Opens `/v1/ws` for visitor `v_{prefix}{i}`, with its token.
fn open(addr: &str, tokens: &Tokens, prefix: &str, i: usize) -> TcpStream {
    let visitor = format!("v_{prefix}{i}");
    let token = tokens.issue(
        &beckon_engine::SiteId::parse(SHOP).unwrap(),
        &beckon_engine::VisitorId::parse(&visitor).unwrap(),
    );
    let path = format!("/v1/ws?site={SHOP}&visitor={visitor}&token={token}&session=s_{prefix}{i}");
    raw_ws::open(addr, &path, ORIGIN, CHROME, PATIENCE)
}

/// A page view on every socket, and its ack. Sent a few hundred at a time: all at once, they
/// would overflow the shards' queues, and the server would shed some (1013), as it should.
fn page_views(sockets: &mut [TcpStream], prefix: &str) {
    for (c, chunk) in sockets.chunks_mut(256).enumerate() {
        for (i, s) in chunk.iter_mut().enumerate() {
            send_page(s, prefix, c * 256 + i);
        }
        for s in chunk.iter_mut() {
            read_ack(s);
        }
    }
}

/// Sends one frame holding a page view.
fn send_page(s: &mut TcpStream, prefix: &str, i: usize) {
    let text = frame(vec![page(&format!("s_{prefix}{i}:1"), "home", "/")]).to_string();
    raw_ws::send_text(s, &text);
}

/// Reads the frame's ack.
fn read_ack(s: &mut TcpStream) {
    let text = raw_ws::read_text(s);
    assert!(text.contains("\"ack\""), "{text}");
}

/// This process's resident memory, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}
