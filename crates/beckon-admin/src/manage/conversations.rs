//! Conversations and the desk, as the console and the API see them: every function takes the
//! actor and checks first that it may touch the site it names. Agents and administrators of a
//! site both work the desk; only administrators change its settings.

use beckon_agent::desk::{AgentRef, DeskError, Target};
use beckon_agent::{Desk, routing};
use beckon_engine::VisitorId;
use beckon_store::conversations::{
    AgentProfile, Conversation, ConversationId, ConversationQuery, Department, DeskSettings,
    Message, Origin, PrechatForm,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::error::{AdminError, AdminResult};
use crate::manage::rfc3339;

impl From<DeskError> for AdminError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::Invalid(message) => AdminError::Invalid {
                field: None,
                message,
            },
            DeskError::NotFound => AdminError::NotFound("no such conversation".to_owned()),
            DeskError::Conflict(m) => AdminError::Conflict(m),
            DeskError::Store(m) => AdminError::Store(m),
        }
    }
}

impl From<routing::RouteError> for AdminError {
    fn from(e: routing::RouteError) -> Self {
        AdminError::Conflict(e.to_string())
    }
}

/// The desk, when the server runs one.
pub fn desk(state: &AdminState) -> AdminResult<&Desk> {
    state
        .desk
        .as_ref()
        .ok_or_else(|| AdminError::NotFound("this server runs no chat desk".to_owned()))
}

/// The actor acting at a site's desk.
pub fn agent(actor: &Actor, key: &str) -> AdminResult<AgentRef> {
    Ok(AgentRef {
        site: actor.site(key)?,
        user: actor.user.id,
        name: actor.user.name.clone(),
        supervisor: actor.require_admin().is_ok(),
    })
}

fn conversation_id(id: &str) -> AdminResult<ConversationId> {
    ConversationId::parse(id).ok_or_else(|| AdminError::NotFound(format!("no conversation {id:?}")))
}

/// A page the visitor saw.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PageView {
    /// Its path.
    pub path: String,
    /// Its title.
    pub title: String,
    /// Its declared type.
    pub page_type: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The cart.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CartView {
    /// Its value.
    pub value: f64,
    /// Its currency.
    pub currency: String,
    /// Items in it.
    pub items: u32,
}

/// What a person taking over sees of the visit.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ContextView {
    /// The latest pages, oldest first.
    pub pages: Vec<PageView>,
    /// The cart.
    pub cart: Option<CartView>,
    /// Device type.
    pub device: String,
    /// Browser and version.
    pub browser: String,
    /// Operating system.
    pub os: String,
    /// Where the visit came from.
    pub referrer: String,
    /// The visitor's language.
    pub language: String,
    /// What the site told of the visitor (`beckon('identify', …)`).
    pub traits: Vec<(String, String)>,
}

impl From<&beckon_store::conversations::Context> for ContextView {
    fn from(ctx: &beckon_store::conversations::Context) -> ContextView {
        ContextView {
            pages: ctx
                .pages
                .iter()
                .map(|p| PageView {
                    path: p.path.clone(),
                    title: p.title.clone(),
                    page_type: p.page_type.clone(),
                    at: rfc3339(p.at),
                })
                .collect(),
            cart: ctx.cart.as_ref().map(|k| CartView {
                value: k.value,
                currency: k.currency.clone(),
                items: k.items,
            }),
            device: ctx.device.clone(),
            browser: ctx.browser.clone(),
            os: ctx.os.clone(),
            referrer: ctx.referrer.clone(),
            language: ctx.language.clone(),
            traits: ctx.traits.clone(),
        }
    }
}

/// What the visitor gave in the pre-chat form or for a follow-up.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PrechatView {
    /// Name.
    pub name: String,
    /// Address.
    pub email: String,
    /// Topic.
    pub topic: String,
}

/// A conversation.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConversationView {
    /// Its id.
    pub id: String,
    /// The visitor.
    pub visitor: String,
    /// `bot`, `queued`, `offered`, `active`, `missed` or `closed`.
    pub status: String,
    /// Its department.
    pub department: Option<String>,
    /// Who holds it (or to whom it is offered).
    pub assignee: Option<i64>,
    /// `launcher`, `intervention` or `agent`.
    pub origin: String,
    /// The rule that led here, for an intervention.
    pub rule: Option<String>,
    /// Why it went to people.
    pub handoff: Option<String>,
    /// Its routing priority.
    pub priority: i64,
    /// When it began (RFC 3339).
    pub started_at: String,
    /// When anything last happened in it.
    pub updated_at: String,
    /// When it closed.
    pub closed_at: Option<String>,
    /// `visitor`, `agent` or `inactivity`.
    pub closed_by: Option<String>,
    /// The visitor's rating, 1 to 5.
    pub rating: Option<u8>,
    /// Their comment.
    pub rating_comment: Option<String>,
    /// The latest message's `seq`.
    pub last_seq: u64,
    /// Messages the site's people have not read.
    pub unread: u64,
    /// The latest message the visitor read.
    pub visitor_read: u64,
    /// What the visit was.
    pub context: ContextView,
    /// What the visitor told.
    pub prechat: Option<PrechatView>,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        let (origin, rule) = match &c.origin {
            Origin::Launcher => ("launcher", None),
            Origin::Intervention { rule, .. } => ("intervention", Some(rule.clone())),
            Origin::Agent { .. } => ("agent", None),
        };
        ConversationView {
            id: c.id.to_string(),
            visitor: c.visitor.to_string(),
            status: c.status.as_str().to_owned(),
            department: c.department.clone(),
            assignee: c.assignee,
            origin: origin.to_owned(),
            rule,
            handoff: c.handoff.clone(),
            priority: c.priority,
            started_at: rfc3339(c.started_at),
            updated_at: rfc3339(c.updated_at),
            closed_at: c.closed.map(|(at, _)| rfc3339(at)),
            closed_by: c.closed.map(|(_, by)| by.as_str().to_owned()),
            rating: c.rating.as_ref().map(|r| r.score),
            rating_comment: c.rating.as_ref().map(|r| r.comment.clone()),
            last_seq: c.last_seq,
            unread: c.last_seq.saturating_sub(c.agent_read),
            visitor_read: c.visitor_read,
            context: ContextView::from(&c.context),
            prechat: c.prechat.as_ref().map(|p| PrechatView {
                name: p.name.clone(),
                email: p.email.clone(),
                topic: p.topic.clone(),
            }),
        }
    }
}

/// A message.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// Its place in the conversation.
    pub seq: u64,
    /// `visitor`, `ai`, `agent` or `system`.
    pub from: String,
    /// A person's name.
    pub name: Option<String>,
    /// The text (never HTML); a file's name for a file.
    pub text: String,
    /// A file sent with it.
    pub file: Option<FileView>,
    /// When (RFC 3339).
    pub at: String,
}

/// A file of a message.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FileView {
    /// Its id: `GET …/conversations/{id}/files/{file}` fetches it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            seq: m.seq,
            from: m.author.as_str().to_owned(),
            name: m.author_name.clone(),
            text: m.text.clone(),
            file: m.attachment.as_ref().map(|a| FileView {
                id: a.id.clone(),
                name: a.name.clone(),
                mime: a.mime.clone(),
                size: a.size,
            }),
            at: rfc3339(m.at),
        }
    }
}

/// A conversation with its latest messages.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Transcript {
    /// The conversation.
    pub conversation: ConversationView,
    /// Its latest messages, in order.
    pub messages: Vec<MessageView>,
}

/// A site's conversations, most recently updated first.
pub async fn list(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    open: Option<bool>,
) -> AdminResult<Vec<ConversationView>> {
    let site = actor.site(key)?;
    let found = state
        .conversations
        .conversations(
            &site,
            &ConversationQuery {
                open,
                limit: 500,
                ..ConversationQuery::default()
            },
        )
        .await?;
    Ok(found.iter().map(ConversationView::from).collect())
}

/// One conversation and its messages.
pub async fn get(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<Transcript> {
    let site = actor.site(key)?;
    let id = conversation_id(id)?;
    let (c, messages) = desk(state)?.transcript(&site, &id).await?;
    Ok(Transcript {
        conversation: ConversationView::from(&c),
        messages: messages.iter().map(MessageView::from).collect(),
    })
}

/// Accepts a waiting conversation.
pub async fn accept(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<ConversationView> {
    let me = agent(actor, key)?;
    let c = desk(state)?.accept(&me, &conversation_id(id)?).await?;
    Ok(ConversationView::from(&c))
}

/// A reply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The console's id for it (a resend carries the same).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub id: String,
    /// Its text.
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
}

/// Writes to the visitor.
pub async fn reply(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    reply: Reply,
) -> AdminResult<MessageView> {
    let me = agent(actor, key)?;
    let client = beckon_agent::desk::check_client_id(&reply.id)?;
    let m = desk(state)?
        .agent_say(&me, &conversation_id(id)?, client, &reply.text)
        .await?;
    Ok(MessageView::from(&m))
}

/// Sends a file to the visitor.
pub async fn send_file(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    message_id: &str,
    name: &str,
    bytes: &[u8],
) -> AdminResult<MessageView> {
    let me = agent(actor, key)?;
    let client = beckon_agent::desk::check_client_id(message_id)?;
    let m = desk(state)?
        .agent_file(&me, &conversation_id(id)?, client, name, bytes)
        .await?;
    Ok(MessageView::from(&m))
}

/// A file of a conversation: its name, type and bytes.
pub async fn file(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    file: &str,
) -> AdminResult<(String, String, Vec<u8>)> {
    let site = actor.site(key)?;
    let (record, bytes) = desk(state)?
        .site_file(&site, &conversation_id(id)?, file)
        .await?;
    Ok((record.name, record.mime, bytes))
}

/// Ends a conversation.
pub async fn close(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<ConversationView> {
    let me = agent(actor, key)?;
    let c = desk(state)?.agent_close(&me, &conversation_id(id)?).await?;
    Ok(ConversationView::from(&c))
}

/// Where to pass a conversation: a department's queue, or a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Transfer {
    /// To a department's queue.
    Department {
        /// The department's id.
        #[schema(min_length = 1, max_length = 64)]
        department: String,
    },
    /// To a person of the site.
    Person {
        /// The person's id.
        #[serde(deserialize_with = "whole")]
        person: i64,
    },
}

/// Passes a conversation on.
pub async fn transfer(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    to: Transfer,
) -> AdminResult<ConversationView> {
    let me = agent(actor, key)?;
    let target = match to {
        Transfer::Department { department } => Target::Department(department),
        Transfer::Person { person } => Target::Person(person),
    };
    let c = desk(state)?
        .transfer(&me, &conversation_id(id)?, &target)
        .await?;
    Ok(ConversationView::from(&c))
}

/// Typing, on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    /// Whether the person is typing.
    pub on: bool,
}

/// Tells the visitor the person is typing.
pub async fn typing(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    on: bool,
) -> AdminResult<()> {
    let me = agent(actor, key)?;
    Ok(desk(state)?
        .agent_typing(&me, &conversation_id(id)?, on)
        .await?)
}

/// Up to where the person read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Read {
    /// The last message read.
    #[schema(minimum = 0, maximum = 9007199254740991_i64)]
    #[serde(deserialize_with = "seq")]
    pub seq: u64,
}

/// Marks messages read.
pub async fn read(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    seq: u64,
) -> AdminResult<()> {
    let me = agent(actor, key)?;
    Ok(desk(state)?
        .agent_read(&me, &conversation_id(id)?, seq)
        .await?)
}

/// A conversation a person starts with a visitor on the site.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The visitor.
    #[schema(min_length = 1, max_length = 128)]
    pub visitor: String,
    /// The first message.
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
}

/// Starts a conversation with a visitor.
pub async fn start(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    start: Start,
) -> AdminResult<ConversationView> {
    let me = agent(actor, key)?;
    let visitor = VisitorId::parse(&start.visitor).map_err(|e| AdminError::Invalid {
        field: Some("visitor".to_owned()),
        message: format!("visitor {e}"),
    })?;
    let c = desk(state)?.start_with(&me, &visitor, &start.text).await?;
    Ok(ConversationView::from(&c))
}

/// One person at the desk.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PersonAtDesk {
    /// Their id.
    pub id: i64,
    /// Their name.
    pub name: String,
    /// Whether they take conversations now.
    pub available: bool,
    /// How many they hold.
    pub holding: usize,
    /// How many they may hold.
    pub capacity: u32,
}

/// A conversation waiting for a person.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WaitingAtDesk {
    /// The conversation.
    pub conversation: String,
    /// Its department.
    pub department: Option<String>,
    /// Its priority.
    pub priority: i64,
    /// To whom it is offered now.
    pub offered_to: Option<i64>,
}

/// A department.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DepartmentView {
    /// Its id, as rules name it.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A canned reply of the console.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedReply {
    /// How it is listed.
    #[schema(min_length = 1, max_length = 40)]
    pub shortcut: String,
    /// What it writes.
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
}

fn canned(pairs: Vec<(String, String)>) -> Vec<CannedReply> {
    pairs
        .into_iter()
        .map(|(shortcut, text)| CannedReply { shortcut, text })
        .collect()
}

/// A whole number, also when a client sends it as `7.0` (JSON has one number type).
fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = serde_json::Number::deserialize(d)?;
    let v = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        _ => {
            return Err(serde::de::Error::custom(format!(
                "{n} is not a whole number in range"
            )));
        }
    };
    T::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is out of range")))
}

/// A message's place: a whole number from 0 to 2^53 − 1 (what every JSON reader holds exactly).
fn seq<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v: u64 = whole(d)?;
    if v > 9_007_199_254_740_991 {
        return Err(serde::de::Error::custom(format!(
            "{v} is larger than 2^53 - 1"
        )));
    }
    Ok(v)
}

/// The desk of a site: who is there, what waits, and what the console offers.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeskView {
    /// Whether the caller takes conversations now.
    pub available: bool,
    /// The people at the desk.
    pub people: Vec<PersonAtDesk>,
    /// What waits, in serving order.
    pub queue: Vec<WaitingAtDesk>,
    /// The site's departments.
    pub departments: Vec<DepartmentView>,
    /// Canned replies.
    pub canned: Vec<CannedReply>,
}

/// The desk as the caller sees it.
pub async fn board(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<DeskView> {
    let me = agent(actor, key)?;
    let desk = desk(state)?;
    let board = desk.board(&me.site);
    let settings = desk.settings(&me.site);
    Ok(DeskView {
        available: desk.is_available(&me),
        people: board
            .people
            .into_iter()
            .map(|p| PersonAtDesk {
                id: p.user,
                name: p.name,
                available: p.available,
                holding: p.holding,
                capacity: p.capacity,
            })
            .collect(),
        queue: board
            .queue
            .into_iter()
            .map(|w| WaitingAtDesk {
                conversation: w.conversation.to_string(),
                department: w.department,
                priority: w.priority,
                offered_to: w.offered_to,
            })
            .collect(),
        departments: settings
            .departments
            .iter()
            .map(|d| DepartmentView {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect(),
        canned: canned(settings.canned),
    })
}

/// Availability.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// Whether the caller takes conversations now.
    pub available: bool,
}

/// Comes online or goes away.
pub async fn set_available(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    on: bool,
) -> AdminResult<DeskView> {
    let me = agent(actor, key)?;
    desk(state)?.set_available(&me, on).await?;
    board(state, actor, key).await
}

/// A site's chat settings, as the API reads and writes them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsView {
    /// Show the chat launcher on every page.
    pub launcher: bool,
    /// The chat's title.
    #[schema(max_length = 80)]
    pub title: String,
    /// The first line of a chat the visitor opens.
    #[schema(max_length = 500)]
    pub welcome: String,
    /// Ask for a name before a chat the visitor opens.
    pub prechat_name: bool,
    /// Ask for an address.
    pub prechat_email: bool,
    /// Topics to choose from (none: no topic asked).
    pub prechat_topics: Vec<String>,
    /// The AI answers only pre-purchase questions; the rest go to people.
    pub presales_only: bool,
    /// The departments; the first is the default.
    #[schema(min_items = 1, max_items = 20)]
    pub departments: Vec<DepartmentView>,
    /// Seconds to accept an offered conversation.
    #[schema(minimum = 5, maximum = 3600)]
    #[serde(deserialize_with = "whole")]
    pub accept_seconds: u32,
    /// Seconds a conversation may wait for a person before the visitor is offered a follow-up.
    #[schema(minimum = 10, maximum = 86400)]
    #[serde(deserialize_with = "whole")]
    pub wait_seconds: u32,
    /// Minutes without a message before a conversation closes.
    #[schema(minimum = 1, maximum = 10080)]
    #[serde(deserialize_with = "whole")]
    pub inactivity_minutes: u32,
    /// Canned replies for the console.
    #[schema(max_items = 100)]
    pub canned: Vec<CannedReply>,
}

impl From<DeskSettings> for SettingsView {
    fn from(s: DeskSettings) -> Self {
        SettingsView {
            launcher: s.launcher,
            title: s.title,
            welcome: s.welcome,
            prechat_name: s.prechat.name,
            prechat_email: s.prechat.email,
            prechat_topics: s.prechat.topics,
            presales_only: s.presales_only,
            departments: s
                .departments
                .into_iter()
                .map(|d| DepartmentView {
                    id: d.id,
                    name: d.name,
                })
                .collect(),
            accept_seconds: s.accept_seconds,
            wait_seconds: s.wait_seconds,
            inactivity_minutes: s.inactivity_minutes,
            canned: canned(s.canned),
        }
    }
}

fn text(field: &str, value: &str, max: usize) -> AdminResult<String> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(AdminError::field(
            field,
            format!("holds at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AdminError::field(field, "may not hold control characters"));
    }
    Ok(v.to_owned())
}

impl SettingsView {
    /// Checks every field; the settings to store.
    pub fn check(self) -> AdminResult<DeskSettings> {
        let in_range = |field: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(AdminError::field(
                    field,
                    format!("must be between {lo} and {hi}"),
                ))
            }
        };
        if self.departments.is_empty() || self.departments.len() > 20 {
            return Err(AdminError::field("departments", "name 1 to 20 departments"));
        }
        let mut departments = Vec::new();
        for (i, d) in self.departments.iter().enumerate() {
            let id = d.id.trim();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(AdminError::field(
                    format!("departments[{i}].id"),
                    "is 1 to 64 letters, digits, - or _",
                ));
            }
            if departments.iter().any(|x: &Department| x.id == id) {
                return Err(AdminError::field(
                    format!("departments[{i}].id"),
                    format!("{id:?} is named twice"),
                ));
            }
            let name = text(&format!("departments[{i}].name"), &d.name, 80)?;
            if name.is_empty() {
                return Err(AdminError::field(
                    format!("departments[{i}].name"),
                    "needs a name",
                ));
            }
            departments.push(Department {
                id: id.to_owned(),
                name,
            });
        }
        if self.prechat_topics.len() > 20 {
            return Err(AdminError::field("prechat_topics", "at most 20 topics"));
        }
        if self.canned.len() > 100 {
            return Err(AdminError::field("canned", "at most 100 canned replies"));
        }
        let topics = self
            .prechat_topics
            .iter()
            .enumerate()
            .map(|(i, t)| text(&format!("prechat_topics[{i}]"), t, 80))
            .collect::<AdminResult<Vec<_>>>()?;
        let canned = self
            .canned
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let shortcut = text(&format!("canned[{i}].shortcut"), &c.shortcut, 40)?;
                let reply = text(&format!("canned[{i}].text"), &c.text, 4000)?;
                if shortcut.is_empty() || reply.is_empty() {
                    return Err(AdminError::field(
                        format!("canned[{i}]"),
                        "needs a shortcut and a text",
                    ));
                }
                Ok((shortcut, reply))
            })
            .collect::<AdminResult<Vec<_>>>()?;
        Ok(DeskSettings {
            launcher: self.launcher,
            title: text("title", &self.title, 80)?,
            welcome: text("welcome", &self.welcome, 500)?,
            prechat: PrechatForm {
                name: self.prechat_name,
                email: self.prechat_email,
                topics,
            },
            presales_only: self.presales_only,
            departments,
            accept_seconds: in_range("accept_seconds", self.accept_seconds, 5, 3600)?,
            wait_seconds: in_range("wait_seconds", self.wait_seconds, 10, 86_400)?,
            inactivity_minutes: in_range("inactivity_minutes", self.inactivity_minutes, 1, 10_080)?,
            canned,
        })
    }
}

/// A site's chat settings.
pub async fn settings(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<SettingsView> {
    let site = actor.site(key)?;
    Ok(state.conversations.desk_settings(&site).await?.into())
}

/// Saves a site's chat settings (administrators only); the desk applies them at once.
pub async fn save_settings(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    view: SettingsView,
) -> AdminResult<SettingsView> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    let settings = view.check()?;
    state
        .conversations
        .put_desk_settings(&site, &settings)
        .await?;
    if let Some(desk) = &state.desk {
        desk.reload_settings(&site).await?;
    }
    Ok(settings.into())
}

/// How one person takes conversations on a site.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileView {
    /// The most conversations they hold at once.
    #[schema(minimum = 1, maximum = 50)]
    #[serde(deserialize_with = "whole")]
    pub capacity: u32,
    /// Their departments (none: all).
    pub departments: Vec<String>,
    /// Their languages, as BCP 47 primary tags (none: any).
    pub languages: Vec<String>,
}

/// Saves the caller's own profile for a site's desk.
pub async fn save_profile(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    view: ProfileView,
) -> AdminResult<ProfileView> {
    let site = actor.site(key)?;
    if !(1..=50).contains(&view.capacity) {
        return Err(AdminError::field("capacity", "must be between 1 and 50"));
    }
    if view.departments.len() > 20 || view.languages.len() > 20 {
        return Err(AdminError::field(
            "departments",
            "at most 20 departments and 20 languages",
        ));
    }
    for (i, l) in view.languages.iter().enumerate() {
        if l.is_empty() || l.len() > 8 || !l.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(AdminError::field(
                format!("languages[{i}]"),
                "is a language tag such as \"en\"",
            ));
        }
    }
    let known = state.conversations.desk_settings(&site).await?.departments;
    for (i, d) in view.departments.iter().enumerate() {
        if !known.iter().any(|k| &k.id == d) {
            return Err(AdminError::field(
                format!("departments[{i}]"),
                format!("no department {d:?}"),
            ));
        }
    }
    let profile = AgentProfile {
        user: actor.user.id,
        capacity: view.capacity,
        departments: view.departments.clone(),
        languages: view.languages.clone(),
    };
    state
        .conversations
        .put_agent_profile(&site, &profile)
        .await?;
    if let Some(desk) = &state.desk {
        let me = agent(actor, key)?;
        let available = desk.is_available(&me);
        desk.set_available(&me, available).await?;
    }
    Ok(view)
}
