//! The write that marks a visit a bot's (`mark_bot`) logs no key, yet the visitor's state must
//! not leave memory while it is queued: a state reloaded from the store at the version before
//! it would have its next write refused as stale. Shown on a single node, whose store holds the
//! mark's commit while the shard is made to drop idle visitors.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{Policy, SessionId, SiteId, Timestamp, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SiteRecord, Store,
    StoredEvent, VisitorRecord, WriteBatch,
};
use reqwest::StatusCode;
use serde_json::json;
use support::*;

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

fn body(visitor: &str, session: &str, id: &str, context: serde_json::Value) -> serde_json::Value {
    json!({
        "site": "shop", "visitor": visitor, "session": session, "context": context,
        "events": [page(id, "product", "/p/1")],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_whose_bot_mark_is_in_flight_stays_in_memory_and_is_never_refused() {
    let inner = store_with(&Site::new(
        "shop",
        &cart_exit_rule("cart-exit"),
        Policy::default(),
    ))
    .await;
    let gated = Arc::new(Gated {
        inner,
        visitor: Default::default(),
        shut: AtomicBool::new(false),
        held: AtomicUsize::new(0),
        open: tokio::sync::Notify::new(),
    });
    // One node, no cluster; room for one live visitor.
    let server = Arc::new(
        TestServer::start_with(
            gated.clone(),
            Options {
                shards: 1,
                limits: Limits {
                    max_live_sessions: 1,
                    ..Limits::unthrottled()
                },
                ..Options::default()
            },
        )
        .await,
    );
    let (v, w) = ("v_marked", "v_other");

    // 1. v browses as a person: live, its state at version 1.
    let first = server
        .post_events(&body(v, "s_person", "p1", json!({})))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);

    // 2. The same visit then shows automation: the shard marks it a bot's and writes that
    //    (held here, as a slow commit would be).
    *gated.visitor.lock().unwrap() = Some(VisitorId::parse(v).unwrap());
    gated.shut.store(true, Ordering::SeqCst);
    let s = server.clone();
    let bot = tokio::spawn(async move {
        s.post_events(&body(v, "s_person", "p2", json!({"webdriver": true})))
            .await
    });
    eventually("the bot mark's write is in flight", || async {
        gated.held.load(Ordering::SeqCst) > 0
    })
    .await;

    // 3. Another visitor comes: v, with nothing in flight as far as the shard knows, is
    //    evicted to make room.
    let s = server.clone();
    let other = tokio::spawn(async move { s.post_events(&body(w, "s_w", "q1", json!({}))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 4. v comes back in a new visit: reloaded at version 1 (the mark has not landed).
    let s = server.clone();
    let back =
        tokio::spawn(async move { s.post_events(&body(v, "s_again", "p3", json!({}))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stale_before = metric(&server, "beckon_stale_writes_total").await;
    // 5. The slow commit lands.
    gated.shut.store(false, Ordering::SeqCst);
    gated.open.notify_waiters();
    let bot = bot.await.unwrap();
    let other = other.await.unwrap();
    let back = back.await.unwrap();
    let stale = metric(&server, "beckon_stale_writes_total").await - stale_before;
    assert_eq!(bot.status, StatusCode::ACCEPTED, "{}", bot.text);
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.text);
    assert_eq!(
        back.status,
        StatusCode::ACCEPTED,
        "a single node refused a person's batch ({stale} stale writes): {}",
        back.text
    );
}

/// The value of one metric line of `server`'s `/metrics` (0 when absent).
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}
