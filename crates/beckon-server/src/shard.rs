//! Engine shards: each owns a slice of the live sessions, runs the engine on them, and wakes
//! them when the engine asks.
//!
//! One task per shard owns its sessions outright, so the hot path takes no lock: a visitor's
//! events always go to the same shard (by a hash of the visitor id) and are handled in order.
//! Writes go to the group-commit writer; replies (acks, interventions) leave only once the
//! writer says the batch is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use beckon_engine::hash::fnv1a64;
use beckon_engine::session::Arm;
use beckon_engine::{Engine, Event, Outcome, Profile, SessionStart, SiteId, Timestamp, VisitorId};
use beckon_store::{Exposure, SessionRecord, Store, StoredEvent, VisitorRecord, WriteBatch};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::time::{DelayQueue, delay_queue};

use crate::clock::now;
use crate::sites::SiteRuntime;
use crate::wire::{DownFrame, Incoming, Intervention};
use crate::writer::Writer;

/// A session idle this long is dropped from memory (its state is on disk).
pub const IDLE_EVICT: Duration = Duration::from_secs(30 * 60);
/// How many recent event ids a session remembers to drop resends.
pub const RECENT_IDS: usize = 256;
/// The session id the merchant's backend uses for "whatever session the visitor has now".
pub const CURRENT_SESSION: &str = "current";
/// The longest a session's timer is set for; a later wake is re-checked then.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);
/// How many previous session ids a visitor's state remembers.
pub const ENDED_SESSIONS: usize = 8;
/// Messages that may wait for a shard.
pub const SHARD_QUEUE: usize = 1024;

/// Who a session belongs to.
pub type VisitorKey = (SiteId, VisitorId);

/// A batch of a visitor's events for the shard that owns them.
pub struct BatchJob {
    /// The site.
    pub site: Arc<SiteRuntime>,
    /// The visitor.
    pub visitor: VisitorId,
    /// The session id the widget uses.
    pub session: String,
    /// What the edge knows, used when a new session starts.
    pub start: SessionStart,
    /// The events, already validated.
    pub events: Vec<Incoming>,
    /// Where the answer goes, once durable.
    pub reply: oneshot::Sender<Result<BatchReply, String>>,
    /// Sent by the merchant's backend: its answer goes to the backend, so what fires is
    /// delivered to the visitor like a timer's intervention instead.
    pub backend: bool,
}

/// The answer to a batch.
#[derive(Debug, Default)]
pub struct BatchReply {
    /// Every id of the batch, stored now or before.
    pub acked: Vec<String>,
    /// Events new to the log.
    pub accepted: usize,
    /// Events seen before.
    pub duplicates: usize,
    /// What fired.
    pub interventions: Vec<Intervention>,
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
        tx: mpsc::Sender<DownFrame>,
    },
    /// The connection closed.
    Detach {
        /// The visitor.
        key: VisitorKey,
        /// The connection's id.
        conn: u64,
    },
    /// A persisted session to resume after a restart (its timer is re-armed).
    Resume(Arc<SiteRuntime>, Box<VisitorRecord>),
    /// A commit failed: forget the in-memory state so the next event reloads what is durable.
    Evict(VisitorKey),
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
        store: Arc<dyn Store>,
        writer: Writer,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> (Shards, Vec<tokio::task::JoinHandle<()>>) {
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            let shard = Shard {
                sessions: HashMap::new(),
                timers: DelayQueue::new(),
                store: store.clone(),
                writer: writer.clone(),
                me: tx.clone(),
            };
            tasks.push(tokio::spawn(shard.run(rx, shutdown.clone())));
            senders.push(tx);
        }
        (
            Shards {
                senders: Arc::new(senders),
            },
            tasks,
        )
    }

    /// Sends a message to the shard that owns `visitor`.
    pub async fn send(&self, visitor: &VisitorId, msg: ShardMsg) -> Result<(), String> {
        let i = (fnv1a64(visitor.as_str()) % self.senders.len() as u64) as usize;
        self.senders[i]
            .send(msg)
            .await
            .map_err(|_| "the engine shard has stopped".to_owned())
    }

    /// Like [`Shards::send`], but refuses at once when the shard's queue is full (or the shard
    /// has stopped) instead of waiting, so that a request can be shed.
    pub fn try_send(
        &self,
        visitor: &VisitorId,
        msg: ShardMsg,
    ) -> Result<(), mpsc::error::TrySendError<()>> {
        let i = (fnv1a64(visitor.as_str()) % self.senders.len() as u64) as usize;
        self.senders[i].try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
            mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
        })
    }
}

struct Live {
    site: Arc<SiteRuntime>,
    session_id: String,
    state: beckon_engine::Session,
    profile: Profile,
    recent_ids: VecDeque<String>,
    /// Previous session ids of the visitor.
    ended: VecDeque<String>,
    timer: Option<delay_queue::Key>,
    conns: Vec<(u64, mpsc::Sender<DownFrame>)>,
    /// Interventions fired by a timer while no connection was attached; delivered with the
    /// next answer.
    pending: Vec<Intervention>,
    /// The engine's latest `next_wake`.
    next_wake: Option<Timestamp>,
    last_seen: Timestamp,
}

struct Shard {
    sessions: HashMap<VisitorKey, Live>,
    timers: DelayQueue<VisitorKey>,
    store: Arc<dyn Store>,
    writer: Writer,
    me: mpsc::Sender<ShardMsg>,
}

/// What one pass of the engine over some events produced.
#[derive(Default)]
struct Pass {
    write: WriteBatch,
    reply: BatchReply,
}

impl Shard {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ShardMsg>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
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
        crate::metrics::live_sessions(-(self.sessions.len() as i64));
    }

    async fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Batch(job) => self.batch(job).await,
            ShardMsg::Attach { key, conn, tx } => {
                if let Some(live) = self.sessions.get_mut(&key) {
                    for i in live.pending.drain(..) {
                        // A full socket queue means a stuck client; it will get the
                        // intervention's effects (caps) but not the message, which is fine.
                        let _ = tx.try_send(DownFrame::Intervention(i)).is_ok();
                    }
                    live.conns.push((conn, tx));
                }
            }
            ShardMsg::Detach { key, conn } => {
                if let Some(live) = self.sessions.get_mut(&key) {
                    live.conns.retain(|(c, _)| *c != conn);
                }
            }
            ShardMsg::Resume(site, record) => {
                let key = (record.site.clone(), record.visitor.clone());
                if self.sessions.contains_key(&key) {
                    return;
                }
                let Some(session) = record.session else {
                    return;
                };
                crate::metrics::live_sessions(1);
                self.sessions.insert(
                    key.clone(),
                    Live {
                        site,
                        session_id: session.id,
                        state: session.state,
                        profile: record.profile,
                        recent_ids: session.recent_ids.into(),
                        ended: session.ended.into(),
                        timer: None,
                        conns: Vec::new(),
                        pending: Vec::new(),
                        next_wake: None,
                        last_seen: record.last_seen,
                    },
                );
                self.wake(key).await;
            }
            ShardMsg::Evict(key) => {
                if let Some(live) = self.sessions.remove(&key) {
                    crate::metrics::live_sessions(-1);
                    if let Some(t) = live.timer {
                        self.timers.remove(&t);
                    }
                }
            }
        }
    }

    async fn batch(&mut self, job: BatchJob) {
        let key = (job.site.record.id.clone(), job.visitor.clone());
        let now = now();
        let current = match self.ensure_live(&key, &job, now).await {
            Ok(current) => current,
            Err(e) => {
                let _ = job.reply.send(Err(e));
                return;
            }
        };
        let live = self.sessions.get_mut(&key).expect("ensured above");
        // Events are logged under the session they were sent in; the backend's "current"
        // means the visitor's live one.
        let session = if job.session == CURRENT_SESSION {
            live.session_id.clone()
        } else {
            job.session.clone()
        };
        let mut pass = Pass::default();
        pass.reply.interventions.append(&mut live.pending);
        for incoming in job.events {
            pass.reply.acked.push(incoming.id.clone());
            if live.recent_ids.contains(&incoming.id) {
                pass.reply.duplicates += 1;
                continue;
            }
            remember(&mut live.recent_ids, incoming.id.clone(), RECENT_IDS);
            pass.reply.accepted += 1;
            pass.write.events.push(StoredEvent {
                site: key.0.clone(),
                visitor: key.1.clone(),
                session: session.clone(),
                id: incoming.id,
                at: now,
                kind: incoming.kind,
                body: incoming.raw.to_string(),
            });
            if current {
                decide(live, &incoming.event, now, &mut pass);
            }
        }
        crate::metrics::duplicate_events(pass.reply.duplicates);
        self.finish(key, pass, Some(job.reply), now, job.backend)
            .await;
    }

    /// A session's timer is due: decide on a tick.
    async fn wake(&mut self, key: VisitorKey) {
        let now = now();
        let Some(live) = self.sessions.get_mut(&key) else {
            return;
        };
        live.timer = None;
        let mut pass = Pass::default();
        let id = format!("tick:{}", now.as_millis());
        remember(&mut live.recent_ids, id.clone(), RECENT_IDS);
        pass.write.events.push(StoredEvent {
            site: key.0.clone(),
            visitor: key.1.clone(),
            session: live.session_id.clone(),
            id,
            at: now,
            kind: "tick".to_owned(),
            body: "{\"type\":\"tick\"}".to_owned(),
        });
        decide(live, &Event::Tick, now, &mut pass);
        self.finish(key, pass, None, now, true).await;
    }

    /// Re-arms the timer, queues the write, and answers once it is durable.
    async fn finish(
        &mut self,
        key: VisitorKey,
        mut pass: Pass,
        reply: Option<oneshot::Sender<Result<BatchReply, String>>>,
        now: Timestamp,
        // Interventions go to the visitor apart from `reply`, which (if any) does not reach
        // them: a timer, or an event from the merchant's backend.
        deliver_apart: bool,
    ) {
        let live = self.sessions.get_mut(&key).expect("live session");
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
        pass.write.visitors.push(VisitorRecord {
            site: key.0.clone(),
            visitor: key.1.clone(),
            profile: live.profile.clone(),
            session: Some(SessionRecord {
                id: live.session_id.clone(),
                state: live.state.clone(),
                recent_ids: live.recent_ids.iter().cloned().collect(),
                ended: live.ended.iter().cloned().collect(),
            }),
            last_seen: now,
        });
        // An intervention fired by a timer or by the merchant's backend goes to the visitor's
        // open connections (the backend's answer would not reach the visitor); without one it
        // waits for the visitor's next request.
        let push: Vec<mpsc::Sender<DownFrame>> = if deliver_apart {
            live.conns.iter().map(|(_, tx)| tx.clone()).collect()
        } else {
            Vec::new()
        };
        let mut pushed = Vec::new();
        if deliver_apart {
            if push.is_empty() {
                live.pending.append(&mut pass.reply.interventions);
            } else {
                pushed = std::mem::take(&mut pass.reply.interventions);
            }
        }
        // Queued here, in the shard, so writes reach the writer in the order they were applied;
        // only the wait for the commit runs apart.
        let committed = self.writer.enqueue(pass.write).await;
        let me = self.me.clone();
        tokio::spawn(async move {
            match committed.await {
                Ok(()) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(pass.reply));
                    }
                    // try_send: a client that stopped reading must not hold this task (and
                    // with it the writer, and shutdown) forever.
                    for tx in push {
                        for i in &pushed {
                            let _ = tx.try_send(DownFrame::Intervention(i.clone())).is_ok();
                        }
                    }
                }
                Err(e) => {
                    // The memory is ahead of the disk now; drop it, so the resend the client
                    // will make is applied to the durable state exactly once.
                    let _ = me.send(ShardMsg::Evict(key)).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        });
    }

    /// Makes sure the visitor's session is in memory and is the one the batch speaks for.
    /// Returns false when the batch belongs to an ended visit: its events are logged but not
    /// replayed into the current one (a late beacon, or a tab left open from before).
    async fn ensure_live(
        &mut self,
        key: &VisitorKey,
        job: &BatchJob,
        now: Timestamp,
    ) -> Result<bool, String> {
        if !self.sessions.contains_key(key) {
            let live = self.load(key, job, now).await?;
            self.sessions.insert(key.clone(), live);
            crate::metrics::live_sessions(1);
        }
        let live = self.sessions.get_mut(key).expect("inserted above");
        live.site = job.site.clone();
        if job.session == CURRENT_SESSION || live.session_id == job.session {
            return Ok(true);
        }
        if live.ended.contains(&job.session) {
            return Ok(false);
        }
        if job.site.engine.same_visit(&live.profile, now) {
            // Another tab of the same visit: its events join the live session.
            return Ok(true);
        }
        // A new visit.
        let previous = std::mem::replace(&mut live.session_id, job.session.clone());
        remember(&mut live.ended, previous, ENDED_SESSIONS);
        live.state =
            job.site
                .engine
                .start_session(key.1.clone(), job.start.clone(), &mut live.profile, now);
        Ok(true)
    }

    /// The visitor's state from the store, or a first visit.
    async fn load(&self, key: &VisitorKey, job: &BatchJob, now: Timestamp) -> Result<Live, String> {
        let stored = self
            .store
            .visitor(&key.0, &key.1)
            .await
            .map_err(|e| e.to_string())?;
        let (mut profile, session) = match stored {
            Some(r) => (r.profile, r.session),
            None => (Profile::default(), None),
        };
        let (session_id, state, recent_ids, ended) = match session {
            Some(s) => (s.id, s.state, s.recent_ids.into(), s.ended.into()),
            None => {
                let state = job.site.engine.start_session(
                    key.1.clone(),
                    job.start.clone(),
                    &mut profile,
                    now,
                );
                (job.session.clone(), state, VecDeque::new(), VecDeque::new())
            }
        };
        Ok(Live {
            site: job.site.clone(),
            session_id,
            state,
            profile,
            recent_ids,
            ended,
            timer: None,
            conns: Vec::new(),
            pending: Vec::new(),
            next_wake: None,
            last_seen: now,
        })
    }

    fn sweep(&mut self) {
        let cutoff = now().as_millis() - IDLE_EVICT.as_millis() as i64;
        let idle: Vec<VisitorKey> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.last_seen.as_millis() < cutoff && l.conns.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(live) = self.sessions.remove(&key) {
                crate::metrics::live_sessions(-1);
                if let Some(t) = live.timer {
                    self.timers.remove(&t);
                }
            }
        }
    }
}

fn remember(ids: &mut VecDeque<String>, id: String, max: usize) {
    if ids.len() >= max {
        ids.pop_front();
    }
    ids.push_back(id);
}

/// Runs the engine on one event and records what it decided.
fn decide(live: &mut Live, event: &Event, now: Timestamp, pass: &mut Pass) {
    let site = live.site.clone();
    let engine: &Engine = &site.engine;
    let decision = engine.decide(&mut live.state, &mut live.profile, event, now);
    crate::metrics::outcome(&decision.outcome);
    live.next_wake = decision.next_wake;
    let (rule, message) = match decision.outcome {
        Outcome::Nothing { .. } => return,
        Outcome::Fire { rule, message } => (rule, Some(message)),
        Outcome::Ghost { rule } => (rule, None),
    };
    let id = crate::ids::intervention_id();
    let rendered = message.map(|m| {
        beckon_engine::rules::message::render(m, &live.state.template_context(&live.profile))
            .unwrap_or_else(|e| {
                tracing::error!(rule = %rule.id, error = %e, "message template failed to render");
                m.clone()
            })
    });
    pass.write.exposures.push(Exposure {
        id: id.clone(),
        site: site.record.id.clone(),
        visitor: live.state.visitor().clone(),
        session: live.session_id.clone(),
        rule: rule.id.clone(),
        arm: if rendered.is_some() {
            Arm::Treated
        } else {
            Arm::Holdout
        },
        at: now,
        message: rendered
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default())
            .unwrap_or_default(),
    });
    if let Some(message) = rendered {
        pass.reply.interventions.push(Intervention {
            id,
            rule: rule.id.to_string(),
            message,
        });
    }
}
