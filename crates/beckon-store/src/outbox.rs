//! The outbox: where leads and conversation events are sent, and each sending until it lands.
//!
//! Nothing is sent from where it happens. Whoever captures a lead or changes a conversation
//! hands the store [`NewEvent`]s *in the same transaction* as the change itself, and the store
//! fans each one out into a [`Delivery`] per destination of the site that takes its topic. A
//! crash anywhere after that loses nothing: workers (any number, on any node) [`Outbox::claim`]
//! due deliveries under a lease, try them, and [`Outbox::settle`] them; a lease that runs out
//! (its worker died) lets another worker take the delivery again. A delivery's id is its
//! idempotency key, the same on every try (Standard Webhooks' `webhook-id`), so a receiver
//! that got a try whose answer was lost recognises the next one.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::leads::LeadId;

/// Draws `n` base-36 characters.
pub fn random_chars(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` is `prefix` and `n` base-36 characters.
pub(crate) fn has_form(s: &str, prefix: &str, n: usize) -> bool {
    s.len() == prefix.len() + n
        && s.starts_with(prefix)
        && s[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the form of an id that came from outside.
            pub fn parse(s: &str) -> Option<$name> {
                has_form(s, $prefix, $len).then(|| $name(s.to_owned()))
            }

            /// A new random id.
            pub fn random() -> $name {
                $name(format!("{}{}", $prefix, random_chars($len)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> std::result::Result<Self, String> {
                $name::parse(&s).ok_or_else(|| format!("not a {} id: {s:?}", stringify!($name)))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}
pub(crate) use random_id;

random_id!(
    /// A destination's id: `d_` and 16 base-36 characters.
    DestinationId,
    "d_",
    16
);
random_id!(
    /// A delivery's id, which is also its idempotency key (`webhook-id`): `msg_` and 24
    /// base-36 characters, the same on every try.
    DeliveryId,
    "msg_",
    24
);

/// What happened, as destinations subscribe to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// A lead was captured.
    #[serde(rename = "lead.created")]
    LeadCreated,
    /// A lead was not contacted within the site's time limit.
    #[serde(rename = "lead.overdue")]
    LeadOverdue,
    /// A lead's status or owner changed.
    #[serde(rename = "lead.updated")]
    LeadUpdated,
    /// A conversation started.
    #[serde(rename = "conversation.started")]
    ConversationStarted,
    /// A conversation went to the site's people.
    #[serde(rename = "conversation.handed_off")]
    ConversationHandedOff,
    /// A conversation closed (with its transcript).
    #[serde(rename = "conversation.closed")]
    ConversationClosed,
    /// The visitor rated a conversation.
    #[serde(rename = "conversation.rated")]
    ConversationRated,
    /// A sample sent from the dashboard's test button.
    #[serde(rename = "test.sample")]
    TestSample,
}

impl Topic {
    /// Every topic, in the order the dashboard lists them.
    pub const ALL: [Topic; 8] = [
        Topic::LeadCreated,
        Topic::LeadOverdue,
        Topic::LeadUpdated,
        Topic::ConversationStarted,
        Topic::ConversationHandedOff,
        Topic::ConversationClosed,
        Topic::ConversationRated,
        Topic::TestSample,
    ];

    /// The topic's name (`lead.created`).
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::LeadCreated => "lead.created",
            Topic::LeadOverdue => "lead.overdue",
            Topic::LeadUpdated => "lead.updated",
            Topic::ConversationStarted => "conversation.started",
            Topic::ConversationHandedOff => "conversation.handed_off",
            Topic::ConversationClosed => "conversation.closed",
            Topic::ConversationRated => "conversation.rated",
            Topic::TestSample => "test.sample",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A secret being replaced: still signed with until `until`, so that receivers can switch
/// over without refusing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The old secret (`whsec_…`).
    pub secret: String,
    /// When it stops being used.
    pub until: Timestamp,
}

/// Where a destination sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// An HTTPS endpoint of the site's, signed to the Standard Webhooks specification.
    Webhook {
        /// The endpoint.
        url: String,
        /// The signing secret (`whsec_` and base64), one per endpoint.
        secret: String,
        /// The secret being rotated out, if any.
        #[serde(default)]
        previous: Option<PreviousSecret>,
    },
    /// E-mail to the site's team, and optionally a confirmation to the visitor.
    Email {
        /// The team's addresses.
        to: Vec<String>,
        /// Also confirm to the visitor who left their address.
        #[serde(default)]
        confirm_visitor: bool,
    },
    /// A Slack-compatible incoming webhook, for alerts to the team's chat.
    Slack {
        /// The incoming webhook's address.
        url: String,
    },
}

impl Target {
    /// The kind's name (`webhook`, `email`, `slack`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
            Target::Slack { .. } => "slack",
        }
    }
}

/// One destination of a site's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Its id.
    pub id: DestinationId,
    /// The site it belongs to.
    pub site: SiteId,
    /// A name for people.
    pub name: String,
    /// Where it sends.
    pub target: Target,
    /// What it takes.
    pub topics: Vec<Topic>,
    /// Whether it takes anything now.
    pub enabled: bool,
    /// Why it was turned off, when the system did it (an endpoint that answered 410).
    pub disabled_reason: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
}

/// Something to announce, handed to the store with the change it announces.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub topic: Topic,
    /// The body every destination is sent (JSON text, kept byte for byte: a webhook's
    /// signature covers it).
    pub payload: String,
    /// The lead it is about, if any (a delivery to the visitor goes to its address).
    pub lead: Option<LeadId>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// To be tried (now or later).
    Pending,
    /// The destination took it.
    Delivered,
    /// Every try failed, or the destination is gone; shown in the dashboard, replayable.
    Dead,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One sending of one event to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id and idempotency key.
    pub id: DeliveryId,
    /// The site.
    pub site: SiteId,
    /// Where it goes.
    pub destination: DestinationId,
    /// What it announces.
    pub topic: Topic,
    /// The body.
    pub payload: String,
    /// For an e-mail destination: the confirmation to the visitor rather than the team's copy.
    pub to_visitor: bool,
    /// The lead it is about.
    pub lead: Option<LeadId>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Tries so far.
    pub attempts: u32,
    /// When it is next due (while pending).
    pub next_at: Timestamp,
    /// When it was made: when what it announces happened.
    pub created_at: Timestamp,
    /// When the destination took it.
    pub delivered_at: Option<Timestamp>,
    /// The last try's failure.
    pub last_error: Option<String>,
}

/// One try of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was made.
    pub at: Timestamp,
    /// The HTTP status (or SMTP code) the destination answered, if it answered.
    pub status: Option<u16>,
    /// What went wrong, if it did.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub took_ms: u32,
}

/// A delivery claimed by a worker, with its destination as it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The delivery.
    pub delivery: Delivery,
    /// Its destination.
    pub destination: Destination,
    /// The lead's address, for a confirmation to the visitor.
    pub visitor_email: Option<String>,
    /// This claim's own token: only a settlement that names it is written, so that a worker
    /// whose lease ran out (or an earlier run of a restarted one) can never settle it.
    pub lease: String,
}

/// A try's end, for the claim that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settle {
    /// The delivery.
    pub id: DeliveryId,
    /// The claim's token ([`Claimed::lease`]).
    pub lease: String,
    /// How it ended.
    pub settlement: Settlement,
}

/// How a try ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The destination took it.
    Delivered(Attempt),
    /// Try again at `next` (or, with none, give up: dead).
    Failed {
        /// The try.
        attempt: Attempt,
        /// When to try again; `None` when the tries are used up.
        next: Option<Timestamp>,
    },
    /// The destination is gone (a webhook answered 410): the delivery is dead and the
    /// destination is turned off, with the reason.
    Gone(Attempt),
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only these.
    pub status: Option<DeliveryStatus>,
    /// Only to this destination.
    pub destination: Option<DestinationId>,
    /// Only about this lead.
    pub lead: Option<LeadId>,
    /// At most this many, newest first (0: a default of 100).
    pub limit: usize,
}

/// The outbox's storage.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Adds a destination, or replaces the one with its id (of the same site).
    async fn put_destination(&self, destination: &Destination) -> Result<()>;

    /// A site's destinations, oldest first.
    async fn destinations(&self, site: &SiteId) -> Result<Vec<Destination>>;

    /// One destination of a site's.
    async fn destination(&self, site: &SiteId, id: &DestinationId) -> Result<Option<Destination>>;

    /// Removes a destination; its pending deliveries die with "destination removed".
    async fn delete_destination(
        &self,
        site: &SiteId,
        id: &DestinationId,
        now: Timestamp,
    ) -> Result<()>;

    /// Fans `events` out to the site's destinations that take them, in one transaction.
    async fn enqueue(
        &self,
        site: &SiteId,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>>;

    /// One event to one destination, whether or not it takes the topic (the test button).
    async fn enqueue_to(
        &self,
        site: &SiteId,
        destination: &DestinationId,
        event: &NewEvent,
        now: Timestamp,
    ) -> Result<DeliveryId>;

    /// Claims up to `limit` due deliveries of enabled destinations for `worker` until
    /// `lease_until`: a delivery whose lease ran out is due again. Two workers never hold the
    /// same delivery at once.
    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Claimed>>;

    /// Lets go of every lease `worker` holds: a worker starting again under its old name (the
    /// node restarted) takes back at once what its last run had claimed and never settled.
    async fn release_leases(&self, worker: &str) -> Result<usize>;

    /// Records how tries of deliveries ended, all in one transaction (one sync for a whole
    /// batch). For each, `false` when its claim no longer holds (the lease ran out and someone
    /// else took it, or the worker restarted): nothing of that one is written.
    async fn settle(&self, settled: &[Settle]) -> Result<Vec<bool>>;

    /// A site's deliveries.
    async fn deliveries(&self, site: &SiteId, query: &DeliveryQuery) -> Result<Vec<Delivery>>;

    /// One delivery of a site's, with its tries, oldest first.
    async fn delivery(
        &self,
        site: &SiteId,
        id: &DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>>;

    /// Makes a delivery due again now, with a fresh set of tries (a dead one replayed by hand;
    /// a waiting one hurried). [`crate::StoreError::Conflict`] when it was delivered, is being
    /// tried right now, or its destination is gone or turned off.
    async fn replay(&self, site: &SiteId, id: &DeliveryId, now: Timestamp) -> Result<()>;

    /// When the next pending delivery of an enabled destination is due, if any is.
    async fn next_due(&self) -> Result<Option<Timestamp>>;
}
