//! Beckon's storage interface.
//!
//! The rest of Beckon talks to storage only through [`Store`]: domain verbs, no SQL. Each
//! backend (SQLite embedded, PostgreSQL for scale-out) is a crate of its own with its own
//! migrations, and [`suite`] is the one story every backend must pass.

pub mod suite;

use async_trait::async_trait;
use beckon_engine::session::Arm;
use beckon_engine::{Policy, Profile, RuleId, Session, SiteId, Timestamp, VisitorId};
use serde::{Deserialize, Serialize};

/// A site: its keys, where its pages may call from, and its guardrail policy.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteRecord {
    /// The public site key, as in the install snippet.
    pub id: SiteId,
    /// The secret key the merchant's backend authenticates with.
    pub secret: String,
    /// Origins allowed to send events (`https://shop.example`); `*` allows any.
    pub origins: Vec<String>,
    /// Guardrails.
    pub policy: Policy,
}

/// One event as received, for the durable log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The session.
    pub session: String,
    /// The client's id for the event, unique per visitor (idempotency key).
    pub id: String,
    /// When the server received it.
    pub at: Timestamp,
    /// The event type, as on the wire.
    pub kind: String,
    /// The event as received (JSON).
    pub body: String,
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
    pub session: String,
    /// The rule.
    pub rule: RuleId,
    /// Treated (shown) or holdout (ghost).
    pub arm: Arm,
    /// When it fired.
    pub at: Timestamp,
    /// The rendered message (JSON), empty for a ghost.
    pub message: String,
}

/// The live state of a visitor's current session, as persisted with each commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id.
    pub id: String,
    /// The engine's state.
    pub state: Session,
    /// Recently processed event ids, so that a resend after a restart is not applied twice.
    pub recent_ids: Vec<String>,
    /// The visitor's previous session ids: late events of an ended visit (a beacon, another
    /// tab) are logged, not replayed into the current one.
    #[serde(default)]
    pub ended: Vec<String>,
}

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
}

/// Everything one group commit writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Events to append (duplicates by id are skipped).
    pub events: Vec<StoredEvent>,
    /// Exposures to append.
    pub exposures: Vec<Exposure>,
    /// Visitor states to upsert.
    pub visitors: Vec<VisitorRecord>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.exposures.is_empty() && self.visitors.is_empty()
    }

    /// Appends another batch.
    pub fn append(&mut self, other: WriteBatch) {
        self.events.extend(other.events);
        self.exposures.extend(other.exposures);
        self.visitors.extend(other.visitors);
    }
}

/// Why a storage call failed. Details are for the log, never for a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(String),
    /// Stored data could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Result of a storage call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage interface: the verbs Beckon needs, nothing about how they are stored.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> Result<()>;

    /// Creates or replaces a site.
    async fn put_site(&self, site: &SiteRecord) -> Result<()>;

    /// Every site.
    async fn sites(&self) -> Result<Vec<SiteRecord>>;

    /// Replaces a site's rules with these, atomically (an import).
    async fn replace_rules(
        &self,
        site: &SiteId,
        rules: &[beckon_engine::rules::RuleSpec],
    ) -> Result<()>;

    /// A site's rules as written.
    async fn rules(&self, site: &SiteId) -> Result<Vec<beckon_engine::rules::RuleSpec>>;

    /// Writes a group commit in one transaction. Returns how many events were new (the rest
    /// were duplicates by id).
    async fn commit(&self, batch: &WriteBatch) -> Result<usize>;

    /// A visitor's persisted state.
    async fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> Result<Option<VisitorRecord>>;

    /// Visitors with a live session active since `since`, to resume their timers after a
    /// restart.
    async fn active_visitors(&self, since: Timestamp) -> Result<Vec<VisitorRecord>>;

    /// A site's exposures, oldest first.
    async fn exposures(&self, site: &SiteId) -> Result<Vec<Exposure>>;

    /// A session's events, in the order received.
    async fn session_events(&self, site: &SiteId, session: &str) -> Result<Vec<StoredEvent>>;
}
