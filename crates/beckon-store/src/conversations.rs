//! The conversations concern: a visitor's chats with the site's AI agent and its people, their
//! messages in order, ratings, each site's desk settings and its agents' profiles.
//!
//! Promises every backend keeps (checked by `conversations_suite`):
//! - a visitor has at most one open conversation per site;
//! - a message's `seq` is its place in the conversation, given by the store, without gaps;
//! - a message whose sender's id (`client_id`) the conversation already holds is not stored
//!   again: the stored one is answered, marked as a duplicate;
//! - a conversation is rated once, and only once it is closed.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::accounts::UserId;

/// The most characters a message's text may hold. The desk refuses longer ones with a message.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// The most pages a conversation's context keeps (the latest).
pub const MAX_CONTEXT_PAGES: usize = 20;

/// A conversation's id: `c_` and 20 base-36 characters, drawn by the desk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationId(String);

impl ConversationId {
    /// Checks the form of an id that came from outside.
    pub fn parse(s: &str) -> Option<ConversationId> {
        let ok = s.len() == 22
            && s.starts_with("c_")
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        ok.then(|| ConversationId(s.to_owned()))
    }

    /// Makes an id from 20 base-36 characters drawn by the caller.
    pub fn from_random(chars: &str) -> Option<ConversationId> {
        ConversationId::parse(&format!("c_{chars}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// The visitor.
    Visitor,
    /// The site's AI agent (a model or the offline responder).
    Ai,
    /// A person of the site.
    Agent,
    /// The desk itself (someone joined, the conversation was closed…).
    System,
}

impl Author {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Visitor => "visitor",
            Author::Ai => "ai",
            Author::Agent => "agent",
            Author::System => "system",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Author> {
        match s {
            "visitor" => Some(Author::Visitor),
            "ai" => Some(Author::Ai),
            "agent" => Some(Author::Agent),
            "system" => Some(Author::System),
            _ => None,
        }
    }
}

/// Where a conversation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The AI agent answers.
    Bot,
    /// Waiting for a person of its department.
    Queued,
    /// Offered to a person, who has not accepted yet.
    Offered,
    /// A person holds it.
    Active,
    /// Nobody took it in time; the visitor was offered an e-mail follow-up.
    Missed,
    /// Ended; the transcript is kept.
    Closed,
}

impl Status {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Bot => "bot",
            Status::Queued => "queued",
            Status::Offered => "offered",
            Status::Active => "active",
            Status::Missed => "missed",
            Status::Closed => "closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "bot" => Some(Status::Bot),
            "queued" => Some(Status::Queued),
            "offered" => Some(Status::Offered),
            "active" => Some(Status::Active),
            "missed" => Some(Status::Missed),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    /// Whether the conversation has ended.
    pub fn is_closed(self) -> bool {
        self == Status::Closed
    }
}

/// How a conversation began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The visitor opened the chat from the launcher (or the site's `beckon('open')`).
    Launcher,
    /// The visitor engaged an intervention that leads to the chat.
    Intervention {
        /// The rule that fired it.
        rule: String,
        /// The intervention's id.
        intervention: String,
    },
    /// A person of the site started it from the console.
    Agent {
        /// Who.
        user: UserId,
    },
}

/// A page the visitor saw before or during the conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageSeen {
    /// Its path.
    pub path: String,
    /// Its title.
    pub title: String,
    /// Its page type, when it declared one.
    #[serde(default)]
    pub page_type: String,
    /// When it was viewed.
    pub at: Timestamp,
}

/// The cart as the visitor last reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CartSeen {
    /// Its value.
    pub value: f64,
    /// Its currency.
    pub currency: String,
    /// How many items.
    pub items: u32,
}

/// What a person taking over needs to know, captured when the conversation opens (and kept
/// up to date while it runs), so the visitor never has to repeat themselves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The latest pages of the visit, oldest first (at most [`MAX_CONTEXT_PAGES`]).
    #[serde(default)]
    pub pages: Vec<PageSeen>,
    /// The cart.
    #[serde(default)]
    pub cart: Option<CartSeen>,
    /// Device type (desktop, mobile, tablet).
    #[serde(default)]
    pub device: String,
    /// Browser and its version, as the user agent says.
    #[serde(default)]
    pub browser: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Where the visit came from.
    #[serde(default)]
    pub referrer: String,
    /// The visitor's language (BCP 47 primary tag).
    #[serde(default)]
    pub language: String,
    /// Traits the site told (`beckon('identify', …)`), as text.
    #[serde(default)]
    pub traits: Vec<(String, String)>,
}

/// What the visitor gave in the pre-chat form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Prechat {
    /// Their name.
    #[serde(default)]
    pub name: String,
    /// Their address.
    #[serde(default)]
    pub email: String,
    /// The topic they chose.
    #[serde(default)]
    pub topic: String,
}

/// Who closed a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    /// The visitor.
    Visitor,
    /// A person of the site.
    Agent,
    /// Nobody wrote for the site's inactivity time.
    Inactivity,
}

impl Closer {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Visitor => "visitor",
            Closer::Agent => "agent",
            Closer::Inactivity => "inactivity",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Closer> {
        match s {
            "visitor" => Some(Closer::Visitor),
            "agent" => Some(Closer::Agent),
            "inactivity" => Some(Closer::Inactivity),
            _ => None,
        }
    }
}

/// The visitor's rating of a closed conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// 1 (poor) to 5 (great).
    pub score: u8,
    /// What they added, possibly nothing.
    pub comment: String,
    /// When.
    pub at: Timestamp,
}

/// A conversation as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// Where it stands.
    pub status: Status,
    /// The department it belongs to (from the rule that led here, the topic or the request).
    pub department: Option<String>,
    /// The person who holds it, or to whom it is offered.
    pub assignee: Option<UserId>,
    /// How it began.
    pub origin: Origin,
    /// What a person taking over needs to know.
    pub context: Context,
    /// The pre-chat form, when the visitor filled one.
    pub prechat: Option<Prechat>,
    /// Its priority for routing (higher first; the cart's value by default).
    pub priority: i64,
    /// Why it went to people, in words, when it did.
    pub handoff: Option<String>,
    /// When it began.
    pub started_at: Timestamp,
    /// When anything last happened in it.
    pub updated_at: Timestamp,
    /// When and by whom it was closed.
    pub closed: Option<(Timestamp, Closer)>,
    /// The visitor's rating.
    pub rating: Option<Rating>,
    /// The `seq` of its latest message (0: none yet).
    pub last_seq: u64,
    /// The latest `seq` the visitor has read.
    pub visitor_read: u64,
    /// The latest `seq` the site's people have read.
    pub agent_read: u64,
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its id in the store of files.
    pub id: String,
    /// Its name, as the sender gave it (text only).
    pub name: String,
    /// Its checked type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A file as stored with its conversation (its bytes apart).
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord {
    /// Its id (`f_` and 20 base-36 characters).
    pub id: String,
    /// The conversation it belongs to; only its two parties may fetch it.
    pub conversation: ConversationId,
    /// Its name, as the sender gave it (text only).
    pub name: String,
    /// Its type, as its content says (never as the sender claims).
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// Who sent it.
    pub author: Author,
    /// When.
    pub at: Timestamp,
}

/// A message to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// The sender's id for it, which makes a resend a no-op.
    pub client_id: Option<String>,
    /// Who wrote it.
    pub author: Author,
    /// The person, for [`Author::Agent`].
    pub author_id: Option<UserId>,
    /// How the author is shown (a person's name), when not the default.
    pub author_name: Option<String>,
    /// Its text (at most [`MAX_MESSAGE_CHARS`]).
    pub text: String,
    /// A file, when there is one.
    pub attachment: Option<Attachment>,
    /// When.
    pub at: Timestamp,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its place in the conversation, from 1.
    pub seq: u64,
    /// The sender's id for it.
    pub client_id: Option<String>,
    /// Who wrote it.
    pub author: Author,
    /// The person, for [`Author::Agent`].
    pub author_id: Option<UserId>,
    /// How the author is shown.
    pub author_name: Option<String>,
    /// Its text.
    pub text: String,
    /// A file, when there is one.
    pub attachment: Option<Attachment>,
    /// When.
    pub at: Timestamp,
}

/// What appending a message did.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The stored message (the earlier one, for a duplicate).
    pub message: Message,
    /// Whether the conversation already held a message with this `client_id`.
    pub duplicate: bool,
}

/// A change to a conversation's standing; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationChange {
    /// A new status.
    pub status: Option<Status>,
    /// A new department.
    pub department: Option<Option<String>>,
    /// A new assignee.
    pub assignee: Option<Option<UserId>>,
    /// Why it went to people.
    pub handoff: Option<Option<String>>,
    /// A new priority.
    pub priority: Option<i64>,
    /// Fresh context.
    pub context: Option<Context>,
    /// What the visitor told about themselves (the pre-chat form, an address left later).
    pub prechat: Option<Option<Prechat>>,
    /// Closing it (with [`Status::Closed`]).
    pub closed: Option<(Timestamp, Closer)>,
    /// The visitor has read up to this `seq` (never lowers it).
    pub visitor_read: Option<u64>,
    /// The site's people have read up to this `seq` (never lowers it).
    pub agent_read: Option<u64>,
    /// Make the change only if the conversation stands so (else
    /// [`crate::StoreError::Conflict`], nothing written): a step decided on what was read
    /// must not undo what someone else changed meanwhile.
    pub expect: Option<Expect>,
    /// A lead the change captures (an address left for a follow-up), written with it.
    pub lead: Option<crate::leads::NewLead>,
    /// What announces the change to the site's destinations, written with it.
    pub announce: Vec<crate::outbox::NewEvent>,
}

impl ConversationChange {
    /// Applies the change's fields to `c` at `at`: what every backend writes, and what a
    /// caller announcing the change describes.
    pub fn apply_to(&self, c: &mut Conversation, at: Timestamp) {
        if let Some(s) = self.status {
            c.status = s;
        }
        if let Some(d) = &self.department {
            c.department = d.clone();
        }
        if let Some(a) = self.assignee {
            c.assignee = a;
        }
        if let Some(h) = &self.handoff {
            c.handoff = h.clone();
        }
        if let Some(p) = self.priority {
            c.priority = p;
        }
        if let Some(ctx) = &self.context {
            c.context = ctx.clone();
        }
        if let Some(p) = &self.prechat {
            c.prechat = p.clone();
        }
        if let Some(closed) = self.closed {
            c.closed = Some(closed);
            c.status = Status::Closed;
        }
        if let Some(r) = self.visitor_read {
            c.visitor_read = c.visitor_read.max(r.min(c.last_seq));
        }
        if let Some(r) = self.agent_read {
            c.agent_read = c.agent_read.max(r.min(c.last_seq));
        }
        c.updated_at = c.updated_at.max(at);
    }
}

/// What a conversation must stand as for a change to apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// One of these statuses (none: any).
    pub statuses: Vec<Status>,
    /// This assignee (none: any).
    pub assignee: Option<Option<UserId>>,
}

impl Expect {
    /// Whether a conversation stands as expected.
    pub fn holds(&self, c: &Conversation) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&c.status))
            && self.assignee.is_none_or(|a| a == c.assignee)
    }
}

/// Which conversations to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationQuery {
    /// Open ones only (`Some(true)`), closed ones only (`Some(false)`), or all.
    pub open: Option<bool>,
    /// Only those of this visitor.
    pub visitor: Option<VisitorId>,
    /// Only those last updated before this instant (for paging, newest first).
    pub before: Option<Timestamp>,
    /// At most this many.
    pub limit: usize,
}

/// A site's chat settings, managed in the dashboard. Stored whole; a field added later takes
/// its default in settings saved before it existed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeskSettings {
    /// Whether the widget shows a chat launcher on every page.
    pub launcher: bool,
    /// The chat's title.
    pub title: String,
    /// The first line of a chat the visitor opens.
    pub welcome: String,
    /// The pre-chat form for chats the visitor opens (none by default).
    pub prechat: PrechatForm,
    /// Whether the AI agent answers only pre-purchase questions (the default), routing the
    /// rest to people.
    pub presales_only: bool,
    /// The site's departments; the first is the default.
    pub departments: Vec<Department>,
    /// Seconds a person has to accept an offered conversation before it moves on.
    pub accept_seconds: u32,
    /// Seconds a conversation may wait for a person before the visitor is offered an e-mail
    /// follow-up.
    pub wait_seconds: u32,
    /// Minutes without a message after which an open conversation closes.
    pub inactivity_minutes: u32,
    /// Canned replies for the console: (shortcut, text).
    pub canned: Vec<(String, String)>,
}

impl Default for DeskSettings {
    fn default() -> Self {
        DeskSettings {
            launcher: true,
            title: "Chat with us".to_owned(),
            welcome: "Hi! Ask us anything about our products, shipping or your order.".to_owned(),
            prechat: PrechatForm::default(),
            presales_only: true,
            departments: vec![
                Department {
                    id: "sales".to_owned(),
                    name: "Sales".to_owned(),
                },
                Department {
                    id: "support".to_owned(),
                    name: "Support".to_owned(),
                },
            ],
            accept_seconds: 30,
            wait_seconds: 120,
            inactivity_minutes: 30,
            canned: Vec::new(),
        }
    }
}

/// The pre-chat form's fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrechatForm {
    /// Ask for a name.
    pub name: bool,
    /// Ask for an address.
    pub email: bool,
    /// Offer these topics to choose from (none: no topic asked). Each names a department's id
    /// or is free text.
    pub topics: Vec<String>,
}

/// A team of people who take a kind of conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Department {
    /// Its id, used in rules (`department = "sales"`).
    pub id: String,
    /// Its name for people.
    pub name: String,
}

/// How one person of a site takes conversations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentProfile {
    /// The person.
    pub user: UserId,
    /// The most conversations they hold at once.
    pub capacity: u32,
    /// The departments they take (none: all).
    pub departments: Vec<String>,
    /// The languages they speak (BCP 47 primary tags; none: any).
    pub languages: Vec<String>,
}

impl Default for AgentProfile {
    fn default() -> Self {
        AgentProfile {
            user: 0,
            capacity: 3,
            departments: Vec::new(),
            languages: Vec::new(),
        }
    }
}

/// One model call (or an answer the budget kept from the model), for cost and analytics.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCall {
    /// The conversation it answered, when it answered one.
    pub conversation: Option<ConversationId>,
    /// When it started.
    pub at: Timestamp,
    /// The model (`model:gpt-4o-mini`), or `offline` when the budget kept the model out.
    pub model: String,
    /// What it was for: `answer` or `greeting`.
    pub purpose: String,
    /// Calls made (tool rounds count each).
    pub calls: u32,
    /// Tokens sent.
    pub prompt_tokens: u64,
    /// Tokens written.
    pub completion_tokens: u64,
    /// How long it took, in ms.
    pub latency_ms: u64,
    /// `ok`, `budget` (the daily budget was spent; the offline responder answered) or
    /// `error: …` (the offline responder answered instead).
    pub outcome: String,
}

/// What a site's model calls added up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    /// Calls.
    pub calls: u64,
    /// Tokens, sent and written.
    pub tokens: u64,
}

/// The conversations concern, behind one interface for every backend.
#[async_trait]
pub trait Conversations: Send + Sync {
    /// Stores a new conversation. A visitor who already has an open one on the site gets
    /// [`crate::StoreError::Conflict`] and nothing is written.
    async fn open_conversation(
        &self,
        conversation: &Conversation,
        announce: &[crate::outbox::NewEvent],
    ) -> Result<()>;

    /// One conversation of a site.
    async fn conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
    ) -> Result<Option<Conversation>>;

    /// The visitor's latest conversation on the site (open or not).
    async fn latest_conversation_of(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
    ) -> Result<Option<Conversation>>;

    /// Appends a message, giving it the next `seq`; see the module's promises.
    /// [`crate::StoreError::NotFound`] for an unknown conversation,
    /// [`crate::StoreError::Conflict`] for a closed one (a resend of a message it holds is
    /// still answered as a duplicate).
    async fn append_message(
        &self,
        site: &SiteId,
        id: &ConversationId,
        message: &NewMessage,
    ) -> Result<Appended>;

    /// Messages after `after`, in order, at most `limit`.
    async fn messages(
        &self,
        site: &SiteId,
        id: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// Changes a conversation's standing and answers it as it now is; `at` becomes its
    /// `updated_at`. [`crate::StoreError::NotFound`] for an unknown conversation,
    /// [`crate::StoreError::Conflict`] for a change to a closed one (other than read marks).
    async fn change_conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
        change: &ConversationChange,
        at: Timestamp,
    ) -> Result<Conversation>;

    /// Records the visitor's rating. [`crate::StoreError::Conflict`] when the conversation is
    /// not closed or is already rated.
    async fn rate_conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
        rating: &Rating,
        announce: &[crate::outbox::NewEvent],
    ) -> Result<()>;

    /// A site's conversations, most recently updated first.
    async fn conversations(
        &self,
        site: &SiteId,
        query: &ConversationQuery,
    ) -> Result<Vec<Conversation>>;

    /// Every open conversation of every site (for the desk to pick up after a restart).
    async fn open_conversations(&self) -> Result<Vec<Conversation>>;

    /// A site's desk settings; the defaults when none were saved.
    async fn desk_settings(&self, site: &SiteId) -> Result<DeskSettings>;

    /// Saves a site's desk settings. [`crate::StoreError::NotFound`] for an unknown site.
    async fn put_desk_settings(&self, site: &SiteId, settings: &DeskSettings) -> Result<()>;

    /// The agent profiles saved for a site.
    async fn agent_profiles(&self, site: &SiteId) -> Result<Vec<AgentProfile>>;

    /// Saves one person's profile for a site.
    async fn put_agent_profile(&self, site: &SiteId, profile: &AgentProfile) -> Result<()>;

    /// Stores a file of a conversation; a file whose id is stored already is not written
    /// again. [`crate::StoreError::NotFound`] when the conversation is not the site's.
    async fn put_file(&self, site: &SiteId, file: &FileRecord, bytes: &[u8]) -> Result<()>;

    /// A file of a site, with its bytes.
    async fn file(&self, site: &SiteId, id: &str) -> Result<Option<(FileRecord, Vec<u8>)>>;

    /// Records a model call.
    async fn record_model_call(&self, site: &SiteId, call: &ModelCall) -> Result<()>;

    /// A site's model calls and tokens since `since`.
    async fn model_spend(&self, site: &SiteId, since: Timestamp) -> Result<Spend>;
}
