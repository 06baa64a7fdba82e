//! The load generator against the bare endpoint: every event sent is acknowledged, over HTTP
//! and WebSocket, an issued identity is adopted, and idle visitors spread over child
//! processes all connect. Behaviour only; the speed is the report's business.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use beckon_bench::load::bare::{self, BareOptions, BareStats};
use beckon_bench::load::drive::{self, Load, Tally, Window};
use beckon_bench::load::idle::{IdleFleet, IdlePlan};
use beckon_bench::load::{ORIGIN, SITE, Target, server};
use tokio::sync::oneshot;

/// The longest any of these waits may take; they end as soon as the thing happens.
const PATIENCE: Duration = Duration::from_secs(60);

struct Bare {
    target: Target,
    stats: Arc<BareStats>,
    _stop: oneshot::Sender<()>,
}

/// The bare endpoint in this process, on a port of its own, playing visitor tokens.
async fn bare_endpoint() -> Bare {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = Target::new(listener.local_addr().expect("an address"));
    let stats = Arc::new(BareStats::default());
    let options = BareOptions {
        site: SITE.to_owned(),
        origin: ORIGIN.to_owned(),
        issue_identities: true,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bare::serve(listener, options, stats.clone(), async move {
        let _ = stopped.await;
    }));
    Bare {
        target,
        stats,
        _stop: stop,
    }
}

/// `connections` connections of `batches` batches each, without a time limit.
fn load(connections: usize, batches: u64, seed: u64) -> Load {
    Load {
        connections,
        batch: 10,
        visit_batches: (2, 4),
        window: Window::after(Duration::ZERO, PATIENCE),
        max_batches: Some(batches),
        seed,
        user_agents: 1,
    }
}

fn check_all_acknowledged(t: &Tally, batches: u64) {
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
    assert_eq!(t.batches, batches);
    assert_eq!(t.events_sent, batches * 10);
    assert_eq!(t.events_acked, t.events_sent);
    assert_eq!(
        t.window_acked, t.events_sent,
        "every ack fell inside the window"
    );
    assert_eq!(t.duplicates, 0);
    assert_eq!(t.latency.len(), batches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_event_is_acknowledged_and_issued_identities_are_used() {
    let bare = bare_endpoint().await;
    let t = drive::http(&bare.target, &load(8, 12, 1)).await;
    check_all_acknowledged(&t, 8 * 12);
    let stats = &bare.stats;
    assert_eq!(stats.events.load(Ordering::Relaxed), 8 * 12 * 10);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    // Each visit's first batch has no token and is given an identity; every later batch of
    // the visit comes back with it.
    assert_eq!(t.identities, t.visits);
    assert_eq!(stats.identities.load(Ordering::Relaxed), t.visits);
    assert_eq!(
        stats.with_token.load(Ordering::Relaxed),
        t.batches - t.visits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_websocket_event_is_acknowledged() {
    let bare = bare_endpoint().await;
    let t = drive::websocket(&bare.target, &load(4, 9, 2)).await;
    check_all_acknowledged(&t, 4 * 9);
    // The identity frame comes first on each visit's socket, and is adopted.
    assert_eq!(t.identities, t.visits);
    assert_eq!(bare.stats.events.load(Ordering::Relaxed), 4 * 9 * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_visitors_spread_over_child_processes_all_connect() {
    // The bare endpoint as the report runs it (this package's binary, --bare-server), and
    // the idle visitors in three child processes of it, on three source addresses.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_load-report"));
    let bare = server::start_bare(exe)
        .await
        .expect("the bare endpoint starts");
    let plan = IdlePlan {
        visitors: 50,
        per_process: 20,
        parallel: 8,
        seed: 3,
    };
    let fleet = IdleFleet::spawn(exe, &Target::new(bare.addr), &plan).expect("children start");
    let sources: Vec<String> = fleet
        .processes()
        .iter()
        .map(|(_, a)| a.to_string())
        .collect();
    assert_eq!(sources, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let p = fleet.wait_ready(PATIENCE, |_| {}).await;
    assert!(p.ready, "{p:?}");
    assert_eq!((p.connected, p.failed, p.dropped), (50, 0, 0), "{p:?}");
    fleet.close().await;
    bare.stop().await.expect("the bare endpoint stops");
}
