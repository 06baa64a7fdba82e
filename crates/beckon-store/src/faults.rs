//! A [`Store`] wrapper that fails on purpose, at chosen points, for the tests that prove
//! Beckon's promises hold when the database does not.
//!
//! [`Faulty`] wraps a real store (never a test double of one: what is written is written by the
//! backend, so a test sees exactly what survived) and a [`FaultHandle`] steers it from the test
//! while the server runs on top. The server's property test drives random traffic through a
//! `Faulty` SQLite store, fails commits before and after writing, fails reads and cuts the
//! database off entirely, and then checks that every acknowledged event is in the log exactly
//! once and that every visitor's state matches a replay of what was logged.
//!
//! ```
//! # async fn demo(store: std::sync::Arc<dyn beckon_store::Store>) {
//! use beckon_store::faults::Faulty;
//! let faulty = Faulty::new(store);
//! let faults = faulty.handle();
//! faults.fail_commits_after_writing(1); // the next commit lands, but reports failure
//! # }
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SessionId, SiteId, Timestamp, VisitorId};

use crate::{
    ActiveVisitors, CommitReport, Exposure, LoggedBatch, Result, RuleSetVersion, SiteRecord, Store,
    StoreError, StoredEvent, VisitorRecord, WriteBatch,
};

/// A predicate on a commit: the first commit it holds for fails, unwritten.
type CommitPredicate = Box<dyn Fn(&WriteBatch) -> bool + Send + Sync + 'static>;

/// A [`Store`] that passes every call to the store it wraps, except those its [`FaultHandle`]
/// says to fail. Injected failures are [`StoreError::Database`], as a real outage would be.
pub struct Faulty {
    inner: Arc<dyn Store>,
    faults: FaultHandle,
}

/// Steers a [`Faulty`] store; cheap to clone, and every clone steers the same store.
#[derive(Clone)]
pub struct FaultHandle {
    // A std mutex, not an async one: it is never held across an await, only to read and
    // update a few counters around each call.
    state: Arc<Mutex<FaultState>>,
    /// Open (`true`) unless reads are held.
    gate: Arc<tokio::sync::watch::Sender<bool>>,
    /// Open (`true`) unless syncs are held.
    sync_gate: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for FaultHandle {
    fn default() -> Self {
        FaultHandle {
            state: Arc::default(),
            gate: Arc::new(tokio::sync::watch::channel(true).0),
            sync_gate: Arc::new(tokio::sync::watch::channel(true).0),
        }
    }
}

#[derive(Default)]
struct FaultState {
    unreachable: bool,
    fail_every_commit: bool,
    /// Visitor reads wait while set: all of them (`None` inside), or one visitor's.
    hold: Option<Option<VisitorId>>,
    held: usize,
    undecodable: Option<VisitorId>,
    fail_commits: usize,
    fail_commits_after_writing: usize,
    fail_reads: usize,
    fail_commit_if: Option<CommitPredicate>,
    commits: usize,
    failed_commits: usize,
    fail_syncs: usize,
    failed_syncs: usize,
    syncs: usize,
    held_syncs: usize,
}

impl Faulty {
    /// Wraps `inner`; nothing fails until the handle says so.
    pub fn new(inner: Arc<dyn Store>) -> Faulty {
        Faulty {
            inner,
            faults: FaultHandle::default(),
        }
    }

    /// The handle that steers this store.
    pub fn handle(&self) -> FaultHandle {
        self.faults.clone()
    }

    /// The wrapped store, to inspect what was really written.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

impl FaultHandle {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A test that panicked while holding the lock has failed already; its state is still
        // the best account of what was injected.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` commits fail with [`StoreError::Database`] and write nothing.
    pub fn fail_commits(&self, n: usize) {
        self.lock().fail_commits = n;
    }

    /// The next `n` commits that the wrapped store accepts are written, and then reported as
    /// failed: the ambiguous outcome a real database gives when the connection drops after the
    /// commit reached the disk but before its answer came back. (A commit the wrapped store
    /// refuses is reported as it is, and does not use up one of the `n`.)
    pub fn fail_commits_after_writing(&self, n: usize) {
        self.lock().fail_commits_after_writing = n;
    }

    /// The next `n` calls of [`Store::visitor`] or [`Store::known_keys`] fail.
    pub fn fail_reads(&self, n: usize) {
        self.lock().fail_reads = n;
    }

    /// The first later commit for which `pred` holds fails with [`StoreError::Database`] and
    /// writes nothing; then the predicate is dropped (it fires once). Steers a failure to one
    /// visitor's job inside a group commit, and to that job's retry alone. The predicate runs
    /// under the handle's lock, so it must not call the handle.
    pub fn fail_commit_if(&self, pred: impl Fn(&WriteBatch) -> bool + Send + Sync + 'static) {
        self.lock().fail_commit_if = Some(Box::new(pred));
    }

    /// The next `n` calls of [`Store::sync`] fail, after the commits before them were written:
    /// a disk that could not write them back.
    pub fn fail_syncs(&self, n: usize) {
        self.lock().fail_syncs = n;
    }

    /// How many syncs failed on purpose so far.
    pub fn failed_syncs(&self) -> usize {
        self.lock().failed_syncs
    }

    /// How many times [`Store::sync`] was called.
    pub fn syncs(&self) -> usize {
        self.lock().syncs
    }

    /// From now on, every [`Store::sync`] waits until [`FaultHandle::release_syncs`]: a slow
    /// disk, to see what goes on meanwhile.
    pub fn hold_syncs(&self) {
        self.sync_gate.send_replace(false);
    }

    /// The syncs that wait go on, and no more wait.
    pub fn release_syncs(&self) {
        self.sync_gate.send_replace(true);
    }

    /// How many syncs have waited so far.
    pub fn held_syncs(&self) -> usize {
        self.lock().held_syncs
    }

    /// While set, every commit fails with [`StoreError::Database`] and writes nothing.
    pub fn fail_every_commit(&self, fail: bool) {
        self.lock().fail_every_commit = fail;
    }

    /// From now on, every [`Store::visitor`] read waits until [`FaultHandle::release_reads`]:
    /// storage that stopped answering.
    pub fn hold_reads(&self) {
        self.lock().hold = Some(None);
        self.gate.send_replace(false);
    }

    /// From now on, `visitor`'s reads wait until [`FaultHandle::release_reads`]; the others
    /// pass.
    pub fn hold_reads_of(&self, visitor: VisitorId) {
        self.lock().hold = Some(Some(visitor));
        self.gate.send_replace(false);
    }

    /// The reads that wait go on, and no more wait.
    pub fn release_reads(&self) {
        self.lock().hold = None;
        self.gate.send_replace(true);
    }

    /// How many reads have waited so far.
    pub fn held_reads(&self) -> usize {
        self.lock().held
    }

    /// `visitor`'s stored state reads back as [`StoreError::Undecodable`] (and is counted, not
    /// returned, by [`Store::active_visitors`]): a row written by an older Beckon, or damaged.
    pub fn undecodable(&self, visitor: VisitorId) {
        self.lock().undecodable = Some(visitor);
    }

    /// While set, every call fails, [`Store::ping`] included: the database is gone.
    pub fn unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// How many times [`Store::commit`] or [`Store::commit_unsynced`] was called.
    pub fn commits(&self) -> usize {
        self.lock().commits
    }

    /// How many of those calls returned an error, injected or the wrapped store's own.
    pub fn failed_commits(&self) -> usize {
        self.lock().failed_commits
    }

    fn check_reachable(&self) -> Result<()> {
        if self.lock().unreachable {
            return Err(injected("the database is unreachable"));
        }
        Ok(())
    }

    fn check_read(&self) -> Result<()> {
        let mut s = self.lock();
        if s.unreachable {
            return Err(injected("the database is unreachable"));
        }
        if s.fail_reads > 0 {
            s.fail_reads -= 1;
            return Err(injected("read failed"));
        }
        Ok(())
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Database(format!("{what} (injected)"))
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("FaultHandle")
            .field("unreachable", &s.unreachable)
            .field("fail_commits", &s.fail_commits)
            .field("fail_commits_after_writing", &s.fail_commits_after_writing)
            .field("fail_reads", &s.fail_reads)
            .field("fail_commit_if", &s.fail_commit_if.is_some())
            .field("commits", &s.commits)
            .field("failed_commits", &s.failed_commits)
            .finish()
    }
}

impl Faulty {
    /// A commit through the wrapped store (durable when it returns, or once synced), unless
    /// the handle says it fails.
    async fn commit_as(&self, batch: &WriteBatch, synced: bool) -> Result<CommitReport> {
        // Decide before writing whether this commit fails unwritten.
        let before = {
            let mut s = self.faults.lock();
            s.commits += 1;
            let fail = if s.unreachable {
                Some(injected("the database is unreachable"))
            } else if s.fail_every_commit {
                Some(injected("commit failed"))
            } else if s.fail_commits > 0 {
                s.fail_commits -= 1;
                Some(injected("commit failed"))
            } else if s.fail_commit_if.as_ref().is_some_and(|pred| pred(batch)) {
                s.fail_commit_if = None;
                Some(injected("commit failed"))
            } else {
                None
            };
            if fail.is_some() {
                s.failed_commits += 1;
            }
            fail
        };
        if let Some(e) = before {
            return Err(e);
        }
        let result = if synced {
            self.inner.commit(batch).await
        } else {
            self.inner.commit_unsynced(batch).await
        };
        let mut s = self.faults.lock();
        let result = match result {
            Ok(_) if s.fail_commits_after_writing > 0 => {
                s.fail_commits_after_writing -= 1;
                Err(injected("commit written, then failed"))
            }
            other => other,
        };
        if result.is_err() {
            s.failed_commits += 1;
        }
        result
    }
}

#[async_trait]
impl Store for Faulty {
    async fn migrate(&self) -> Result<()> {
        self.faults.check_reachable()?;
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<()> {
        self.faults.check_reachable()?;
        self.inner.ping().await
    }

    async fn server_key(&self) -> Result<[u8; 32]> {
        self.faults.check_reachable()?;
        self.inner.server_key().await
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<()> {
        self.faults.check_reachable()?;
        self.inner.put_site(site).await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>> {
        self.faults.check_reachable()?;
        self.inner.sites().await
    }

    async fn site_versions(&self) -> Result<Vec<(SiteId, u64)>> {
        self.faults.check_reachable()?;
        self.inner.site_versions().await
    }

    async fn replace_rules(&self, site: &SiteId, rules: &[RuleSpec]) -> Result<()> {
        self.faults.check_reachable()?;
        self.inner.replace_rules(site, rules).await
    }

    async fn rules(&self, site: &SiteId) -> Result<Vec<RuleSpec>> {
        self.faults.check_reachable()?;
        self.inner.rules(site).await
    }

    async fn rule_set(&self, site: &SiteId, version: u64) -> Result<Option<RuleSetVersion>> {
        self.faults.check_reachable()?;
        self.inner.rule_set(site, version).await
    }

    async fn commit(&self, batch: &WriteBatch) -> Result<CommitReport> {
        self.commit_as(batch, true).await
    }

    async fn commit_unsynced(&self, batch: &WriteBatch) -> Result<CommitReport> {
        self.commit_as(batch, false).await
    }

    async fn sync(&self) -> Result<()> {
        let mut gate = self.faults.sync_gate.subscribe();
        let held = !*gate.borrow();
        {
            let mut s = self.faults.lock();
            s.syncs += 1;
            s.held_syncs += usize::from(held);
        }
        if held {
            let _ = gate.wait_for(|open| *open).await;
        }
        {
            let mut s = self.faults.lock();
            if s.unreachable {
                return Err(injected("the database is unreachable"));
            }
            if s.fail_syncs > 0 {
                s.fail_syncs -= 1;
                s.failed_syncs += 1;
                return Err(injected("sync failed"));
            }
        }
        self.inner.sync().await
    }

    async fn known_keys(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        keys: &[String],
    ) -> Result<Vec<String>> {
        self.faults.check_read()?;
        self.inner.known_keys(site, visitor, keys).await
    }

    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>> {
        let waits = {
            let mut s = self.faults.lock();
            let waits = match &s.hold {
                Some(None) => true,
                Some(Some(v)) => v == visitor,
                None => false,
            };
            if waits {
                s.held += 1;
            }
            waits
        };
        if waits {
            let mut gate = self.faults.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
        }
        self.faults.check_read()?;
        if self.faults.lock().undecodable.as_ref() == Some(visitor) {
            return Err(StoreError::Undecodable(
                "written by another schema (injected)".to_owned(),
            ));
        }
        self.inner.visitor(site, visitor).await
    }

    async fn visitor_version(&self, site: &SiteId, visitor: &VisitorId) -> Result<u64> {
        self.faults.check_read()?;
        self.inner.visitor_version(site, visitor).await
    }

    async fn active_visitors(&self, since: Timestamp) -> Result<ActiveVisitors> {
        self.faults.check_reachable()?;
        let mut active = self.inner.active_visitors(since).await?;
        if let Some(bad) = self.faults.lock().undecodable.clone() {
            let before = active.records.len();
            active.records.retain(|r| r.visitor != bad);
            active.undecodable += before - active.records.len();
        }
        Ok(active)
    }

    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>> {
        self.faults.check_reachable()?;
        self.inner.exposures(site).await
    }

    async fn session_events(&self, site: &SiteId, session: &SessionId) -> Result<Vec<StoredEvent>> {
        self.faults.check_reachable()?;
        self.inner.session_events(site, session).await
    }

    async fn log(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LoggedBatch)>> {
        self.faults.check_reachable()?;
        self.inner.log(site, after, limit).await
    }

    async fn prune_log(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.faults.check_reachable()?;
        self.inner.prune_log(before, limit).await
    }
}
