//! The bus between nodes: Redis pub/sub, carrying news only.
//!
//! Everything that must not be lost is in the database before anything travels here; a note
//! tells the other nodes that something changed (a chat message stored, a rule set saved), so
//! that they act on it now rather than at their next poll. A node that missed notes (its
//! subscription broke) is told so with [`Heard::Resync`], and reads the rows again.
//!
//! One channel per installation (`beckon:{namespace}:bus`); each note names its topic and the
//! node it came from, and a node never hears its own. Publishing never waits: notes queue for
//! one publisher task that sends them in order, and a note that finds the queue full is dropped
//! (and counted) rather than holding up the caller; once notes go through again, the other
//! nodes are told to resync, so a note lost by its sender is made up for as one lost on the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// How many notes may wait for the publisher before new ones are dropped.
const OUTBOX: usize = 8192;
/// How many notes a listener may fall behind by before it is told to resync.
const HEARD: usize = 4096;
/// How often the bus checks that Redis answers.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two tries to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The topic of a node's word that notes of its were lost: every other node resyncs.
const RESYNC: &str = "resync";
/// How long a command to Redis may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL is not a Redis URL.
    #[error("the Redis URL is not valid: {0}")]
    Url(String),
    /// Redis did not answer.
    #[error("Redis at {url} did not answer: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A note from another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// What it is about (`desk`, `invite`, `sites`, …): each listener reads its own topics.
    pub topic: String,
    /// The node it came from.
    pub from: String,
    /// What it says.
    pub body: serde_json::Value,
}

/// What a listener hears.
#[derive(Clone, Debug)]
pub enum Heard {
    /// A note from another node.
    Note(Arc<Note>),
    /// Notes may have been missed (the subscription broke, or this listener fell behind):
    /// read again what the notes would have told.
    Resync,
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("channel", &self.inner.channel)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: redis::Client,
    /// The connection for commands, replaced when it stops answering (redis-rs's manager
    /// reconnects when a connection breaks, not when it goes silent).
    conn: std::sync::RwLock<ConnectionManager>,
    channel: String,
    namespace: String,
    node: String,
    out: mpsc::Sender<Vec<u8>>,
    queued: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    heard: broadcast::Sender<Heard>,
    /// Whether the last ping was answered.
    answering: AtomicBool,
    /// Whether the subscription is up.
    subscribed: AtomicBool,
    dropped: AtomicU64,
}

/// The URL with its password, if any, hidden (for messages and logs).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Bus {
    /// Connects to Redis at `url`, for the installation `namespace` (every node of one
    /// installation names the same), as `node`. Fails when Redis does not answer: a node of a
    /// cluster does not start without its bus. Nothing is heard until [`Bus::run`] runs.
    pub async fn connect(url: &str, namespace: &str, node: &str) -> Result<Bus, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::Url(e.to_string()))?;
        let unreachable = |e: redis::RedisError| BusError::Unreachable {
            url: redact(url),
            reason: e.to_string(),
        };
        let mut conn = manager(&client).await.map_err(unreachable)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unreachable)?;
        let (out, queued) = mpsc::channel(OUTBOX);
        Ok(Bus {
            inner: Arc::new(Inner {
                client,
                conn: std::sync::RwLock::new(conn),
                channel: format!("beckon:{namespace}:bus"),
                namespace: namespace.to_owned(),
                node: node.to_owned(),
                out,
                queued: Mutex::new(Some(queued)),
                heard: broadcast::channel(HEARD).0,
                answering: AtomicBool::new(true),
                subscribed: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// The installation's namespace, for keys of its own (`beckon:{namespace}:…`).
    pub fn key(&self, rest: &str) -> String {
        format!("beckon:{}:{rest}", self.inner.namespace)
    }

    /// A connection for commands of one's own (shared counters): ask for it at each use, as
    /// the bus replaces one that stopped answering.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.read().expect("connection lock").clone()
    }

    /// Sends a note to the other nodes; never waits. A note that finds the queue full is
    /// dropped and counted: the others find the change at their next poll or resync.
    pub fn publish(&self, topic: &str, body: &impl Serialize) {
        let bytes = self.note(topic, body);
        if self.inner.out.try_send(bytes).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic, "the bus's queue is full; a note was dropped");
        }
    }

    /// Sends a note now and waits for Redis to take it (for a command that runs once and
    /// exits, with no [`Bus::run`]).
    pub async fn announce(&self, topic: &str, body: &impl Serialize) -> Result<(), String> {
        let bytes = self.note(topic, body);
        let mut conn = self.connection();
        let sent: redis::RedisResult<i64> = conn.publish(&self.inner.channel, bytes).await;
        sent.map(|_| ()).map_err(|e| e.to_string())
    }

    fn note(&self, topic: &str, body: &impl Serialize) -> Vec<u8> {
        let note = Note {
            topic: topic.to_owned(),
            from: self.inner.node.clone(),
            body: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        };
        serde_json::to_vec(&note).expect("a note serialises")
    }

    /// Notes that could not be sent (the queue was full, or Redis refused them).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Subscribes to the notes of the other nodes (and to being told to resync).
    pub fn listen(&self) -> broadcast::Receiver<Heard> {
        self.inner.heard.subscribe()
    }

    /// Whether Redis answers and the subscription is up: a node whose bus is down is not ready.
    pub fn healthy(&self) -> bool {
        self.inner.answering.load(Ordering::Relaxed)
            && self.inner.subscribed.load(Ordering::Relaxed)
    }

    /// Runs the bus until `shutdown`: publishes what was queued, in order; keeps the
    /// subscription (subscribing again, and telling listeners to resync, after it broke); and
    /// pings Redis every second. Runs once: a second call returns at once.
    pub async fn run(&self, shutdown: CancellationToken) {
        let Some(queued) = self.inner.queued.lock().await.take() else {
            return;
        };
        tokio::join!(
            self.send_all(queued, shutdown.clone()),
            self.subscribe(shutdown.clone()),
            self.ping(shutdown),
        );
    }

    async fn send_all(&self, mut queued: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
        // The count of dropped notes the other nodes were last told to resync for. A note lost
        // here (Redis refused it, or the queue was full) is made up for: once Redis takes a
        // note again, or at the next second's check, the other nodes are told to resync.
        let mut told_of = 0;
        let mut check = tokio::time::interval(PING_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                next = queued.recv() => match next {
                    Some(bytes) => {
                        let sent: redis::RedisResult<i64> =
                            self.connection().publish(&self.inner.channel, bytes).await;
                        if let Err(e) = sent {
                            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "a note could not be published");
                            continue;
                        }
                    }
                    None => return,
                },
                _ = check.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let dropped = self.inner.dropped.load(Ordering::Relaxed);
            if dropped != told_of {
                let resync = self.note(RESYNC, &serde_json::Value::Null);
                let told: redis::RedisResult<i64> =
                    self.connection().publish(&self.inner.channel, resync).await;
                if told.is_ok() {
                    told_of = dropped;
                }
            }
        }
    }

    async fn subscribe(&self, shutdown: CancellationToken) {
        use futures::StreamExt;
        let mut wait = Duration::from_millis(50);
        let mut first = true;
        loop {
            let subscribed = async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.inner.channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            let pubsub = tokio::select! {
                s = tokio::time::timeout(COMMAND_TIMEOUT, subscribed) => s,
                () = shutdown.cancelled() => return,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    self.inner.subscribed.store(true, Ordering::Relaxed);
                    if !first {
                        tracing::info!("the bus is subscribed again");
                        let _ = self.inner.heard.send(Heard::Resync);
                    }
                    first = false;
                    wait = Duration::from_millis(50);
                    // The subscription is pinged too: a connection that died without a word
                    // (a firewall dropped the idle flow) is found within a ping and replaced.
                    let (mut sink, mut messages) = pubsub.split();
                    let mut ping = tokio::time::interval(PING_EVERY);
                    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(msg) => self.hear(msg.get_payload_bytes()),
                                None => break,
                            },
                            _ = ping.tick() => {
                                let pong = tokio::time::timeout(
                                    COMMAND_TIMEOUT,
                                    sink.ping::<redis::Value>(),
                                )
                                .await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    tracing::warn!("the bus's subscription does not answer");
                                    break;
                                }
                            }
                            () = shutdown.cancelled() => return,
                        }
                    }
                    self.inner.subscribed.store(false, Ordering::Relaxed);
                    tracing::warn!("the bus's subscription broke; subscribing again");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "the bus cannot subscribe"),
                Err(_) => tracing::warn!("the bus's subscription timed out"),
            }
            self.inner.subscribed.store(false, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    fn hear(&self, bytes: &[u8]) {
        match serde_json::from_slice::<Note>(bytes) {
            Ok(note) if note.from == self.inner.node => {} // our own
            Ok(note) if note.topic == RESYNC => {
                let _ = self.inner.heard.send(Heard::Resync); // nobody listening
            }
            Ok(note) => {
                let _ = self.inner.heard.send(Heard::Note(Arc::new(note))); // nobody listening
            }
            Err(e) => tracing::warn!(error = %e, "a note on the bus did not parse"),
        }
    }

    async fn ping(&self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(PING_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let mut ok = pong(self.connection()).await;
            if !ok {
                // A connection that went silent is replaced by a new one, if Redis answers it.
                if let Ok(Ok(mut fresh)) =
                    tokio::time::timeout(COMMAND_TIMEOUT, manager(&self.inner.client)).await
                    && pong(fresh.clone()).await
                {
                    std::mem::swap(
                        &mut *self.inner.conn.write().expect("connection lock"),
                        &mut fresh,
                    );
                    ok = true;
                }
            }
            if self.inner.answering.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    tracing::info!("Redis answers again");
                } else {
                    tracing::warn!("Redis does not answer");
                }
            }
        }
    }
}

/// A connection manager to `client`'s Redis, with the bus's timeouts.
async fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(MAX_BACKOFF);
    client.get_connection_manager_with_config(config).await
}

/// Whether Redis answers a ping on `conn` in time.
async fn pong(mut conn: ConnectionManager) -> bool {
    let answered = tokio::time::timeout(
        COMMAND_TIMEOUT,
        redis::cmd("PING").query_async::<String>(&mut conn),
    )
    .await;
    matches!(answered, Ok(Ok(_)))
}
