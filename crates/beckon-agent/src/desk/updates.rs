//! Who hears what happens at the desk: each of a visitor's tabs, and each console of the site.
//!
//! A tab's channel is bounded; a tab that does not keep up loses its subscription (its channel
//! closes), and on reconnecting it asks for what it missed. A console's broadcast may lag; a
//! lagging console reloads its view.

use std::collections::HashMap;
use std::sync::Mutex;

use beckon_engine::{SiteId, VisitorId};
use beckon_store::conversations::{Author, Conversation, ConversationId, Message};
use tokio::sync::{broadcast, mpsc};

/// What a tab may have waiting before it is dropped.
const TAB_BUFFER: usize = 64;
/// What a console may fall behind by before it reloads.
const CONSOLE_BUFFER: usize = 256;

/// Something that happened at the desk.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A message was stored.
    Message {
        /// The conversation.
        conversation: ConversationId,
        /// Its visitor.
        visitor: VisitorId,
        /// The message.
        message: Message,
    },
    /// An answer being written (streamed from a model): the whole text so far.
    Draft {
        /// The conversation.
        conversation: ConversationId,
        /// Its visitor.
        visitor: VisitorId,
        /// The text so far.
        text: String,
    },
    /// Someone started or stopped typing.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Its visitor.
        visitor: VisitorId,
        /// Who types.
        author: Author,
        /// Whether they are typing now.
        on: bool,
    },
    /// Someone read up to a message.
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// Its visitor.
        visitor: VisitorId,
        /// Who read.
        author: Author,
        /// Up to which message.
        seq: u64,
    },
    /// A conversation's standing changed (status, assignee, closed, rated).
    Changed {
        /// The conversation as it now is.
        conversation: Box<Conversation>,
    },
    /// The site's people or queue changed (for consoles).
    Board,
}

impl Update {
    /// The visitor it concerns, when it concerns one.
    pub fn visitor(&self) -> Option<&VisitorId> {
        match self {
            Update::Message { visitor, .. }
            | Update::Draft { visitor, .. }
            | Update::Typing { visitor, .. }
            | Update::Read { visitor, .. } => Some(visitor),
            Update::Changed { conversation } => Some(&conversation.visitor),
            Update::Board => None,
        }
    }
}

/// A tab's subscription.
pub type VisitorWatch = mpsc::Receiver<Update>;

/// Each visitor's open tabs.
type Tabs = HashMap<(SiteId, VisitorId), Vec<mpsc::Sender<Update>>>;

pub(super) struct Watchers {
    tabs: Mutex<Tabs>,
    consoles: Mutex<HashMap<SiteId, broadcast::Sender<Update>>>,
    /// Visitors a person started a conversation with, for the edge to tell their tabs.
    invites: broadcast::Sender<(SiteId, VisitorId)>,
    /// Conversations that began (true) or ended (false), for the engine's guardrails.
    lifecycle: broadcast::Sender<Lifecycle>,
}

/// A conversation began or ended: while one runs, the engine fires nothing for its visitor.
#[derive(Clone, Debug, PartialEq)]
pub struct Lifecycle {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Whether it began (or ended).
    pub running: bool,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            tabs: Mutex::default(),
            consoles: Mutex::default(),
            invites: broadcast::channel(CONSOLE_BUFFER).0,
            lifecycle: broadcast::channel(CONSOLE_BUFFER).0,
        }
    }
}

impl Watchers {
    pub(super) fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> VisitorWatch {
        let (tx, rx) = mpsc::channel(TAB_BUFFER);
        let mut tabs = self.tabs.lock().expect("watch lock");
        let list = tabs.entry((site.clone(), visitor.clone())).or_default();
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }

    pub(super) fn site(&self, site: &SiteId) -> broadcast::Receiver<Update> {
        let mut consoles = self.consoles.lock().expect("watch lock");
        consoles
            .entry(site.clone())
            .or_insert_with(|| broadcast::channel(CONSOLE_BUFFER).0)
            .subscribe()
    }

    /// Tells a visitor's tabs and the site's consoles.
    pub(super) fn publish(&self, site: &SiteId, visitor: &VisitorId, update: Update) {
        {
            let mut tabs = self.tabs.lock().expect("watch lock");
            let key = (site.clone(), visitor.clone());
            if let Some(list) = tabs.get_mut(&key) {
                // A full or closed tab is dropped: it resyncs when it reconnects.
                list.retain(|t| t.try_send(update.clone()).is_ok());
                if list.is_empty() {
                    tabs.remove(&key);
                }
            }
        }
        self.to_consoles(site, update);
    }

    pub(super) fn invites(&self) -> broadcast::Receiver<(SiteId, VisitorId)> {
        self.invites.subscribe()
    }

    pub(super) fn invite(&self, site: &SiteId, visitor: &VisitorId) {
        let _ = self.invites.send((site.clone(), visitor.clone())); // no edge listening: no tab
    }

    pub(super) fn lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    pub(super) fn began_or_ended(&self, c: &Conversation, running: bool) {
        let _ = self.lifecycle.send(Lifecycle {
            site: c.site.clone(),
            visitor: c.visitor.clone(),
            conversation: c.id.clone(),
            running,
        });
    }

    pub(super) fn publish_board(&self, site: &SiteId) {
        self.to_consoles(site, Update::Board);
    }

    fn to_consoles(&self, site: &SiteId, update: Update) {
        let consoles = self.consoles.lock().expect("watch lock");
        if let Some(tx) = consoles.get(site) {
            let _ = tx.send(update); // no console open: nobody to tell
        }
    }
}
