//! Engine shards: each owns a slice of the live visitors, runs their batches through
//! [`Visitor::apply`], and wakes them when the engine asks.
//!
//! One task per shard owns its visitors outright, so the hot path takes no lock: a visitor's
//! messages always go to the same shard (by a hash of the visitor id) and are handled in order.
//! The shard never waits for the store on one visitor's behalf: a visitor that needs a read (a
//! cold load, a check of which event keys are already logged) is marked busy, the read runs
//! apart, and the visitor's later messages wait in its own queue while the shard goes on with
//! everyone else. Writes go to the group-commit writer, fenced by the visitor's load
//! generation; replies (acks, interventions) leave only once the writer says they are durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use beckon_engine::hash::fnv1a64;
use beckon_engine::{
    Event, EventId, Profile, SessionId, SessionStart, SiteId, Timestamp, VisitorId,
};
use beckon_store::{
    BatchContext, Exposure, LoggedBatch, Source, Store, StoreError, Verdict, VisitorRecord,
    VisitorWrite, WriteBatch,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::clock::Clock;
use crate::sites::Sites;
use crate::visit::{SessionRef, Visitor};
use crate::wire::{DownFrame, Incoming, Intervention, TICK_BODY};
use crate::writer::{WriteError, Writer};

/// Where a shard pushes a socket's frames (timer-driven interventions), and where the socket
/// takes them. `futures`' bounded channel rather than tokio's: an idle socket holds one, and
/// tokio's allocates a block of 32 slots and a cache-padded state up front (about 800 bytes),
/// `futures`' a few small nodes.
pub type PushSender = futures::channel::mpsc::Sender<Box<DownFrame>>;
/// The socket's end of a [`PushSender`].
pub type PushReceiver = futures::channel::mpsc::Receiver<Box<DownFrame>>;

/// A visitor idle this long is dropped from memory (its state is on disk).
pub const IDLE_EVICT: Duration = Duration::from_secs(30 * 60);
/// The longest a visitor's timer is set for; a later wake is re-checked then.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);
/// Messages that may wait for a shard; past it, the edge sheds (503).
pub const SHARD_QUEUE: usize = 1024;
/// Event keys a live visitor remembers as logged, to answer resends without a read.
pub const KNOWN_KEYS: usize = 128;
/// Batches one visitor may have waiting behind their running read; past it, more are shed.
pub const MAX_WAITING: usize = 64;
/// Store reads one shard may have running at once (each for one visitor). Past it, a batch
/// that needs a read is shed (503) rather than left waiting: a store that stopped answering
/// must not pile up work without bound.
pub const MAX_READS: usize = 256;
/// How often idle visitors are dropped from memory.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Who a session belongs to.
pub type VisitorKey = (SiteId, VisitorId);

/// Load generations, unique in the process and increasing, so that the writer can tell a
/// reloaded visitor state from the one whose write failed.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A batch of a visitor's events for the shard that owns them.
pub struct BatchJob {
    /// The site.
    pub site: SiteId,
    /// The visitor (verified by the edge).
    pub visitor: VisitorId,
    /// The visit the batch speaks for.
    pub session: SessionRef,
    /// Who sent it.
    pub source: Source,
    /// What the edge knows, used when a new visit starts.
    pub start: SessionStart,
    /// The request context, for the log.
    pub context: BatchContext,
    /// The events, already validated.
    pub events: Vec<Incoming>,
    /// Where the answer goes, once durable.
    pub reply: oneshot::Sender<Result<BatchReply, BatchError>>,
}

/// The answer to a batch.
#[derive(Debug, Default)]
pub struct BatchReply {
    /// Every id of the batch, stored now or before.
    pub acked: Vec<EventId>,
    /// Events new to the log.
    pub accepted: usize,
    /// Events seen before.
    pub duplicates: usize,
    /// What fired, for the visitor.
    pub interventions: Vec<Intervention>,
}

/// Why a batch was not stored.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BatchError {
    /// The store failed (or an earlier write of this visitor did); nothing of the batch was
    /// stored and a resend will be applied once.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The shard's queue is full.
    #[error("the server is overloaded")]
    Overloaded,
    /// The site is not served (any more).
    #[error("unknown site")]
    UnknownSite,
    /// The shard has stopped.
    #[error("the engine shard has stopped")]
    Stopped,
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::Unavailable(e.to_string())
    }
}

impl From<WriteError> for BatchError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stopped => BatchError::Stopped,
            other => BatchError::Unavailable(other.to_string()),
        }
    }
}

/// A message to a shard.
pub enum ShardMsg {
    /// Events to decide on.
    Batch(BatchJob),
    /// A WebSocket connection that wants pushes (timer-driven interventions) for a visitor.
    Attach {
        /// The visitor.
        key: VisitorKey,
        /// The connection's id.
        conn: u64,
        /// Where to push.
        tx: PushSender,
    },
    /// The connection closed.
    Detach {
        /// The visitor.
        key: VisitorKey,
        /// The connection's id.
        conn: u64,
    },
    /// A frame for every socket of the visitor that is attached (a conversation a person
    /// started for them); dropped when they have none.
    Notify {
        /// The visitor.
        key: VisitorKey,
        /// The frame.
        frame: Box<DownFrame>,
    },
    /// A persisted visitor to resume after a restart (its timer is re-armed).
    Resume(Box<VisitorRecord>),
    /// The edge judged a batch of this visit a bot's (its user agent, its automation): the
    /// visit, if live here, is marked for good, its timer cancelled, its state written.
    MarkBot {
        /// The visitor.
        key: VisitorKey,
        /// The session the batch named.
        session: SessionId,
        /// Why (`layer: reason`).
        reason: String,
    },
    /// The cluster's view changed: visitors another node now owns leave this one, their
    /// sockets closed so that they reconnect to the owner.
    Disown,
    /// Answers when the shard is running (for `/readyz`).
    Ping(oneshot::Sender<()>),
}

/// What the shard's own helpers report back. These travel on a channel apart from the edge's
/// bounded queue, so that a full queue never delays a failure or a finished read.
enum Internal {
    Loaded {
        key: VisitorKey,
        result: Result<Option<Box<VisitorRecord>>, StoreError>,
        /// When the stored state could not be read back: the version it is at, which the
        /// fresh state's first write must name.
        undecodable_version: u64,
    },
    Known {
        key: VisitorKey,
        job: Box<BatchJob>,
        result: Result<Vec<String>, StoreError>,
    },
    Committed {
        key: VisitorKey,
        generation: u64,
        keys: Vec<String>,
        /// The commit wrote the visitor's state (see [`Slot::state_writes`]).
        wrote_state: bool,
        ok: bool,
        /// What a timer or the backend fired, for the visitor once durable.
        undelivered: Vec<Intervention>,
    },
}

/// How the shards are built.
#[derive(Clone)]
pub struct ShardConfig {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The group-commit writer.
    pub writer: Writer,
    /// The sites, for the engine in force.
    pub sites: Sites,
    /// The clock.
    pub clock: Clock,
    /// Live visitors one shard may hold.
    pub max_live: usize,
    /// The help desk, for rules' AI-written greetings (none: the rules' own texts).
    pub desk: Option<beckon_agent::Desk>,
    /// Which visitors are this node's.
    pub placement: crate::placement::Placement,
}

/// The shards, addressed by visitor.
#[derive(Clone)]
pub struct Shards {
    senders: Arc<Vec<mpsc::Sender<ShardMsg>>>,
}

impl Shards {
    /// Starts `n` shards.
    pub fn start(
        n: usize,
        config: ShardConfig,
        shutdown: CancellationToken,
    ) -> (Shards, Vec<tokio::task::JoinHandle<()>>) {
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            let (internal_tx, internal_rx) = mpsc::unbounded_channel();
            let shard = Shard {
                slots: HashMap::new(),
                reading: 0,
                live: 0,
                timers: DelayQueue::new(),
                config: config.clone(),
                internal: internal_tx,
            };
            tasks.push(tokio::spawn(shard.run(rx, internal_rx, shutdown.clone())));
            senders.push(tx);
        }
        (
            Shards {
                senders: Arc::new(senders),
            },
            tasks,
        )
    }

    fn sender(&self, visitor: &VisitorId) -> &mpsc::Sender<ShardMsg> {
        let i = (fnv1a64(visitor.as_str()) % self.senders.len() as u64) as usize;
        &self.senders[i]
    }

    /// Sends a message to the shard that owns `visitor`, waiting for room in its queue.
    pub async fn send(&self, visitor: &VisitorId, msg: ShardMsg) -> Result<(), BatchError> {
        self.sender(visitor)
            .send(msg)
            .await
            .map_err(|_| BatchError::Stopped)
    }

    /// Sends a message to the shard that owns `visitor` if its queue has room: a request is
    /// shed rather than left waiting on an overloaded shard.
    pub fn try_send(&self, visitor: &VisitorId, msg: ShardMsg) -> Result<(), BatchError> {
        self.sender(visitor).try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BatchError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => BatchError::Stopped,
        })
    }

    /// Tells every shard that the cluster's view changed.
    pub async fn disown(&self) {
        for shard in self.senders.iter() {
            let _ = shard.send(ShardMsg::Disown).await;
        }
    }

    /// Whether every shard task is still running (a stopped or panicked shard drops its
    /// queue).
    pub fn alive(&self) -> bool {
        !self.senders.iter().any(|s| s.is_closed())
    }
}

/// A visitor this shard knows of: their live state (if loaded), their sockets, and the work
/// that waits while a read runs.
#[derive(Default)]
struct Slot {
    /// Boxed: a slot sits in the shard's hash table, whose spare buckets would otherwise
    /// each hold a whole visitor state's worth of bytes.
    live: Option<Box<Live>>,
    /// A read for this visitor is running; its messages wait in `waiting`.
    busy: bool,
    waiting: VecDeque<Work>,
    /// Keys of writes not yet answered by the writer.
    inflight: HashMap<String, u32>,
    /// Writes of this visitor's state not yet answered (some log no key, as a bot mark's):
    /// the state may not leave memory before they answer, or it would be reloaded at a
    /// version they are about to move on.
    state_writes: u32,
    /// Each socket's push channel. Its frames are boxed: a channel allocates its first block
    /// of slots up front, and a boxed slot is a pointer, not a whole frame, on every idle
    /// socket.
    conns: Vec<(u64, PushSender)>,
    /// Interventions fired (and committed) while no socket was attached; delivered with the
    /// next answer of the same visit.
    pending: Vec<Intervention>,
    /// A commit of this visitor failed and its state was dropped: its other writes still in
    /// flight must all answer (they will be fenced) before the state is reloaded, so that a
    /// resend is never taken for a write that will not land. Work waits meanwhile, as it does
    /// behind a read.
    settling: bool,
    /// A commit of this visitor failed: the next load trusts no memory of its keys and asks
    /// the store (the failure may have been a key logged under it by other means).
    distrust: bool,
}

impl Slot {
    /// Nothing of this visitor is running: no read, no write, no work waiting.
    fn settled(&self) -> bool {
        !self.busy
            && !self.settling
            && self.waiting.is_empty()
            && self.inflight.is_empty()
            && self.state_writes == 0
    }
}

/// Work deferred until a visitor's read finishes.
enum Work {
    Batch(Box<BatchJob>),
    Tick,
}

/// A visitor's state in memory.
struct Live {
    visitor: Visitor,
    generation: u64,
    /// Keys known to be logged (a cache of the durable truth).
    known: HashSet<String>,
    /// Every key this visitor ever logged is in `known`: the state was born in this process and
    /// `known` never overflowed, so a key not in it is new without asking the store.
    complete: bool,
    /// The profile as last queued for writing, to write it only when it changed.
    /// A fingerprint of the profile as last queued for writing (a hash of its persisted form,
    /// rather than a copy of it kept on every live visitor).
    written_profile: Option<u64>,
    timer: Option<delay_queue::Key>,
    next_wake: Option<Timestamp>,
    last_seen: Timestamp,
    /// The stored version the next write of this state is built on: the version read, plus
    /// one per write queued since (the fence against another node's writes; see
    /// [`VisitorWrite::expect`]).
    version: u64,
}

impl Live {
    fn new(visitor: Visitor, complete: bool, last_seen: Timestamp, version: u64) -> Box<Live> {
        Box::new(Live {
            version,
            visitor,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            known: HashSet::new(),
            complete,
            written_profile: None,
            timer: None,
            next_wake: None,
            last_seen,
        })
    }

    fn remember(&mut self, keys: Vec<String>) {
        for key in keys {
            if self.known.len() >= KNOWN_KEYS {
                // From here on, a miss must ask the store.
                self.known.clear();
                self.complete = false;
            }
            self.known.insert(key);
        }
    }
}

struct Shard {
    slots: HashMap<VisitorKey, Slot>,
    /// Store reads running.
    reading: usize,
    /// Slots with live state.
    live: usize,
    timers: DelayQueue<VisitorKey>,
    config: ShardConfig,
    internal: mpsc::UnboundedSender<Internal>,
}

impl Shard {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ShardMsg>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        shutdown: CancellationToken,
    ) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                biased;
                Some(msg) = internal.recv() => self.internal(msg).await,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    self.wake(expired.into_inner()).await;
                }
                _ = sweep.tick() => self.sweep(),
                _ = shutdown.cancelled() => break,
            }
        }
        // What this shard held leaves the gauge with it.
        crate::metrics::live_sessions(-(self.live as i64));
    }

    async fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Batch(job) => {
                let key = (job.site.clone(), job.visitor.clone());
                self.submit(key, Work::Batch(Box::new(job))).await;
            }
            ShardMsg::Attach { key, conn, mut tx } => {
                let slot = self.slots.entry(key).or_default();
                for i in slot.pending.drain(..) {
                    // A full socket queue means a stuck client; it keeps the intervention's
                    // effects (caps) but not the message, which is fine.
                    let _ = tx.try_send(Box::new(DownFrame::Intervention(i))).is_ok();
                }
                slot.conns.push((conn, tx));
            }
            ShardMsg::Detach { key, conn } => {
                if let Some(slot) = self.slots.get_mut(&key) {
                    slot.conns.retain(|(c, _)| *c != conn);
                }
                self.forget_if_empty(&key);
            }
            ShardMsg::Notify { key, frame } => {
                if let Some(slot) = self.slots.get_mut(&key) {
                    for (_, tx) in &mut slot.conns {
                        let _ = tx.try_send(frame.clone());
                    }
                }
            }
            ShardMsg::Resume(record) => {
                // A visit judged a bot's has nothing to wake for.
                if record.session.as_ref().is_some_and(|s| s.state.is_bot()) {
                    return;
                }
                let key = (record.site.clone(), record.visitor.clone());
                let slot = self.slots.entry(key.clone()).or_default();
                if slot.live.is_some() || slot.busy || record.session.is_none() {
                    return;
                }
                let (last_seen, version) = (record.last_seen, record.version);
                slot.live = Some(Live::new(
                    Visitor::from_record(*record),
                    false,
                    last_seen,
                    version,
                ));
                self.count_live(1);
                self.make_room();
                self.wake(key).await;
            }
            ShardMsg::MarkBot {
                key,
                session,
                reason,
            } => self.mark_bot(key, &session, reason).await,
            ShardMsg::Disown => self.disown(),
            ShardMsg::Ping(tx) => {
                let _ = tx.send(());
            }
        }
    }

    /// Marks the visitor's live visit `session` a bot's (see [`ShardMsg::MarkBot`]). A visitor
    /// not in memory, busy loading, or on another visit is left as is: nothing of theirs can
    /// fire before their next batch, which the edge judges again.
    async fn mark_bot(&mut self, key: VisitorKey, session: &SessionId, reason: String) {
        let now = self.config.clock.now();
        let Some(live) = self
            .slots
            .get_mut(&key)
            .filter(|slot| !slot.busy && !slot.settling)
            .and_then(|slot| slot.live.as_mut())
        else {
            return;
        };
        if !live.visitor.mark_edge_bot(session, reason) {
            return;
        }
        live.next_wake = None;
        let write = WriteBatch {
            visitors: vec![VisitorWrite {
                site: key.0.clone(),
                visitor: key.1.clone(),
                profile: None,
                session: live.visitor.session_record(),
                last_seen: now,
                // Set by `finish`, like every write of this state.
                expect: None,
            }],
            ..WriteBatch::default()
        };
        self.finish(key, write, now, None, Vec::new()).await;
    }

    /// Runs `work` now, or queues it behind the visitor's running read.
    async fn submit(&mut self, key: VisitorKey, work: Work) {
        let slot = self.slots.entry(key.clone()).or_default();
        if slot.busy || slot.settling {
            match work {
                Work::Batch(job) if slot.waiting.len() >= MAX_WAITING => {
                    crate::metrics::shed("visitor_queue");
                    let _ = job.reply.send(Err(BatchError::Overloaded));
                }
                work => slot.waiting.push_back(work),
            }
            return;
        }
        self.process(key, work).await;
    }

    /// Runs the visitor's waiting work until a read makes them busy again.
    async fn drain(&mut self, key: VisitorKey) {
        loop {
            let Some(slot) = self.slots.get_mut(&key) else {
                return;
            };
            if slot.busy || slot.settling {
                return;
            }
            let Some(work) = slot.waiting.pop_front() else {
                break;
            };
            self.process(key.clone(), work).await;
        }
        self.forget_if_empty(&key);
    }

    async fn process(&mut self, key: VisitorKey, work: Work) {
        let slot = self.slots.get_mut(&key).expect("slot exists");
        let Some(live) = slot.live.as_mut() else {
            match work {
                // A tick for a visitor no longer in memory has nothing to wake.
                Work::Tick => {}
                Work::Batch(job) if self.reading >= MAX_READS => {
                    crate::metrics::shed("reads");
                    let _ = job.reply.send(Err(BatchError::Overloaded));
                    self.forget_if_empty(&key);
                }
                Work::Batch(job) => {
                    slot.waiting.push_front(Work::Batch(job));
                    self.load(key);
                }
            }
            return;
        };
        let job = match work {
            Work::Tick => return self.tick(key).await,
            Work::Batch(job) => *job,
        };
        // Keys this batch brings that neither memory nor an in-flight write knows.
        let unknown: Vec<String> = job
            .events
            .iter()
            .map(|e| e.key.clone())
            .filter(|k| !live.known.contains(k) && !slot.inflight.contains_key(k))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // Order keys are unique per site, not per visitor: another visitor may have logged
        // one, so memory can never vouch for them.
        let must_ask = !live.complete || unknown.iter().any(|k| k.starts_with("order:"));
        if unknown.is_empty() || !must_ask {
            return self.apply(key, job, HashSet::new()).await;
        }
        if self.reading >= MAX_READS {
            crate::metrics::shed("reads");
            let _ = job.reply.send(Err(BatchError::Overloaded));
            return;
        }
        let job = Box::new(job);
        self.reading += 1;
        slot.busy = true;
        let store = self.config.store.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let result = store.known_keys(&key.0, &key.1, &unknown).await;
            let _ = tx.send(Internal::Known { key, job, result });
        });
    }

    /// Starts reading the visitor's state; their work waits meanwhile.
    fn load(&mut self, key: VisitorKey) {
        let slot = self.slots.get_mut(&key).expect("slot exists");
        slot.busy = true;
        self.reading += 1;
        let store = self.config.store.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let mut result = store.visitor(&key.0, &key.1).await.map(|r| r.map(Box::new));
            let mut undecodable_version = 0;
            if matches!(result, Err(StoreError::Undecodable(_))) {
                match store.visitor_version(&key.0, &key.1).await {
                    Ok(v) => undecodable_version = v,
                    Err(e) => result = Err(e),
                }
            }
            let _ = tx.send(Internal::Loaded {
                key,
                result,
                undecodable_version,
            });
        });
    }

    async fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Loaded {
                key,
                result,
                undecodable_version,
            } => {
                self.reading -= 1;
                let now = self.config.clock.now();
                let Some(slot) = self.slots.get_mut(&key) else {
                    return;
                };
                slot.busy = false;
                let trust = !std::mem::take(&mut slot.distrust);
                let live = match result {
                    Ok(Some(record)) => {
                        let version = record.version;
                        Live::new(Visitor::from_record(*record), false, now, version)
                    }
                    // Nothing stored: every key this visitor will log passes through here.
                    Ok(None) => Live::new(Visitor::fresh(key.1.clone()), trust, now, 0),
                    Err(StoreError::Undecodable(reason)) => {
                        tracing::warn!(site = %key.0, visitor = %key.1, %reason, "stored visitor state is unreadable; the visitor starts afresh");
                        crate::metrics::undecodable_state();
                        // Keys already logged may exist: ask the store about them.
                        Live::new(
                            Visitor::fresh(key.1.clone()),
                            false,
                            now,
                            undecodable_version,
                        )
                    }
                    Err(e) => {
                        // The work that waited cannot run: tell each sender, keep nothing.
                        for work in slot.waiting.drain(..) {
                            if let Work::Batch(job) = work {
                                let _ = job.reply.send(Err(e.clone().into()));
                            }
                        }
                        self.forget_if_empty(&key);
                        return;
                    }
                };
                slot.live = Some(live);
                self.count_live(1);
                self.make_room();
                self.drain(key).await;
            }
            Internal::Known { key, job, result } => {
                self.reading -= 1;
                let Some(slot) = self.slots.get_mut(&key) else {
                    let _ = job.reply.send(Err(BatchError::Stopped));
                    return;
                };
                slot.busy = false;
                match result {
                    // A failed commit dropped the state while the read ran: the batch starts
                    // over on the state reloaded from the store.
                    Ok(_) if slot.live.is_none() => {
                        slot.waiting.push_front(Work::Batch(job));
                    }
                    Ok(found) => {
                        let found: HashSet<String> = found.into_iter().collect();
                        if let Some(live) = slot.live.as_mut() {
                            live.remember(found.iter().cloned().collect());
                        }
                        self.apply(key.clone(), *job, found).await;
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e.into()));
                    }
                }
                self.drain(key).await;
            }
            Internal::Committed {
                key,
                generation,
                keys,
                wrote_state,
                ok,
                undelivered,
            } => {
                let Some(slot) = self.slots.get_mut(&key) else {
                    return;
                };
                if wrote_state {
                    slot.state_writes = slot.state_writes.saturating_sub(1);
                }
                if ok && !undelivered.is_empty() {
                    // Fired by a timer or the backend, now durable: to the sockets attached
                    // now, or with the visitor's next answer.
                    if slot.conns.is_empty() {
                        slot.pending.extend(undelivered);
                    } else {
                        for (_, tx) in &mut slot.conns {
                            for i in &undelivered {
                                let _ = tx.try_send(Box::new(DownFrame::Intervention(i.clone())));
                            }
                        }
                    }
                }
                for k in &keys {
                    if let Some(n) = slot.inflight.get_mut(k) {
                        *n -= 1;
                        if *n == 0 {
                            slot.inflight.remove(k);
                        }
                    }
                }
                let current = slot
                    .live
                    .as_ref()
                    .is_some_and(|l| l.generation == generation);
                if ok {
                    if let Some(live) = slot.live.as_mut().filter(|_| current) {
                        live.remember(keys);
                    }
                } else if current {
                    // What waited for delivery leaves memory with the state it belongs to.
                    slot.pending.clear();
                    // The memory is ahead of the disk: drop it, so that the next batch reloads
                    // what is durable and the client's resend is applied to it exactly once.
                    // Writes already queued on this state are fenced by the writer.
                    if let Some(live) = slot.live.take() {
                        if let Some(t) = live.timer {
                            self.timers.remove(&t);
                        }
                        slot.distrust = true;
                        slot.settling = !slot.inflight.is_empty() || slot.state_writes > 0;
                        self.count_live(-1);
                    }
                }
                let slot = self.slots.get_mut(&key).expect("slot exists");
                if slot.settling && slot.inflight.is_empty() && slot.state_writes == 0 {
                    // Every write of the failed state has answered: reload on the next batch.
                    slot.settling = false;
                    self.drain(key.clone()).await;
                }
                self.let_go_if_moved(&key);
                self.forget_if_empty(&key);
            }
        }
    }

    /// Applies a batch to a loaded visitor: `durable` holds the batch's keys the store already
    /// has.
    async fn apply(&mut self, key: VisitorKey, job: BatchJob, durable: HashSet<String>) {
        let now = self.config.clock.now();
        let Some(site) = self.config.sites.get_id(&key.0) else {
            let _ = job.reply.send(Err(BatchError::UnknownSite));
            return;
        };
        let slot = self.slots.get_mut(&key).expect("slot exists");
        let live = slot.live.as_mut().expect("loaded");
        let mut reply = BatchReply::default();
        let mut fresh = Vec::with_capacity(job.events.len());
        let mut seen_here = HashSet::new();
        for incoming in job.events {
            reply.acked.push(incoming.id.clone());
            let k = &incoming.key;
            if live.known.contains(k)
                || slot.inflight.contains_key(k)
                || durable.contains(k)
                || !seen_here.insert(k.clone())
            {
                reply.duplicates += 1;
                continue;
            }
            fresh.push(incoming);
        }
        reply.accepted = fresh.len();
        crate::metrics::duplicate_events(reply.duplicates);
        if fresh.is_empty() {
            // Nothing new: nothing to decide or log (a visit must not begin unlogged). The
            // answer still waits for the writes queued before it, so that a resend of a write
            // still in flight is answered only once that write has landed.
            if job.source == Source::Browser {
                let slot = self.slots.get_mut(&key).expect("slot exists");
                reply.interventions.append(&mut slot.pending);
            }
            return self
                .finish(
                    key,
                    WriteBatch::default(),
                    now,
                    Some((job.reply, reply)),
                    Vec::new(),
                )
                .await;
        }
        let mut new_id = crate::ids::intervention_id;
        let effect = live.visitor.apply(
            &site.engine,
            &job.session,
            &job.start,
            fresh,
            now,
            &mut new_id,
        );
        if let Some(wake) = effect.next_wake {
            live.next_wake = wake;
        }
        crate::metrics::decided(&effect.decisions);
        let refused = effect
            .events
            .iter()
            .filter(|e| matches!(e.applied, beckon_store::Applied::Refused(_)))
            .count();
        crate::metrics::refused_events(refused);
        // A bot's form is no one's lead.
        let leads = if effect.bot.is_some() {
            Vec::new()
        } else {
            crate::lead_capture::captured(
                &site.engine,
                &key.0,
                &key.1,
                &effect.events,
                &job.context,
                || live.visitor.template_context(),
                now,
            )
        };
        let logged = (!effect.events.is_empty()).then(|| LoggedBatch {
            site: key.0.clone(),
            visitor: key.1.clone(),
            session: effect.session.clone(),
            at: now,
            source: job.source,
            context: job.context,
            verdict: verdict_of(&effect.bot),
            rules_version: site.version(),
            begins: effect.begins.clone(),
            events: effect.events,
        });
        let mut write = WriteBatch {
            leads,
            ..WriteBatch::default()
        };
        let mut fired = effect.fired;
        if let Some(desk) = &self.config.desk {
            crate::greet::apply(desk, &site, &mut fired, || live.visitor.template_context());
        }
        let pushed = record_fired(&key, fired, now, &mut write);
        // What the merchant's backend triggers reaches the visitor apart (its answer goes to
        // the backend); the browser's own batch carries it in the answer.
        let apart = if job.source == Source::Browser {
            let slot = self.slots.get_mut(&key).expect("slot exists");
            if logged.as_ref().is_some_and(|b| b.begins.is_some()) {
                // What waited was for the visit that just ended.
                slot.pending.clear();
            }
            reply.interventions.append(&mut slot.pending);
            reply.interventions.extend(pushed);
            Vec::new()
        } else {
            pushed
        };
        if let Some(batch) = logged {
            write.batches.push(batch);
        }
        self.finish(key, write, now, Some((job.reply, reply)), apart)
            .await;
    }

    /// A visitor's timer is due: decide on a tick.
    async fn wake(&mut self, key: VisitorKey) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        if let Some(live) = slot.live.as_mut() {
            live.timer = None;
        }
        self.submit(key, Work::Tick).await;
    }

    async fn tick(&mut self, key: VisitorKey) {
        let now = self.config.clock.now();
        let Some(site) = self.config.sites.get_id(&key.0) else {
            return;
        };
        let slot = self.slots.get_mut(&key).expect("slot exists");
        let live = slot.live.as_mut().expect("loaded");
        if live.visitor.visit.is_none() {
            return;
        }
        let tick_key = format!("tick:{}", crate::ids::tick_id());
        let incoming = Incoming {
            id: EventId::parse(&tick_key).expect("a valid id"),
            key: tick_key,
            kind: "tick",
            event: Event::Tick,
            outcome: None,
            body: TICK_BODY.to_owned(),
        };
        let mut new_id = crate::ids::intervention_id;
        let effect = live.visitor.apply(
            &site.engine,
            &SessionRef::Current,
            &SessionStart::default(),
            vec![incoming],
            now,
            &mut new_id,
        );
        if let Some(wake) = effect.next_wake {
            live.next_wake = wake;
        }
        crate::metrics::decided(&effect.decisions);
        let mut write = WriteBatch::default();
        let mut fired = effect.fired;
        if let Some(desk) = &self.config.desk {
            crate::greet::apply(desk, &site, &mut fired, || live.visitor.template_context());
        }
        let pushed = record_fired(&key, fired, now, &mut write);
        write.batches.push(LoggedBatch {
            site: key.0.clone(),
            visitor: key.1.clone(),
            session: effect.session,
            at: now,
            source: Source::Timer,
            context: BatchContext::default(),
            verdict: verdict_of(&effect.bot),
            rules_version: site.version(),
            begins: None,
            events: effect.events,
        });
        self.finish(key, write, now, None, pushed).await;
    }

    /// Re-arms the timer, queues the write with the visitor's state, and answers once it is
    /// durable: `reply` to the batch's sender, `apart` (what a timer or the merchant's backend
    /// fired) to the visitor's open sockets, or with their next answer when none is open.
    async fn finish(
        &mut self,
        key: VisitorKey,
        mut write: WriteBatch,
        now: Timestamp,
        reply: Option<(oneshot::Sender<Result<BatchReply, BatchError>>, BatchReply)>,
        apart: Vec<Intervention>,
    ) {
        let slot = self.slots.get_mut(&key).expect("slot exists");
        let live = slot.live.as_mut().expect("loaded");
        live.last_seen = now;
        if let Some(t) = live.timer.take() {
            self.timers.remove(&t);
        }
        if let Some(wake) = live.next_wake {
            // A wake far away (a schedule that starts next year, a long silence) is re-checked
            // daily instead: a tick re-decides and re-arms, and timers stay within what the
            // timer wheel can hold.
            let delay = Duration::from_millis(
                wake.as_millis().saturating_sub(now.as_millis()).max(0) as u64,
            )
            .min(MAX_TIMER);
            live.timer = Some(self.timers.insert(key.clone(), delay));
        }
        let keys: Vec<String> = write
            .batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.key.clone()))
            .collect();
        if !keys.is_empty() {
            let profile = &live.visitor.profile;
            let fingerprint = profile_fingerprint(profile);
            let changed = live.written_profile != Some(fingerprint);
            if changed {
                live.written_profile = Some(fingerprint);
            }
            write.visitors.push(VisitorWrite {
                site: key.0.clone(),
                visitor: key.1.clone(),
                profile: changed.then(|| profile.clone()),
                session: live.visitor.session_record(),
                last_seen: now,
                expect: None,
            });
        }
        // Every write of this state is fenced by the version it is built on.
        for w in &mut write.visitors {
            w.expect = Some(live.version);
            live.version += 1;
        }
        for k in &keys {
            *slot.inflight.entry(k.clone()).or_default() += 1;
        }
        let wrote_state = !write.visitors.is_empty();
        if wrote_state {
            slot.state_writes += 1;
        }
        let generation = live.generation;
        // Queued here, in the shard, so writes reach the writer in the order they were applied;
        // only the wait for the commit runs apart.
        let committed = self
            .config
            .writer
            .enqueue(write, vec![(key.clone(), generation)])
            .await;
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let result = committed.await;
            // Memory first, then the answer: a client that resends on the answer finds the
            // keys known (or still in flight), never neither.
            // What a timer or the backend fired goes out from the shard, once durable.
            let _ = internal.send(Internal::Committed {
                key,
                generation,
                keys,
                wrote_state,
                ok: result.is_ok(),
                undelivered: apart,
            });
            if let Some((tx, reply)) = reply {
                let _ = tx.send(result.map(|_| reply).map_err(BatchError::from));
            }
        });
    }

    /// Counts a visitor state gained (+1) or dropped (-1), here and in the gauge.
    fn count_live(&mut self, change: i64) {
        self.live = self.live.saturating_add_signed(change as isize);
        crate::metrics::live_sessions(change);
    }

    /// Drops a slot that holds nothing.
    fn forget_if_empty(&mut self, key: &VisitorKey) {
        if let Some(slot) = self.slots.get(key) {
            if slot.live.is_none()
                && !slot.busy
                && !slot.settling
                && slot.waiting.is_empty()
                && slot.inflight.is_empty()
                && slot.state_writes == 0
                && slot.conns.is_empty()
                && slot.pending.is_empty()
            {
                self.slots.remove(key);
            }
        }
    }

    /// Keeps live visitors within the limit: past it, the longest idle tenth of those without a
    /// socket, a read or a write in flight leaves memory (their state is on disk).
    fn make_room(&mut self) {
        if self.live <= self.config.max_live {
            return;
        }
        let mut idle: Vec<(Timestamp, VisitorKey)> = self
            .slots
            .iter()
            // Never one with work waiting (the visitor just loaded for its batch, say).
            .filter(|(_, s)| {
                s.conns.is_empty()
                    && !s.busy
                    && s.inflight.is_empty()
                    && s.state_writes == 0
                    && s.waiting.is_empty()
            })
            .filter_map(|(k, s)| s.live.as_ref().map(|l| (l.last_seen, k.clone())))
            .collect();
        let drop_n = (self.live - self.config.max_live)
            .max(self.config.max_live / 10)
            .max(1);
        if idle.len() > drop_n {
            idle.select_nth_unstable(drop_n);
            idle.truncate(drop_n);
        }
        for (_, key) in idle {
            self.evict(&key);
        }
    }

    fn evict(&mut self, key: &VisitorKey) {
        if let Some(slot) = self.slots.get_mut(key) {
            // Kept only for this visit's next answer; the visit leaves memory with it.
            slot.pending.clear();
        }
        if let Some(live) = self.slots.get_mut(key).and_then(|s| s.live.take()) {
            if let Some(t) = live.timer {
                self.timers.remove(&t);
            }
            self.count_live(-1);
        }
        self.forget_if_empty(key);
    }

    /// Lets go of the visitors another node now owns: their state (durable already, or about
    /// to be refused as stale), their timers and their sockets, which close so that the widget
    /// reconnects, to the owner. A visitor with a read or a write in flight is let go at the
    /// next sweep, once it has settled.
    fn disown(&mut self) {
        let placement = &self.config.placement;
        let gone: Vec<VisitorKey> = self
            .slots
            .iter()
            .filter(|(k, s)| s.settled() && !placement.is_mine(&k.0, &k.1))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.let_go(&key);
        }
    }

    /// Lets `key` go once it has settled, if another node owns it now: a visitor busy when
    /// the view changed is let go as soon as its read or write answers.
    fn let_go_if_moved(&mut self, key: &VisitorKey) {
        let placement = &self.config.placement;
        if placement.clustered()
            && self.slots.get(key).is_some_and(Slot::settled)
            && !placement.is_mine(&key.0, &key.1)
        {
            self.let_go(key);
        }
    }

    /// Drops `key`'s slot whole: its state, its timer and its sockets' channels (which close
    /// them, so the widget reconnects to the owner).
    fn let_go(&mut self, key: &VisitorKey) {
        if let Some(slot) = self.slots.remove(key)
            && let Some(live) = slot.live
        {
            if let Some(t) = live.timer {
                self.timers.remove(&t);
            }
            self.count_live(-1);
        }
    }

    fn sweep(&mut self) {
        if self.config.placement.clustered() {
            self.disown();
        }
        let cutoff = self.config.clock.now().as_millis() - IDLE_EVICT.as_millis() as i64;
        let idle: Vec<VisitorKey> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.conns.is_empty() && !s.busy && s.inflight.is_empty() && s.state_writes == 0
            })
            .filter(|(_, s)| {
                s.live
                    .as_ref()
                    .is_some_and(|l| l.last_seen.as_millis() < cutoff)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            self.evict(&key);
        }
    }
}

/// A fingerprint of a profile's persisted form, to tell whether it changed since it was last
/// written.
fn profile_fingerprint(profile: &Profile) -> u64 {
    let bytes = serde_json::to_vec(profile).unwrap_or_default();
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&bytes, &mut hasher);
    std::hash::Hasher::finish(&hasher)
}

/// The verdict a batch of a visit is logged with: a person's, unless what the visit did
/// showed a bot.
fn verdict_of(bot: &Option<String>) -> Verdict {
    match bot {
        Some(reason) => Verdict::Bot {
            reason: reason.clone(),
        },
        None => Verdict::Human,
    }
}

/// Records what fired as exposures in `write`, and returns the interventions to show (the
/// treated ones; a ghost is only recorded).
fn record_fired(
    key: &VisitorKey,
    fired: Vec<crate::visit::Fired>,
    now: Timestamp,
    write: &mut WriteBatch,
) -> Vec<Intervention> {
    let mut shown = Vec::new();
    for fired in fired {
        write.exposures.push(Exposure {
            id: fired.intervention.clone(),
            site: key.0.clone(),
            visitor: key.1.clone(),
            session: fired.session,
            rule: fired.rule.clone(),
            arm: fired.arm,
            at: now,
            message: fired
                .message
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_default())
                .unwrap_or_default(),
        });
        if let Some(message) = fired.message {
            shown.push(Intervention {
                id: fired.intervention,
                rule: fired.rule.to_string(),
                message,
            });
        }
    }
    shown
}
