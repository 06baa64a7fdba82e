//! The help desk: every conversation of every site, live.
//!
//! The desk holds, per site, its settings, knowledge, responder and routing board, and the
//! conversations open now; it writes through the store before anyone hears of a change
//! (`Update`s go to the visitor's tabs and to the site's consoles only after the store has
//! answered). Its locks are plain mutexes never held across an await.

mod people;
mod updates;
mod visitor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_outbox::payload;
use beckon_store::StoreError;
use beckon_store::accounts::UserId;
use beckon_store::conversations::{
    AgentProfile, Author, Closer, Context, Conversation, ConversationChange, ConversationId,
    Conversations, DeskSettings, Expect, MAX_MESSAGE_CHARS, Message, ModelCall, NewMessage, Origin,
    Prechat, Status,
};
use beckon_store::leads::{Consent, LeadContext, LeadId, LeadSource, Line, NewLead};
use beckon_store::outbox::{NewEvent, Topic};
use rand::Rng;

use crate::budget::{Budget, Spent, day_of};
use crate::greeting::{GreetingAsk, accept};
use crate::knowledge::Knowledge;
use crate::responder::Usage;
use crate::responder::{Offline, Responder};
use crate::routing::{Board, Step};

pub use people::{AgentRef, BoardView, PersonView, Target, WaitingView};
pub use updates::{Lifecycle, News, Relay, Update, VisitorWatch};
pub use visitor::{Opening, Said, VisitorRef};

/// How many messages of a conversation a responder sees, and a sync sends at most.
pub const HISTORY: usize = 200;

/// Why the desk refused.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// What was sent is not acceptable (empty, too long…); the message says what.
    #[error("{0}")]
    Invalid(String),
    /// No such conversation (or not of this site, or not of this visitor).
    #[error("no such conversation")]
    NotFound,
    /// The conversation's state does not allow it (closed; held by someone else).
    #[error("{0}")]
    Conflict(String),
    /// The store failed; nothing was changed.
    #[error("storage: {0}")]
    Store(String),
}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => DeskError::NotFound,
            StoreError::Conflict(m) => DeskError::Conflict(m),
            other => DeskError::Store(other.to_string()),
        }
    }
}

/// Where the desk learns what a visitor did before the conversation (pages, cart, device).
#[async_trait]
pub trait VisitorContext: Send + Sync {
    /// The visitor's context now; an empty one when nothing is known.
    async fn context(&self, site: &SiteId, visitor: &VisitorId) -> Context;

    /// Whether the site has seen this visitor (a person starts chats only with those).
    async fn known(&self, _site: &SiteId, _visitor: &VisitorId) -> bool {
        true
    }
}

/// A context source that knows nothing.
pub struct NoContext;

#[async_trait]
impl VisitorContext for NoContext {
    async fn context(&self, _: &SiteId, _: &VisitorId) -> Context {
        Context::default()
    }
}

/// The time, as the desk reads it (tests drive their own).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// One site at the desk.
struct SiteDesk {
    settings: DeskSettings,
    knowledge: Arc<Knowledge>,
    responder: Arc<dyn Responder>,
    /// The model's daily budget (none: no limit), and what today's answers spent.
    budget: Option<Budget>,
    spent: Spent,
    board: Board,
    /// The open conversations and when anything last happened in each.
    open: HashMap<ConversationId, Live>,
    /// People's names, for "Ana joined".
    names: HashMap<UserId, String>,
}

/// What the desk's clock needs of an open conversation.
#[derive(Clone, Debug)]
struct Live {
    last_activity: Timestamp,
}

impl SiteDesk {
    fn new(settings: DeskSettings) -> SiteDesk {
        let board = Board::new(
            i64::from(settings.accept_seconds) * 1000,
            i64::from(settings.wait_seconds) * 1000,
        );
        SiteDesk {
            settings,
            knowledge: Arc::new(Knowledge::default()),
            responder: Arc::new(Offline),
            budget: None,
            spent: Spent::default(),
            board,
            open: HashMap::new(),
            names: HashMap::new(),
        }
    }
}

/// The help desk. Cheap to clone.
#[derive(Clone)]
pub struct Desk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sites = self.inner.sites.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Desk").field("sites", &sites).finish()
    }
}

struct Inner {
    store: Arc<dyn Conversations>,
    context: Arc<dyn VisitorContext>,
    clock: Clock,
    sites: Mutex<HashMap<SiteId, SiteDesk>>,
    watch: updates::Watchers,
    greetings: Mutex<HashMap<(SiteId, String), Greeting>>,
    /// The consoles each person has open, and since when they have had none.
    presence: Mutex<HashMap<(SiteId, UserId), Presence>>,
}

/// A person's open consoles.
struct Presence {
    name: String,
    consoles: usize,
    since: Option<Timestamp>,
}

/// How long a person may be without any console open before they are taken for away.
pub const AWAY_AFTER_MS: i64 = 60_000;

/// One open console of a person; dropping it (the page closed) counts them out, and once none
/// has been open for [`AWAY_AFTER_MS`] the desk takes them for away: no chat waits on someone
/// who has gone.
pub struct ConsoleOpen {
    desk: Desk,
    key: (SiteId, UserId),
}

impl Drop for ConsoleOpen {
    fn drop(&mut self) {
        let now = self.desk.now();
        let mut presence = self.desk.inner.presence.lock().expect("presence lock");
        if let Some(p) = presence.get_mut(&self.key) {
            p.consoles = p.consoles.saturating_sub(1);
            if p.consoles == 0 {
                p.since = Some(now);
            }
        }
    }
}

/// A greeting being written, written, or refused (then the rule's text stands for the context).
#[derive(Clone, Debug)]
enum Greeting {
    Writing,
    Written(String),
    Refused,
}

/// The most greetings kept; past it the cache starts afresh.
const MAX_GREETINGS: usize = 10_000;

impl Desk {
    /// A desk over a store.
    pub fn new(
        store: Arc<dyn Conversations>,
        context: Arc<dyn VisitorContext>,
        clock: Clock,
    ) -> Desk {
        Desk {
            inner: Arc::new(Inner {
                store,
                context,
                clock,
                sites: Mutex::new(HashMap::new()),
                watch: updates::Watchers::default(),
                greetings: Mutex::new(HashMap::new()),
                presence: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    fn store(&self) -> &dyn Conversations {
        &*self.inner.store
    }

    /// Puts a site at the desk (or refreshes it): its settings and today's model spend from
    /// the store, its knowledge, responder and model budget from the caller.
    pub async fn configure_site(
        &self,
        site: &SiteId,
        knowledge: Arc<Knowledge>,
        responder: Arc<dyn Responder>,
        budget: Option<Budget>,
    ) -> Result<(), DeskError> {
        let settings = self.store().desk_settings(site).await?;
        let now = self.now();
        let spend = self.store().model_spend(site, day_of(now).1).await?;
        let mut sites = self.inner.sites.lock().expect("desk lock");
        let desk = apply_settings(&mut sites, site, settings);
        desk.knowledge = knowledge;
        desk.responder = responder;
        desk.budget = budget;
        desk.spent = Spent::from_record(now, spend);
        Ok(())
    }

    /// Reads a site's settings again (after the dashboard saved them), here and on the other
    /// nodes.
    pub async fn reload_settings(&self, site: &SiteId) -> Result<(), DeskError> {
        self.read_settings(site).await?;
        self.inner
            .watch
            .relay(|| News::Settings { site: site.clone() });
        Ok(())
    }

    async fn read_settings(&self, site: &SiteId) -> Result<(), DeskError> {
        let settings = self.store().desk_settings(site).await?;
        let mut sites = self.inner.sites.lock().expect("desk lock");
        apply_settings(&mut sites, site, settings);
        Ok(())
    }

    /// A site's settings as the desk applies them.
    pub fn settings(&self, site: &SiteId) -> DeskSettings {
        self.with_site(site, |d| d.settings.clone())
    }

    /// Picks up the open conversations of every site after a start: those waiting for a person
    /// wait again from now.
    pub async fn resume(&self) -> Result<usize, DeskError> {
        self.resume_where(|_| true).await
    }

    /// Picks up the open conversations of the sites `here` answers yes for (in a cluster, the
    /// sites whose desk is on this node: after a start, or once another node's sites came
    /// here); how many it picked up. A conversation already running here is left as it is.
    pub async fn resume_where(&self, here: impl Fn(&SiteId) -> bool) -> Result<usize, DeskError> {
        let mut open = self.store().open_conversations().await?;
        open.retain(|c| here(&c.site));
        // The profiles of the people who hold conversations, for those not yet on the board.
        let mut profiles: HashMap<SiteId, Vec<AgentProfile>> = HashMap::new();
        for c in &open {
            if c.status == Status::Active && c.assignee.is_some() && !profiles.contains_key(&c.site)
            {
                let of_site = self.store().agent_profiles(&c.site).await?;
                profiles.insert(c.site.clone(), of_site);
            }
        }
        let now = self.now();
        let mut steps = Vec::new();
        let mut resumed = 0;
        {
            let mut sites = self.inner.sites.lock().expect("desk lock");
            for c in &open {
                let desk = sites
                    .entry(c.site.clone())
                    .or_insert_with(|| SiteDesk::new(DeskSettings::default()));
                // One already running here (opened, or touched, before this pick-up) stays as
                // it is; the others of its site are picked up all the same.
                if desk.open.contains_key(&c.id) {
                    continue;
                }
                resumed += 1;
                desk.open.insert(c.id.clone(), Live::of(c));
                match c.status {
                    Status::Queued | Status::Offered => {
                        for s in desk.board.request(
                            c.id.clone(),
                            c.department.clone(),
                            c.context.language.clone(),
                            c.priority,
                            now,
                        ) {
                            steps.push((c.site.clone(), s));
                        }
                    }
                    Status::Active => {
                        if let Some(u) = c.assignee {
                            if !desk.board.people().contains_key(&u) {
                                let p = profiles
                                    .get(&c.site)
                                    .and_then(|ps| ps.iter().find(|p| p.user == u))
                                    .cloned()
                                    .unwrap_or_default();
                                for s in desk.board.put_person(
                                    u,
                                    p.capacity.max(1),
                                    p.departments,
                                    p.languages,
                                    now,
                                ) {
                                    steps.push((c.site.clone(), s));
                                }
                            }
                            for s in desk.board.hold(&c.id, u, now) {
                                steps.push((c.site.clone(), s));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for (site, step) in steps {
            self.carry_out(&site, step).await;
        }
        Ok(resumed)
    }

    /// Lets go of every site `here` answers no for (its desk moved to another node): its
    /// board, its open conversations' clocks, its people's presence, its consoles (whose
    /// streams end, so that they reconnect to the new desk). Its settings, knowledge and
    /// responder stay: they are the same on every node.
    pub fn let_go_where(&self, here: impl Fn(&SiteId) -> bool) -> Vec<SiteId> {
        let gone: Vec<SiteId> = {
            let mut sites = self.inner.sites.lock().expect("desk lock");
            let mut gone = Vec::new();
            for (site, desk) in sites.iter_mut() {
                if !here(site) && (!desk.open.is_empty() || !desk.board.people().is_empty()) {
                    desk.open.clear();
                    desk.board = Board::new(
                        i64::from(desk.settings.accept_seconds) * 1000,
                        i64::from(desk.settings.wait_seconds) * 1000,
                    );
                    gone.push(site.clone());
                }
            }
            gone
        };
        {
            let mut presence = self.inner.presence.lock().expect("presence lock");
            presence.retain(|(site, _), _| here(site));
        }
        self.inner.watch.drop_consoles_where(|site| !here(site));
        gone
    }

    /// Hands everything this desk tells its watchers to `relay` as well (the bus to the other
    /// nodes' tabs and consoles).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        self.inner.watch.set_relay(relay);
    }

    /// Tells this node's tabs and consoles what another node's desk told (settings saved
    /// there are read again here).
    pub async fn hear(&self, news: News) {
        if let News::Settings { site } = &news {
            if let Err(e) = self.read_settings(site).await {
                tracing::warn!(%site, error = %e, "reading a site's desk settings again");
            }
            return;
        }
        self.inner.watch.hear(news);
    }

    /// News from the other nodes may have been missed: every tab here syncs again and every
    /// console reloads.
    pub fn resync(&self) {
        self.inner.watch.resync();
    }

    /// Runs the desk's clock until `shutdown`: offers that time out, waits that are missed,
    /// conversations closed for inactivity.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = every.tick() => self.tick().await,
                () = &mut shutdown => return,
            }
        }
    }

    /// A person's console is open (held for as long as it is).
    pub fn console_open(&self, agent: &people::AgentRef) -> ConsoleOpen {
        let key = (agent.site.clone(), agent.user);
        let mut presence = self.inner.presence.lock().expect("presence lock");
        let p = presence.entry(key.clone()).or_insert(Presence {
            name: agent.name.clone(),
            consoles: 0,
            since: None,
        });
        p.consoles += 1;
        p.since = None;
        ConsoleOpen {
            desk: self.clone(),
            key,
        }
    }

    /// One turn of the clock.
    pub async fn tick(&self) {
        let now = self.now();
        let gone: Vec<people::AgentRef> = {
            let mut presence = self.inner.presence.lock().expect("presence lock");
            let gone: Vec<_> = presence
                .iter()
                .filter(|(_, p)| {
                    p.since
                        .is_some_and(|t| now.as_millis() - t.as_millis() >= AWAY_AFTER_MS)
                })
                .map(|((site, user), p)| people::AgentRef {
                    site: site.clone(),
                    user: *user,
                    name: p.name.clone(),
                    supervisor: false,
                })
                .collect();
            for a in &gone {
                presence.remove(&(a.site.clone(), a.user));
            }
            gone
        };
        for agent in gone {
            if self.is_available(&agent)
                && let Err(e) = self.set_available(&agent, false).await
            {
                tracing::warn!(site = %agent.site, user = agent.user, error = %e, "marking a person away");
            }
        }
        let mut steps = Vec::new();
        let mut idle = Vec::new();
        {
            let mut sites = self.inner.sites.lock().expect("desk lock");
            for (site, desk) in sites.iter_mut() {
                for s in desk.board.tick(now) {
                    steps.push((site.clone(), s));
                }
                let limit = i64::from(desk.settings.inactivity_minutes.max(1)) * 60_000;
                for (id, live) in &desk.open {
                    if now.as_millis() - live.last_activity.as_millis() >= limit {
                        idle.push((site.clone(), id.clone()));
                    }
                }
            }
        }
        for (site, step) in steps {
            self.carry_out(&site, step).await;
        }
        for (site, id) in idle {
            if let Err(e) = self.close(&site, &id, Closer::Inactivity).await {
                tracing::warn!(%site, conversation = %id, error = %e, "closing an idle conversation");
            }
        }
    }

    fn with_site<T>(&self, site: &SiteId, f: impl FnOnce(&mut SiteDesk) -> T) -> T {
        let mut sites = self.inner.sites.lock().expect("desk lock");
        let desk = sites
            .entry(site.clone())
            .or_insert_with(|| SiteDesk::new(DeskSettings::default()));
        f(desk)
    }

    /// Appends a message and tells everyone watching, in that order.
    async fn append(
        &self,
        c: &Conversation,
        message: NewMessage,
    ) -> Result<(Message, bool), DeskError> {
        let appended = self
            .store()
            .append_message(&c.site, &c.id, &message)
            .await?;
        if !appended.duplicate {
            let at = appended.message.at;
            self.with_site(&c.site, |d| {
                if let Some(live) = d.open.get_mut(&c.id) {
                    live.last_activity = live.last_activity.max(at);
                }
            });
            self.inner.watch.publish(
                &c.site,
                &c.visitor,
                Update::Message {
                    conversation: c.id.clone(),
                    visitor: c.visitor.clone(),
                    message: appended.message.clone(),
                },
            );
        }
        Ok((appended.message, appended.duplicate))
    }

    /// Stores a checked file with its conversation; the attachment for its message. Its id
    /// comes from the conversation and the message's id, so a resend stores nothing new.
    async fn store_file(
        &self,
        c: &Conversation,
        client_id: &str,
        checked: &crate::files::Checked,
        bytes: &[u8],
        author: Author,
    ) -> Result<beckon_store::conversations::Attachment, DeskError> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}:{client_id}", c.id));
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let record = beckon_store::conversations::FileRecord {
            id: format!("f_{hex}"),
            conversation: c.id.clone(),
            name: checked.name.clone(),
            mime: checked.mime.to_owned(),
            size: bytes.len() as u64,
            author,
            at: self.now(),
        };
        self.store().put_file(&c.site, &record, bytes).await?;
        Ok(beckon_store::conversations::Attachment {
            id: record.id,
            name: record.name,
            mime: record.mime,
            size: record.size,
        })
    }

    /// A line from the desk itself.
    async fn notice(&self, c: &Conversation, text: String) -> Result<Message, DeskError> {
        let m = NewMessage {
            client_id: None,
            author: Author::System,
            author_id: None,
            author_name: None,
            text,
            attachment: None,
            at: self.now(),
        };
        Ok(self.append(c, m).await?.0)
    }

    /// Changes a conversation and tells everyone watching. A hand-off to people and a close
    /// are announced to the site's destinations, with the transcript, in the same write.
    async fn change(
        &self,
        site: &SiteId,
        id: &ConversationId,
        mut change: ConversationChange,
    ) -> Result<Conversation, DeskError> {
        let topic = if change.closed.is_some() {
            Some(Topic::ConversationClosed)
        } else if change.status == Some(Status::Queued) && matches!(change.handoff, Some(Some(_))) {
            Some(Topic::ConversationHandedOff)
        } else {
            None
        };
        if let Some(topic) = topic
            && let Some(mut after) = self.store().conversation(site, id).await?
        {
            let now = self.now();
            let transcript = self.store().messages(site, id, 0, HISTORY).await?;
            change.apply_to(&mut after, now);
            change
                .announce
                .push(payload::conversation(topic, &after, &transcript, now));
        }
        let c = self
            .store()
            .change_conversation(site, id, &change, self.now())
            .await?;
        self.with_site(site, |d| {
            if c.status.is_closed() {
                d.open.remove(id);
            } else {
                d.open.insert(id.clone(), Live::of(&c));
            }
        });
        self.inner.watch.publish(
            site,
            &c.visitor,
            Update::Changed {
                conversation: Box::new(c.clone()),
            },
        );
        Ok(c)
    }

    /// Closes a conversation: the board lets it go, the visitor is asked for a rating.
    pub(crate) async fn close(
        &self,
        site: &SiteId,
        id: &ConversationId,
        by: Closer,
    ) -> Result<Conversation, DeskError> {
        let now = self.now();
        let c = self.conversation(site, id).await?;
        if c.status.is_closed() {
            // Closed already (elsewhere, or a moment ago): nothing of it stays on this desk.
            let steps = self.with_site(site, |d| {
                d.open.remove(id);
                d.board.release(id, now)
            });
            for s in steps {
                self.carry_out(site, s).await;
            }
            return Ok(c);
        }
        let line = match by {
            Closer::Visitor => "You ended the chat.",
            Closer::Agent => "The chat was ended.",
            Closer::Inactivity => "The chat was closed after a while without messages.",
        };
        self.notice(&c, line.to_owned()).await?;
        let closed = self
            .change(
                site,
                id,
                ConversationChange {
                    closed: Some((now, by)),
                    ..ConversationChange::default()
                },
            )
            .await?;
        let steps = self.with_site(site, |d| d.board.release(id, now));
        for s in steps {
            self.carry_out(site, s).await;
        }
        self.inner.watch.publish_board(site);
        self.inner.watch.began_or_ended(&closed, false);
        Ok(closed)
    }

    async fn conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
    ) -> Result<Conversation, DeskError> {
        self.store()
            .conversation(site, id)
            .await?
            .ok_or(DeskError::NotFound)
    }

    /// Does what the board decided.
    async fn carry_out(&self, site: &SiteId, step: Step) {
        let done = match &step {
            // Each step applies only to the conversation as the board saw it: a person who
            // took it meanwhile (accepting from the queue, writing, a transfer) keeps it.
            Step::Offer(c, user) => {
                self.change(
                    site,
                    c,
                    ConversationChange {
                        status: Some(Status::Offered),
                        assignee: Some(Some(*user)),
                        expect: Some(Expect {
                            statuses: vec![Status::Queued, Status::Offered],
                            assignee: None,
                        }),
                        ..ConversationChange::default()
                    },
                )
                .await
            }
            Step::Withdraw(c, user) => {
                self.change(
                    site,
                    c,
                    ConversationChange {
                        status: Some(Status::Queued),
                        assignee: Some(None),
                        expect: Some(Expect {
                            statuses: vec![Status::Offered],
                            assignee: Some(Some(*user)),
                        }),
                        ..ConversationChange::default()
                    },
                )
                .await
            }
            Step::Missed(c) => self.missed(site, c).await,
        };
        if let Err(e) = done {
            // A conversation closed meanwhile refuses the change; nothing is lost.
            tracing::debug!(%site, ?step, error = %e, "a routing step found nothing to change");
        }
        self.inner.watch.publish_board(site);
    }

    /// Nobody took the conversation in time: the visitor is offered an e-mail follow-up.
    async fn missed(&self, site: &SiteId, id: &ConversationId) -> Result<Conversation, DeskError> {
        let c = self
            .change(
                site,
                id,
                ConversationChange {
                    status: Some(Status::Missed),
                    assignee: Some(None),
                    expect: Some(Expect {
                        statuses: vec![Status::Bot, Status::Queued, Status::Offered],
                        assignee: None,
                    }),
                    ..ConversationChange::default()
                },
            )
            .await?;
        self.notice(&c, FOLLOW_UP_OFFER.to_owned()).await?;
        Ok(c)
    }

    /// Subscribes to everything that happens to a visitor's conversations (one of their tabs).
    pub fn watch_visitor(&self, site: &SiteId, visitor: &VisitorId) -> VisitorWatch {
        self.inner.watch.visitor(site, visitor)
    }

    /// The greeting written for `key` (a rule and a context; see [`crate::greeting`]), if one
    /// is ready. Never waits: the first ask for a context starts writing it (inside the site's
    /// budget) and answers `None`, so the rule's own text is shown meanwhile.
    pub fn greeting(&self, site: &SiteId, key: String, ask: GreetingAsk) -> Option<String> {
        let cache_key = (site.clone(), key);
        {
            let mut cache = self.inner.greetings.lock().expect("greetings lock");
            match cache.get(&cache_key) {
                Some(Greeting::Written(text)) => return Some(text.clone()),
                Some(Greeting::Writing | Greeting::Refused) => return None,
                None => {}
            }
            if cache.len() >= MAX_GREETINGS {
                cache.clear();
            }
            cache.insert(cache_key.clone(), Greeting::Writing);
        }
        let now = self.now();
        let responder = self.with_site(site, |d| {
            let within = d.budget.is_none_or(|b| b.take(&mut d.spent, now));
            (d.responder.is_model() && within).then(|| d.responder.clone())
        });
        let Some(responder) = responder else {
            self.set_greeting(&cache_key, Greeting::Refused);
            return None;
        };
        let desk = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let written = responder.greet(&ask).await;
            let took = started.elapsed().as_millis() as u64;
            let (usage, outcome, greeting) = match written {
                Ok(reply) => match accept(&reply.text, &ask) {
                    Some(text) => (reply.usage, "ok".to_owned(), Greeting::Written(text)),
                    None => (
                        reply.usage,
                        "refused: out of the rule's limits".to_owned(),
                        Greeting::Refused,
                    ),
                },
                Err(e) => (
                    Usage {
                        calls: 1,
                        ..Usage::default()
                    },
                    format!("error: {e}"),
                    Greeting::Refused,
                ),
            };
            let at = desk.now();
            desk.with_site(&cache_key.0, |d| d.spent.settle(at, &usage));
            let call = ModelCall {
                conversation: None,
                at: now,
                model: responder.name(),
                purpose: "greeting".to_owned(),
                calls: usage.calls,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                latency_ms: took,
                outcome: outcome.chars().take(500).collect(),
            };
            if let Err(e) = desk.store().record_model_call(&cache_key.0, &call).await {
                tracing::warn!(error = %e, "recording a greeting's model call");
            }
            desk.set_greeting(&cache_key, greeting);
        });
        None
    }

    fn set_greeting(&self, key: &(SiteId, String), greeting: Greeting) {
        let mut cache = self.inner.greetings.lock().expect("greetings lock");
        cache.insert(key.clone(), greeting);
    }

    /// Visitors a person has just started a conversation with: the edge tells their open tabs
    /// to open the chat (a tab subscribes to its conversation only once it has one).
    pub fn watch_invites(&self) -> tokio::sync::broadcast::Receiver<(SiteId, VisitorId)> {
        self.inner.watch.invites()
    }

    /// Conversations as they begin and end, every one (the edge tells the engine, which fires
    /// nothing for a visitor while their conversation runs). Taken once: `None` after.
    pub fn take_lifecycle(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Lifecycle>> {
        self.inner.watch.take_lifecycle()
    }

    /// Subscribes to everything that happens at a site's desk (a console).
    pub fn watch_site(&self, site: &SiteId) -> tokio::sync::broadcast::Receiver<Update> {
        self.inner.watch.site(site)
    }
}

impl Live {
    fn of(c: &Conversation) -> Live {
        Live {
            last_activity: c.updated_at,
        }
    }
}

/// Puts a site's settings in force (its routing times with them); the site's desk.
fn apply_settings<'a>(
    sites: &'a mut HashMap<SiteId, SiteDesk>,
    site: &SiteId,
    settings: DeskSettings,
) -> &'a mut SiteDesk {
    let desk = sites
        .entry(site.clone())
        .or_insert_with(|| SiteDesk::new(settings.clone()));
    desk.board.set_times(
        i64::from(settings.accept_seconds) * 1000,
        i64::from(settings.wait_seconds) * 1000,
    );
    desk.settings = settings;
    desk
}

/// Checks a message's text: not empty, not too long, no control characters but line breaks
/// and tabs. Answers it trimmed.
pub fn check_text(text: &str) -> Result<String, DeskError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DeskError::Invalid("a message needs some text".to_owned()));
    }
    let n = t.chars().count();
    if n > MAX_MESSAGE_CHARS {
        return Err(DeskError::Invalid(format!(
            "a message holds at most {MAX_MESSAGE_CHARS} characters; this one has {n}"
        )));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(DeskError::Invalid(
            "a message may not hold control characters".to_owned(),
        ));
    }
    Ok(t.to_owned())
}

/// Checks an id a client gave a message (`[A-Za-z0-9._:-]{1,64}`).
pub fn check_client_id(id: &str) -> Result<String, DeskError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(DeskError::Invalid(
            "a message id is 1 to 64 characters of [A-Za-z0-9._:-]".to_owned(),
        ))
    }
}

/// What the visitor is told when nobody can take the chat: the wording they consent to by
/// leaving their address.
pub const FOLLOW_UP_OFFER: &str = "Sorry, nobody is free to answer right now. Leave your e-mail \
address and we will write back with everything said here.";

/// The lead of an address left in a chat: the conversation's context and its transcript.
pub(crate) fn chat_lead(
    c: &Conversation,
    prechat: &Prechat,
    transcript: &[Message],
    now: Timestamp,
) -> NewLead {
    let (rule, intervention) = match &c.origin {
        Origin::Intervention { rule, intervention } => {
            (Some(rule.clone()), Some(intervention.clone()))
        }
        _ => (None, None),
    };
    let question = transcript
        .iter()
        .find(|m| m.author == Author::Visitor)
        .map(|m| m.text.clone())
        .unwrap_or_default();
    let mut lead = NewLead {
        id: LeadId::random(),
        site: c.site.clone(),
        visitor: Some(c.visitor.clone()),
        email: prechat.email.clone(),
        name: prechat.name.clone(),
        question,
        consent: Consent {
            text: FOLLOW_UP_OFFER.to_owned(),
            at: now,
        },
        source: LeadSource::Chat,
        context: LeadContext {
            visit: c.context.clone(),
            rule,
            intervention,
            conversation: Some(c.id.clone()),
            transcript: transcript
                .iter()
                .map(|m| Line {
                    author: m.author,
                    text: m.text.clone(),
                    at: m.at,
                })
                .collect(),
        },
        at: now,
        announce: Vec::new(),
    };
    lead.announce = vec![payload::lead_created(&lead)];
    lead
}

/// The announcement of a conversation that just opened.
pub(crate) fn started(c: &Conversation) -> NewEvent {
    payload::conversation(Topic::ConversationStarted, c, &[], c.started_at)
}

fn new_id() -> ConversationId {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let s: String = (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    ConversationId::from_random(&s).expect("20 base-36 characters")
}
