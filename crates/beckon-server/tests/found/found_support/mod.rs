//! Review helpers (throwaway): a Store wrapper that can hold commits on gates, fail commits
//! that hold a key, count reads, and run a hook before `rules()`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SessionId, SiteId, Timestamp, VisitorId};
use beckon_server::Server;
use beckon_server::intake::{self, Claim, IntakeError, Sender, Submitted};
use beckon_server::wire::ClientContext;
use beckon_store::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SiteRecord, Store,
    StoreError, StoredEvent, VisitorRecord, WriteBatch,
};
use serde_json::Value;
use tokio::sync::Semaphore;

pub type Pred = Box<dyn Fn(&WriteBatch) -> bool + Send + Sync>;
pub type RulesHook = Box<dyn Fn() -> Option<Vec<RuleSpec>> + Send + Sync>;

/// A named gate: which commits it holds, how many it has held, and the permits that free
/// them.
type Gate = (Pred, usize, Vec<Arc<Semaphore>>);

/// A wrapper around a real store.
pub struct Hooked {
    pub inner: Arc<dyn Store>,
    /// label -> (predicate, commits seen, gates); the n-th commit the predicate holds for
    /// waits on the n-th gate.
    gates: Mutex<HashMap<String, Gate>>,
    /// commits for which this holds fail (unwritten), while set.
    fail_pred: Mutex<Option<Pred>>,
    /// commits entered, by gated key.
    entered: Mutex<HashMap<String, usize>>,
    pub visitor_reads: AtomicUsize,
    pub rules_calls: AtomicUsize,
    /// Run before the n-th `rules()` call answers: rules to import first (a `beckon rules
    /// import` landing between `sites()` and `rules()`).
    pub before_rules: Mutex<Option<(usize, Vec<RuleSpec>)>>,
}

impl Hooked {
    pub fn new(inner: Arc<dyn Store>) -> Hooked {
        Hooked {
            inner,
            gates: Mutex::new(HashMap::new()),
            fail_pred: Mutex::new(None),
            entered: Mutex::new(HashMap::new()),
            visitor_reads: AtomicUsize::new(0),
            rules_calls: AtomicUsize::new(0),
            before_rules: Mutex::new(None),
        }
    }

    /// The commits holding `key` wait, one after the other, on `n` closed gates.
    pub fn gate(&self, key: &str, n: usize) -> Vec<Arc<Semaphore>> {
        let k = key.to_owned();
        self.gate_if(key, move |b| holds(b, &k), n)
    }

    /// The commits `pred` holds for wait, one after the other, on `n` closed gates.
    pub fn gate_if(
        &self,
        label: &str,
        pred: impl Fn(&WriteBatch) -> bool + Send + Sync + 'static,
        n: usize,
    ) -> Vec<Arc<Semaphore>> {
        let gates: Vec<Arc<Semaphore>> = (0..n).map(|_| Arc::new(Semaphore::new(0))).collect();
        self.gates
            .lock()
            .unwrap()
            .insert(label.to_owned(), (Box::new(pred), 0, gates.clone()));
        gates
    }

    pub fn fail_commits_holding(&self, key: Option<&str>) {
        let pred: Option<Pred> = key.map(|k| {
            let k = k.to_owned();
            Box::new(move |b: &WriteBatch| holds(b, &k)) as Pred
        });
        *self.fail_pred.lock().unwrap() = pred;
    }

    pub fn fail_commits_if(&self, pred: Option<Pred>) {
        *self.fail_pred.lock().unwrap() = pred;
    }

    pub fn entered(&self, key: &str) -> usize {
        self.entered.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

pub fn holds(batch: &WriteBatch, key: &str) -> bool {
    batch
        .batches
        .iter()
        .any(|b| b.events.iter().any(|e| e.key == key))
}

#[async_trait]
impl Store for Hooked {
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
        let n = self.rules_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let import = {
            let mut hook = self.before_rules.lock().unwrap();
            match hook.as_ref() {
                Some((at, _)) if *at == n => hook.take().map(|(_, r)| r),
                _ => None,
            }
        };
        if let Some(rules) = import {
            self.inner.replace_rules(site, &rules).await?;
        }
        self.inner.rules(site).await
    }
    async fn rule_set(&self, site: &SiteId, version: u64) -> Result<Option<RuleSetVersion>> {
        self.inner.rule_set(site, version).await
    }
    async fn commit(&self, batch: &WriteBatch) -> Result<CommitReport> {
        let waits: Vec<Arc<Semaphore>> = {
            let mut gates = self.gates.lock().unwrap();
            let mut entered = self.entered.lock().unwrap();
            let mut out = Vec::new();
            for (key, (pred, n, list)) in gates.iter_mut() {
                if pred(batch) {
                    *entered.entry(key.clone()).or_default() += 1;
                    if let Some(g) = list.get(*n) {
                        out.push(g.clone());
                    }
                    *n += 1;
                }
            }
            out
        };
        for g in waits {
            let _ = g.acquire().await.map(|p| p.forget());
        }
        let fail = self
            .fail_pred
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|p| p(batch));
        if fail {
            return Err(StoreError::Database(
                "commit failed (review injected)".into(),
            ));
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
        self.visitor_reads.fetch_add(1, Ordering::SeqCst);
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

/// Submits a backend event for `visitor` (no session: their current visit).
pub async fn submit_backend(
    server: &Server,
    site: &str,
    visitor: &str,
    events: Vec<Value>,
) -> std::result::Result<Submitted, IntakeError> {
    let state = &server.state;
    let site = state.sites.get(site).expect("the site");
    let context = ClientContext::default();
    let from = Sender {
        site,
        claim: Claim::Backend { visitor },
        session: None,
        user_agent: "",
        hints: &beckon_server::edge::ClientHints::default(),
        context: &context,
    };
    intake::submit(state, from, events).await
}

/// Every event key in `site`'s log.
pub async fn logged_keys(store: &dyn Store, site: &str) -> Vec<(String, String)> {
    let site = SiteId::parse(site).unwrap();
    let mut out = Vec::new();
    for (_, b) in store.log(&site, 0, 100_000).await.unwrap() {
        for e in b.events {
            out.push((b.visitor.to_string(), e.key));
        }
    }
    out
}
