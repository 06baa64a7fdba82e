//! Beckon's storage interface.
//!
//! The rest of Beckon talks to storage only through [`Store`]: domain verbs, no SQL. Each
//! backend (SQLite embedded, PostgreSQL for scale-out) is a crate of its own with its own
//! migrations, and [`suite`] is the one story every backend must pass.

pub mod accounts;
pub mod accounts_suite;
pub mod analytics;
pub mod analytics_suite;
pub mod cluster;
pub mod conversations;
pub mod conversations_suite;
pub mod faults;
pub mod insight;
pub mod leads;
pub mod outbox;
pub mod outbox_suite;
pub mod suite;

use async_trait::async_trait;
use beckon_engine::session::Arm;
use beckon_engine::{
    EventId, Policy, Profile, RuleId, Session, SessionId, SessionStart, SiteId, Timestamp,
    VisitorId,
};
use serde::{Deserialize, Serialize};

/// A site: its keys, where its pages may call from, and its guardrail policy.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteRecord {
    /// The public site key, as in the install snippet.
    pub id: SiteId,
    /// The digest of the secret key the merchant's backend authenticates with (the key itself
    /// is shown once, when it is made, and never stored).
    pub secret: SecretDigest,
    /// Origins allowed to send events (`https://shop.example`); `*` allows any.
    pub origins: Vec<String>,
    /// Guardrails.
    pub policy: Policy,
    /// The current rule-set version (policy and rules together); set by the store, ignored by
    /// [`Store::put_site`].
    pub version: u64,
}

/// The stored form of a secret key: `sha256:` and the hex SHA-256 of the key. The key is a
/// long random string, so a fast digest is enough: nobody can guess their way back.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest(String);

impl SecretDigest {
    const PREFIX: &'static str = "sha256:";

    /// The digest of a secret key.
    pub fn of(secret: &str) -> SecretDigest {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(secret.as_bytes());
        let mut text = String::with_capacity(Self::PREFIX.len() + 64);
        text.push_str(Self::PREFIX);
        for b in hash {
            text.push_str(&format!("{b:02x}"));
        }
        SecretDigest(text)
    }

    /// A stored digest, if `text` is one.
    pub fn parse(text: &str) -> Option<SecretDigest> {
        let hex = text.strip_prefix(Self::PREFIX)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| SecretDigest(text.to_ascii_lowercase()))
    }

    /// Whether `secret` is the key this is the digest of, compared in constant time.
    pub fn matches(&self, secret: &str) -> bool {
        use subtle::ConstantTimeEq;
        let other = SecretDigest::of(secret);
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// Where a batch came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The widget in a visitor's browser.
    Browser,
    /// The merchant's backend, authenticated with the site's secret key.
    Backend,
    /// The server's own timer: a session woke up because the engine asked it to.
    Timer,
}

impl Source {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Browser => "browser",
            Source::Backend => "backend",
            Source::Timer => "timer",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "browser" => Some(Source::Browser),
            "backend" => Some(Source::Backend),
            "timer" => Some(Source::Timer),
            _ => None,
        }
    }
}

/// What the edge concluded about whoever sent a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// A person (as far as the edge can tell).
    Human,
    /// Automated traffic: logged for the operator, never decided on, in no number.
    Bot {
        /// Which layer judged it, and why (`user agent matches "bot"`, `navigator.webdriver`).
        reason: String,
    },
}

/// The request context of a batch, as the edge saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchContext {
    /// The `User-Agent` header (empty for the backend and the timer).
    pub user_agent: String,
    /// The language the widget reported (BCP 47 primary tag), if any.
    pub language: Option<String>,
    /// Minutes east of UTC, as the widget reported.
    pub tz_offset_minutes: i16,
}

/// How the events of a batch were used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Fed to the engine. A decided event must be new: the store refuses to commit a state
    /// built on a duplicate (see [`Store::commit`]).
    Decided,
    /// Kept in the log only: a late event of an ended visit, or a bot's.
    Logged,
    /// Refused by the server, for the reason given (an outcome for an intervention that was
    /// never issued to this visitor). Kept in the log only.
    Refused(String),
}

impl Applied {
    /// The name stored in the log (`decided`, `logged`, `refused:<reason>`).
    pub fn to_stored(&self) -> String {
        match self {
            Applied::Decided => "decided".to_owned(),
            Applied::Logged => "logged".to_owned(),
            Applied::Refused(why) => format!("refused:{why}"),
        }
    }

    /// Parses a stored name.
    pub fn from_stored(s: &str) -> Applied {
        match s {
            "decided" => Applied::Decided,
            "logged" => Applied::Logged,
            other => Applied::Refused(other.strip_prefix("refused:").unwrap_or(other).to_owned()),
        }
    }
}

/// One event of a logged batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    /// The idempotency key, unique per site and visitor: the client's event id, or
    /// `order:<order id>` for a conversion with an order id (those are unique per *site* and
    /// kept forever, whichever client reported them).
    pub key: String,
    /// The client's id for the event (what the acknowledgement names).
    pub id: EventId,
    /// The event type, as on the wire.
    pub kind: String,
    /// The event's known fields, as JSON (unknown fields are never stored).
    pub body: String,
    /// How it was used.
    pub applied: Applied,
}

/// A visit that a batch started: what the engine was told, so that a replay starts it the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisitBegin {
    /// The session's start.
    pub start: SessionStart,
    /// The visitor's profile was started afresh (a new visitor, or a stored state that could
    /// not be decoded).
    pub fresh_profile: bool,
}

/// One batch as logged: who sent it, from where, under which rules, and its events. The log
/// holds enough to rebuild every decision: replaying a visitor's batches in order through the
/// engine, with the rule set of the version named, gives the same exposures.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedBatch {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The session the events were logged under (`None`: a backend event for a visitor with no
    /// live visit).
    pub session: Option<SessionId>,
    /// When the server handled it.
    pub at: Timestamp,
    /// Who sent it.
    pub source: Source,
    /// The request context.
    pub context: BatchContext,
    /// The edge's verdict.
    pub verdict: Verdict,
    /// The site's rule-set version in force.
    pub rules_version: u64,
    /// Set when this batch started a visit, before its first event.
    pub begins: Option<VisitBegin>,
    /// The events, in order.
    pub events: Vec<LoggedEvent>,
}

/// One event as read back from the log, flattened with its batch's session and time.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The session.
    pub session: Option<SessionId>,
    /// The client's id.
    pub id: EventId,
    /// The idempotency key.
    pub key: String,
    /// When the server received it.
    pub at: Timestamp,
    /// The event type, as on the wire.
    pub kind: String,
    /// The event's known fields (JSON).
    pub body: String,
    /// How it was used.
    pub applied: Applied,
}

/// A rule firing for a visitor: shown (treated arm) or ghost (holdout arm).
#[derive(Clone, Debug, PartialEq)]
pub struct Exposure {
    /// The intervention's id (also sent to the widget).
    pub id: String,
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The session.
    pub session: SessionId,
    /// The rule.
    pub rule: RuleId,
    /// Treated (shown) or holdout (ghost).
    pub arm: Arm,
    /// When it fired.
    pub at: Timestamp,
    /// The rendered message (JSON), empty for a ghost.
    pub message: String,
}

/// An intervention issued to a visitor: only these may be reported shown, dismissed or
/// engaged by that visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The intervention's id.
    pub id: String,
    /// Its rule.
    pub rule: RuleId,
}

/// The live state of a visitor's current session, as persisted with each commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id.
    pub id: SessionId,
    /// The engine's state.
    pub state: Session,
    /// The visitor's previous session ids: late events of an ended visit (a beacon, another
    /// tab) are logged, not replayed into the current one.
    pub ended: Vec<SessionId>,
    /// The interventions issued in this visit (bounded by the session cap).
    pub issued: Vec<Issued>,
    /// Set when what the visit did showed a bot (`behaviour: …`): every later batch of the
    /// visit is logged with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

/// The version of the persisted visitor shape ([`Profile`] and [`SessionRecord`]). A row of
/// another version, or one that does not decode, is reported as [`StoreError::Undecodable`]:
/// the visitor starts afresh, and start-up never fails because of one row.
pub const VISITOR_SCHEMA: u32 = 2;

/// A visitor's persisted state.
#[derive(Clone, Debug)]
pub struct VisitorRecord {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The long-lived profile.
    pub profile: Profile,
    /// The current session, if one is live.
    pub session: Option<SessionRecord>,
    /// When the visitor was last active.
    pub last_seen: Timestamp,
    /// How many writes of this visitor's state have landed: the version a write built on this
    /// record must name (see [`VisitorWrite::expect`]).
    pub version: u64,
}

/// A visitor's state to write. Only what changed is written: the profile is `None` when it is
/// unchanged since the last write of this visitor that succeeded.
#[derive(Clone, Debug)]
pub struct VisitorWrite {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The profile, when it changed (always set on a visitor's first write).
    pub profile: Option<Profile>,
    /// The current session.
    pub session: Option<SessionRecord>,
    /// When the visitor was last active.
    pub last_seen: Timestamp,
    /// The fence: the version of the stored state this write was built on (the version read,
    /// plus one for each write queued since; 0 for a visitor never written). The commit is
    /// refused whole, as [`StoreError::Stale`], unless the stored version still is this one;
    /// the stored version then goes up by one per write. So a node that lost a visitor to
    /// another can never overwrite what the new owner wrote. `None` writes unconditionally
    /// (tools that own the whole database).
    pub expect: Option<u64>,
}

/// Everything one group commit writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Batches to append to the log.
    pub batches: Vec<LoggedBatch>,
    /// Exposures to append.
    pub exposures: Vec<Exposure>,
    /// Visitor states to upsert, in the order they were produced; when a visitor appears more
    /// than once, the last session wins and the last profile that is set wins.
    pub visitors: Vec<VisitorWrite>,
    /// Leads captured by the batches' events, written with their announcements.
    pub leads: Vec<leads::NewLead>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
            && self.exposures.is_empty()
            && self.visitors.is_empty()
            && self.leads.is_empty()
    }

    /// Appends another batch.
    pub fn append(&mut self, other: WriteBatch) {
        self.batches.extend(other.batches);
        self.exposures.extend(other.exposures);
        self.visitors.extend(other.visitors);
        self.leads.extend(other.leads);
    }

    /// How many events the batch logs.
    pub fn event_count(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }
}

/// What a commit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Events new to the log.
    pub inserted: usize,
    /// Logged-only events skipped because their key was already in the log.
    pub skipped: usize,
}

/// Visitors with a live session, for resuming after a restart.
#[derive(Debug, Default)]
pub struct ActiveVisitors {
    /// The records that decoded.
    pub records: Vec<VisitorRecord>,
    /// Rows that did not decode (or are of another schema version); each was logged.
    pub undecodable: usize,
}

/// A site's policy and rules as they were at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSetVersion {
    /// The version.
    pub version: u64,
    /// The guardrail policy.
    pub policy: Policy,
    /// The rules, as written.
    pub rules: Vec<beckon_engine::rules::RuleSpec>,
}

/// Why a storage call failed. Details are for the log, never for a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(String),
    /// Stored data could not be read back (a site, a rule): the installation is damaged.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A visitor's persisted state is of another schema version or does not decode; the caller
    /// starts the visitor afresh.
    #[error("undecodable visitor state: {0}")]
    Undecodable(String),
    /// What was asked for would break a uniqueness or ordering promise (an address already
    /// taken; a rule set changed by someone else since it was read). Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// What was asked for refers to something that does not exist (a site, a person).
    #[error("not found: {0}")]
    NotFound(String),
    /// A visitor's state was written by someone else since the state a write was built on was
    /// read (another node took the visitor over): nothing of the commit was written, and the
    /// writer must read the visitor again, or leave them to their owner.
    #[error("visitor {visitor} of {site} was written by another owner since it was read")]
    Stale {
        /// The site.
        site: SiteId,
        /// The visitor.
        visitor: VisitorId,
    },
    /// A commit held an event marked [`Applied::Decided`] whose key is already in the log:
    /// state built on a duplicate. Nothing of the commit was written.
    #[error("event {key:?} of visitor {visitor} is already in the log")]
    Duplicate {
        /// The site.
        site: SiteId,
        /// The visitor.
        visitor: VisitorId,
        /// The key.
        key: String,
    },
}

/// Result of a storage call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage interface: the verbs Beckon needs, nothing about how they are stored.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> Result<()>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    /// The installation's secret key for visitor tokens: 32 random bytes made on the first call
    /// and the same ever after, for every process sharing the database.
    async fn server_key(&self) -> Result<[u8; 32]>;

    /// Creates or replaces a site. Its rule-set version goes up when anything changed (secret,
    /// origins or policy), and the new version keeps the rules in force; a new site starts at
    /// version 1, and an identical record changes nothing.
    async fn put_site(&self, site: &SiteRecord) -> Result<()>;

    /// Every site, with its current rule-set version.
    async fn sites(&self) -> Result<Vec<SiteRecord>>;

    /// Every site's current version: cheap, polled so that a change made by another process
    /// (`beckon rules import`) takes effect in a running server.
    async fn site_versions(&self) -> Result<Vec<(SiteId, u64)>>;

    /// Replaces a site's rules with these, atomically (an import); the rule-set version goes up.
    /// The site must exist ([`Store::put_site`] first).
    async fn replace_rules(
        &self,
        site: &SiteId,
        rules: &[beckon_engine::rules::RuleSpec],
    ) -> Result<()>;

    /// A site's current rules as written.
    async fn rules(&self, site: &SiteId) -> Result<Vec<beckon_engine::rules::RuleSpec>>;

    /// A site's policy and rules as they were at `version`.
    async fn rule_set(&self, site: &SiteId, version: u64) -> Result<Option<RuleSetVersion>>;

    /// Writes a group commit in one transaction: all of it or nothing. An event marked
    /// [`Applied::Decided`] whose key is already in the log fails the whole commit with
    /// [`StoreError::Duplicate`]; other events with a known key are skipped. It is durable
    /// when this returns.
    async fn commit(&self, batch: &WriteBatch) -> Result<CommitReport>;

    /// Writes a group commit as [`Store::commit`] does, except that it may return before the
    /// commit is durable: it is once a [`Store::sync`] called after this returned has
    /// returned `Ok`. Until then it is visible (reads see it) but may be lost to a power cut,
    /// so nothing may be acknowledged on its strength. The writer commits its next group
    /// while the last one syncs. A backend whose commits are durable by themselves keeps the
    /// default, which is [`Store::commit`].
    async fn commit_unsynced(&self, batch: &WriteBatch) -> Result<CommitReport> {
        self.commit(batch).await
    }

    /// Makes durable every [`Store::commit_unsynced`] that returned before this call. An error
    /// leaves them of unknown durability (an fsync that failed may have dropped the pages it
    /// could not write, and a second try can report success over the loss), so a caller must
    /// acknowledge none of them and write nothing more until it has restarted.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Which of `keys` are already in the visitor's log (`order:` keys: in the site's orders,
    /// kept forever). Reads never wait for the writer's sync.
    async fn known_keys(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        keys: &[String],
    ) -> Result<Vec<String>>;

    /// A visitor's persisted state ([`StoreError::Undecodable`] when it cannot be read back).
    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>>;

    /// The version of a visitor's stored state (0 when none is stored), even when the state
    /// itself cannot be read back: a visitor whose row is undecodable starts afresh with a
    /// write built on this version.
    async fn visitor_version(&self, site: &SiteId, visitor: &VisitorId) -> Result<u64>;

    /// Visitors with a live session active since `since`, to resume their timers after a
    /// restart. Undecodable rows are counted, never fatal.
    async fn active_visitors(&self, since: Timestamp) -> Result<ActiveVisitors>;

    /// A site's exposures, oldest first.
    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>>;

    /// A session's events, in the order logged. For tests and diagnostics: nothing that serves
    /// visitors reads the log by session, so no index is kept for it and this reads through
    /// the site's log.
    async fn session_events(&self, site: &SiteId, session: &SessionId) -> Result<Vec<StoredEvent>>;

    /// A site's logged batches in the order they were committed, from position `after`
    /// (exclusive; 0 for the start), at most `limit`; each with its position, for paging.
    async fn log(&self, site: &SiteId, after: u64, limit: usize)
    -> Result<Vec<(u64, LoggedBatch)>>;

    /// Deletes logged batches (and their events) handled before `before`, at most `limit`
    /// batches per call so that pruning never holds the database for long; returns how many
    /// batches went. Orders, exposures and visitor states are kept.
    async fn prune_log(&self, before: Timestamp, limit: usize) -> Result<usize>;
}
