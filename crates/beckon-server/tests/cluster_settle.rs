//! A visitor with a write in flight when the cluster's view changes is let go by the old owner
//! as soon as that write settles (its socket closed with 1012, so that it reconnects to the new
//! owner), not at the shard's next sweep a minute later: two nodes never go on deciding for one
//! visitor side by side.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use beckon_cluster::View;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{Policy, SessionId, SiteId, Timestamp, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::cluster::NodeLease;
use beckon_store::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SiteRecord, Store,
    StoredEvent, VisitorRecord, WriteBatch,
};
use beckon_store_postgres::testing::Scratch;
use serde_json::json;
use support::*;
use tokio::sync::watch;

/// A store whose commits writing the chosen visitor wait while the gate is shut.
struct Gated {
    inner: Arc<dyn Store>,
    visitor: std::sync::Mutex<Option<VisitorId>>,
    shut: AtomicBool,
    held: AtomicUsize,
    open: tokio::sync::Notify,
}

#[async_trait]
impl Store for Gated {
    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn server_key(&self) -> Result<[u8; 32]> {
        self.inner.server_key().await
    }
    async fn put_site(&self, site: &SiteRecord) -> Result<()> {
        self.inner.put_site(site).await
    }
    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.inner.sites().await
    }
    async fn site_versions(&self) -> Result<Vec<(SiteId, u64)>> {
        self.inner.site_versions().await
    }
    async fn replace_rules(&self, site: &SiteId, rules: &[RuleSpec]) -> Result<()> {
        self.inner.replace_rules(site, rules).await
    }
    async fn rules(&self, site: &SiteId) -> Result<Vec<RuleSpec>> {
        self.inner.rules(site).await
    }
    async fn rule_set(&self, site: &SiteId, version: u64) -> Result<Option<RuleSetVersion>> {
        self.inner.rule_set(site, version).await
    }
    async fn commit(&self, batch: &WriteBatch) -> Result<CommitReport> {
        let target = self.visitor.lock().unwrap().clone();
        if self.shut.load(Ordering::SeqCst)
            && target.is_some_and(|t| batch.visitors.iter().any(|w| w.visitor == t))
        {
            self.held.fetch_add(1, Ordering::SeqCst);
            while self.shut.load(Ordering::SeqCst) {
                let _ = tokio::time::timeout(Duration::from_millis(20), self.open.notified()).await;
            }
        }
        self.inner.commit(batch).await
    }
    async fn known_keys(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        keys: &[String],
    ) -> Result<Vec<String>> {
        self.inner.known_keys(site, visitor, keys).await
    }
    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>> {
        self.inner.visitor(site, visitor).await
    }
    async fn visitor_version(&self, site: &SiteId, visitor: &VisitorId) -> Result<u64> {
        self.inner.visitor_version(site, visitor).await
    }
    async fn active_visitors(&self, since: Timestamp) -> Result<ActiveVisitors> {
        self.inner.active_visitors(since).await
    }
    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>> {
        self.inner.exposures(site).await
    }
    async fn session_events(&self, site: &SiteId, session: &SessionId) -> Result<Vec<StoredEvent>> {
        self.inner.session_events(site, session).await
    }
    async fn log(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LoggedBatch)>> {
        self.inner.log(site, after, limit).await
    }
    async fn prune_log(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.inner.prune_log(before, limit).await
    }
}

fn lease(name: &str, server: &TestServer, epoch: u64) -> NodeLease {
    NodeLease {
        name: name.to_owned(),
        address: server.base.trim_start_matches("http://").to_owned(),
        epoch,
    }
}

fn view(me: &NodeLease, nodes: &[&NodeLease]) -> Arc<View> {
    Arc::new(View {
        me: me.clone(),
        nodes: nodes.iter().map(|n| (*n).clone()).collect(),
        changes: 1,
    })
}

async fn node(store: Arc<dyn Store>, name: &str) -> (TestServer, watch::Sender<Arc<View>>) {
    let alone = NodeLease {
        name: name.to_owned(),
        address: String::new(),
        epoch: 0,
    };
    let (tx, rx) = watch::channel(view(&alone, &[&alone]));
    let server = TestServer::start_with(
        store,
        Options {
            shards: 1,
            limits: Limits::unthrottled(),
            cluster: Some(rx),
            ..Options::default()
        },
    )
    .await;
    (server, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_busy_at_a_view_change_is_let_go_as_soon_as_it_settles() {
    let scratch = Scratch::new().await;
    let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
    install(
        store.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let gated = Arc::new(Gated {
        inner: store.clone(),
        visitor: Default::default(),
        shut: AtomicBool::new(false),
        held: AtomicUsize::new(0),
        open: tokio::sync::Notify::new(),
    });
    let (a, to_a) = node(gated.clone(), "node-a").await;
    let (b, to_b) = node(Arc::new(scratch.store().await), "node-b").await;
    let (la, lb) = (lease("node-a", &a, 1), lease("node-b", &b, 2));
    to_a.send_replace(view(&la, &[&la, &lb]));
    to_b.send_replace(view(&lb, &[&la, &lb]));
    let both = [la.clone(), lb.clone()];
    let visitor = (0..)
        .map(|i| format!("v_busy{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&la))
        .unwrap();

    // The visitor's socket on a, its owner.
    let mut ws = a.ws(ORIGIN, "shop", &visitor, "s_busy").await;
    ws.send(&json!({"type": "events", "events": [{"id": "w1", "type": "activity"}]}))
        .await;
    assert_eq!(ws.next().await["type"], "ack");

    // A batch whose commit is slow is in flight when the visitor moves to b.
    *gated.visitor.lock().unwrap() = Some(VisitorId::parse(&visitor).unwrap());
    gated.shut.store(true, Ordering::SeqCst);
    ws.send(&json!({"type": "events", "events": [{"id": "w2", "type": "activity"}]}))
        .await;
    eventually("the write is in flight", || async {
        gated.held.load(Ordering::SeqCst) > 0
    })
    .await;
    to_a.send_replace(view(&la, &[&lb]));
    to_b.send_replace(view(&lb, &[&lb]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    gated.shut.store(false, Ordering::SeqCst);
    gated.open.notify_waiters();

    // Once the write has landed, a has no reason to keep the visitor: its socket should be
    // told to reconnect (to b) as the sockets of every other moved visitor were.
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.close_code()).await;
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(
        closed.ok(),
        Some(1012),
        "the old owner still holds the moved visitor's socket 5 s after its write settled"
    );
}
