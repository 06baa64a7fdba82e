//! SQLite behind two switches, for the tests of what the socket does when storage misbehaves:
//! a closed gate makes reading a visitor hang until it opens (a shard stuck on it, its queue
//! filling up), and `fail_commits` makes every group commit fail; and a server over it whose
//! state the test can reach (to fill a shard's queue).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_server::limits::Limits;
use beckon_server::{AppState, Options};
use beckon_store::{Exposure, SiteRecord, Store, StoredEvent, VisitorRecord, WriteBatch};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::support::{PATIENCE, Site, install, memory_store};

/// A server over a [`Gated`] store on a real socket, with its state at hand.
pub struct GatedServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's state.
    pub state: AppState,
    /// The store's switches.
    pub store: Arc<Gated>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl GatedServer {
    /// Serves `sites` under `limits` with two shards. The listener is bound before this
    /// returns, so a client's connection waits in the backlog until the server accepts it.
    pub async fn start(sites: &[Site], limits: Limits) -> GatedServer {
        let inner = memory_store().await;
        for site in sites {
            install(inner.as_ref(), site).await;
        }
        let store = Arc::new(Gated::new(inner));
        let options = Options {
            shards: 2,
            demo_shop: false,
            limits,
        };
        let server = beckon_server::start(store.clone(), options)
            .await
            .expect("server starts");
        let state = server.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        GatedServer {
            base,
            state,
            store,
            stop: Some(stop),
            task,
        }
    }

    /// Opens the gate, stops the server and waits until it has flushed.
    pub async fn shutdown(mut self) {
        self.store.open_gate();
        self.store.fail_commits(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the server stops within the bound")
            .expect("the server task does not panic")
            .expect("serve returns Ok");
    }
}

/// A store with switches.
pub struct Gated {
    inner: Arc<dyn Store>,
    gate: watch::Sender<bool>,
    /// While set, every commit fails.
    pub fail_commits: AtomicBool,
    parked: AtomicUsize,
}

impl Gated {
    /// `inner`, gate open, commits working.
    pub fn new(inner: Arc<dyn Store>) -> Gated {
        Gated {
            inner,
            gate: watch::channel(true).0,
            fail_commits: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
        }
    }

    /// Reading a visitor hangs from now on.
    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    /// Reading a visitor answers again (the reads that hung go on).
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// How many visitor reads have waited at the closed gate so far.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Commits fail (or work again).
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for Gated {
    async fn migrate(&self) -> beckon_store::Result<()> {
        self.inner.migrate().await
    }
    async fn put_site(&self, site: &SiteRecord) -> beckon_store::Result<()> {
        self.inner.put_site(site).await
    }
    async fn sites(&self) -> beckon_store::Result<Vec<SiteRecord>> {
        self.inner.sites().await
    }
    async fn replace_rules(&self, site: &SiteId, rules: &[RuleSpec]) -> beckon_store::Result<()> {
        self.inner.replace_rules(site, rules).await
    }
    async fn rules(&self, site: &SiteId) -> beckon_store::Result<Vec<RuleSpec>> {
        self.inner.rules(site).await
    }
    async fn commit(&self, batch: &WriteBatch) -> beckon_store::Result<usize> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(beckon_store::StoreError::Database(
                "switched off".to_owned(),
            ));
        }
        self.inner.commit(batch).await
    }
    async fn visitor(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
    ) -> beckon_store::Result<Option<VisitorRecord>> {
        let mut gate = self.gate.subscribe();
        if !*gate.borrow() {
            self.parked.fetch_add(1, Ordering::SeqCst);
        }
        let _ = gate.wait_for(|open| *open).await;
        self.inner.visitor(site, visitor).await
    }
    async fn active_visitors(&self, since: Timestamp) -> beckon_store::Result<Vec<VisitorRecord>> {
        self.inner.active_visitors(since).await
    }
    async fn exposures(&self, site: &SiteId) -> beckon_store::Result<Vec<Exposure>> {
        self.inner.exposures(site).await
    }
    async fn session_events(
        &self,
        site: &SiteId,
        session: &str,
    ) -> beckon_store::Result<Vec<StoredEvent>> {
        self.inner.session_events(site, session).await
    }
}
