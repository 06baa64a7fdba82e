//! The load generator against the real server, in this process on a fresh database: every
//! event sent over HTTP and WebSocket is acknowledged (decided on and stored), none as a
//! duplicate. The load stays small: the server's per-address rate limit, where it has one,
//! is at its default here.

use std::sync::Arc;
use std::time::Duration;

use beckon_bench::load::drive::{self, Load, Tally, Window};
use beckon_bench::load::{ORIGIN, SITE, Target};
use beckon_engine::{Engine, Policy, RuleSet, SiteId};
use beckon_store::{SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;
use tokio::sync::oneshot;

const DEMO_RULES: &str = include_str!("../../../examples/demo-rules.toml");

async fn beckon() -> (
    Target,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let store = SqliteStore::in_memory().await.expect("in-memory SQLite");
    store.migrate().await.expect("migrations");
    let store: Arc<dyn Store> = Arc::new(store);
    let policy = Policy::default();
    let site = SiteId::parse(SITE).expect("a valid site key");
    let rules = RuleSet::from_toml(DEMO_RULES, Engine::timezone(&policy)).expect("demo rules");
    store
        .put_site(&SiteRecord {
            id: site.clone(),
            secret: beckon_store::SecretDigest::of("sk_load_test"),
            origins: vec![ORIGIN.to_owned()],
            policy,
            version: 0,
        })
        .await
        .expect("put_site");
    store
        .replace_rules(&site, &rules.to_file().rules)
        .await
        .expect("replace_rules");
    let server = beckon_server::start(
        store,
        beckon_server::Options {
            shards: 2,
            ..beckon_server::Options::default()
        },
    )
    .await
    .expect("the server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = Target::new(listener.local_addr().expect("an address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    (target, stop, task)
}

fn load(connections: usize, batches: u64, seed: u64) -> Load {
    Load {
        connections,
        batch: 10,
        visit_batches: (2, 4),
        window: Window::after(Duration::ZERO, Duration::from_secs(60)),
        max_batches: Some(batches),
        seed,
        user_agents: 1,
    }
}

fn check_all_acknowledged(t: &Tally, batches: u64) {
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
    assert_eq!(t.batches, batches);
    assert_eq!(t.events_acked, batches * 10);
    assert_eq!(t.events_acked, t.events_sent);
    assert_eq!(t.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_sent_to_the_real_server_is_acknowledged() {
    let (target, stop, task) = beckon().await;
    let http = drive::http(&target, &load(4, 8, 11)).await;
    check_all_acknowledged(&http, 4 * 8);
    let ws = drive::websocket(&target, &load(2, 6, 12)).await;
    check_all_acknowledged(&ws, 2 * 6);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the server stops")
        .expect("no panic")
        .expect("serve returns Ok");
}
