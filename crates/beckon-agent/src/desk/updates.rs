//! Who hears what happens at the desk: each of a visitor's tabs, and each console of the site.
//!
//! A tab's channel is bounded; a tab that does not keep up loses its subscription (its channel
//! closes), and on reconnecting it asks for what it missed. A console's broadcast may lag; a
//! lagging console reloads its view.
//!
//! In a cluster the tabs and consoles of a site may be on any node, while its desk is on one:
//! everything told here is also handed to the [`Relay`] (the bus between nodes), and what
//! another node's desk told arrives through [`Watchers::hear`], for this node's tabs and
//! consoles only. News is never the only copy: every update is of something stored, and a tab
//! or console that may have missed some ([`Watchers::resync`]) reads the store again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use beckon_engine::{SiteId, VisitorId};
use beckon_store::conversations::{Author, Conversation, ConversationId, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

/// What a tab may have waiting before it is dropped.
const TAB_BUFFER: usize = 64;
/// What a console may fall behind by before it reloads.
const CONSOLE_BUFFER: usize = 256;

/// Something that happened at the desk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

/// What the desk told, as it travels to the other nodes' tabs and consoles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "news", rename_all = "snake_case")]
pub enum News {
    /// An update, for the visitor's tabs (when it concerns one) and the site's consoles.
    Update {
        /// The site.
        site: SiteId,
        /// The visitor whose tabs hear it.
        visitor: Option<VisitorId>,
        /// What happened (boxed: it is most of the news's size).
        update: Box<Update>,
    },
    /// The site's desk settings were saved: every node reads them again.
    Settings {
        /// The site.
        site: SiteId,
    },
    /// A person started a conversation with the visitor: their tabs open the chat.
    Invite {
        /// The site.
        site: SiteId,
        /// The visitor.
        visitor: VisitorId,
    },
}

/// Where the desk's news goes beyond this node: the bus between nodes. Never waits.
pub trait Relay: Send + Sync {
    /// Hands `news` on.
    fn relay(&self, news: &News);
}

/// Each visitor's open tabs, each with its id. Updates travel as shared pointers, so a tab's
/// channel costs a few hundred bytes whatever an update holds.
type Tabs = HashMap<(SiteId, VisitorId), Vec<(u64, mpsc::Sender<Arc<Update>>)>>;

/// A tab's subscription; dropping it (the socket closed, the poll answered) takes it off the
/// visitor's list at once.
pub struct VisitorWatch {
    rx: mpsc::Receiver<Arc<Update>>,
    key: (SiteId, VisitorId),
    id: u64,
    tabs: Weak<Mutex<Tabs>>,
}

impl VisitorWatch {
    /// The next update; `None` once the desk dropped this tab (it fell behind).
    pub async fn recv(&mut self) -> Option<Update> {
        self.rx.recv().await.map(Arc::unwrap_or_clone)
    }
}

impl Drop for VisitorWatch {
    fn drop(&mut self) {
        let Some(tabs) = self.tabs.upgrade() else {
            return;
        };
        let mut tabs = tabs.lock().expect("watch lock");
        if let Some(list) = tabs.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                tabs.remove(&self.key);
            }
        }
    }
}

pub(super) struct Watchers {
    tabs: Arc<Mutex<Tabs>>,
    next_tab: AtomicU64,
    consoles: Mutex<HashMap<SiteId, broadcast::Sender<Update>>>,
    /// Visitors a person started a conversation with, for the edge to tell their tabs.
    invites: broadcast::Sender<(SiteId, VisitorId)>,
    /// Conversations that began or ended, for the engine's guardrails: a channel the edge
    /// takes once (none taken: nobody to tell). Unbounded, so that no start or end is ever
    /// dropped; each is a few dozen bytes, one per conversation opened or closed.
    lifecycle: Mutex<Option<mpsc::UnboundedSender<Lifecycle>>>,
    /// Where news goes beyond this node (none: it runs alone).
    relay: std::sync::RwLock<Option<Arc<dyn Relay>>>,
    /// When each answer being written was last relayed: a draft goes to the other nodes at
    /// most every [`DRAFT_RELAY_EVERY`] (each holds the whole text so far), its message always.
    drafts_relayed: Mutex<HashMap<ConversationId, std::time::Instant>>,
}

/// How often an answer being written is relayed to the other nodes' tabs.
const DRAFT_RELAY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// The most answers being written whose last relay is remembered; past it, all are forgotten.
const MAX_DRAFTS: usize = 10_000;

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
            tabs: Arc::default(),
            next_tab: AtomicU64::new(0),
            consoles: Mutex::default(),
            invites: broadcast::channel(CONSOLE_BUFFER).0,
            lifecycle: Mutex::new(None),
            relay: std::sync::RwLock::new(None),
            drafts_relayed: Mutex::default(),
        }
    }
}

impl Watchers {
    pub(super) fn visitor(&self, site: &SiteId, visitor: &VisitorId) -> VisitorWatch {
        let (tx, rx) = mpsc::channel(TAB_BUFFER);
        let key = (site.clone(), visitor.clone());
        let id = self.next_tab.fetch_add(1, Ordering::Relaxed);
        let mut tabs = self.tabs.lock().expect("watch lock");
        tabs.entry(key.clone()).or_default().push((id, tx));
        VisitorWatch {
            rx,
            key,
            id,
            tabs: Arc::downgrade(&self.tabs),
        }
    }

    /// How many visitors have a tab watching (for tests of the bound).
    #[cfg(test)]
    pub(super) fn watched(&self) -> usize {
        self.tabs.lock().expect("watch lock").len()
    }

    pub(super) fn site(&self, site: &SiteId) -> broadcast::Receiver<Update> {
        let mut consoles = self.consoles.lock().expect("watch lock");
        consoles
            .entry(site.clone())
            .or_insert_with(|| broadcast::channel(CONSOLE_BUFFER).0)
            .subscribe()
    }

    /// Hands this node's news to `relay` too, from now on.
    pub(super) fn set_relay(&self, relay: Arc<dyn Relay>) {
        *self.relay.write().expect("relay lock") = Some(relay);
    }

    pub(super) fn relay(&self, news: impl FnOnce() -> News) {
        if let Some(relay) = self.relay.read().expect("relay lock").as_ref() {
            relay.relay(&news());
        }
    }

    /// Tells this node's tabs and consoles what another node's desk told.
    pub(super) fn hear(&self, news: News) {
        match news {
            News::Update {
                site,
                visitor: Some(visitor),
                update,
            } => self.to_tabs(&site, &visitor, *update),
            News::Update {
                site,
                visitor: None,
                update,
            } => self.to_consoles(&site, *update),
            News::Invite { site, visitor } => {
                let _ = self.invites.send((site, visitor)); // no edge listening: no tab
            }
            News::Settings { .. } => {} // the desk reads them
        }
    }

    /// News may have been missed: every tab is dropped (it syncs again, from the store) and
    /// every console is told to reload the board.
    pub(super) fn resync(&self) {
        self.tabs.lock().expect("watch lock").clear();
        let consoles = self.consoles.lock().expect("watch lock");
        for tx in consoles.values() {
            let _ = tx.send(Update::Board);
        }
    }

    /// Drops the consoles of the sites `gone` answers yes for (their desk moved to another
    /// node): their streams end, and they reconnect, to the site's new desk.
    pub(super) fn drop_consoles_where(&self, gone: impl Fn(&SiteId) -> bool) {
        self.consoles
            .lock()
            .expect("watch lock")
            .retain(|site, _| !gone(site));
    }

    /// Tells a visitor's tabs and the site's consoles, here and on the other nodes.
    pub(super) fn publish(&self, site: &SiteId, visitor: &VisitorId, update: Update) {
        if self.relayed_lately(&update) {
            self.to_tabs(site, visitor, update);
            return;
        }
        self.relay(|| News::Update {
            site: site.clone(),
            visitor: Some(visitor.clone()),
            update: Box::new(update.clone()),
        });
        self.to_tabs(site, visitor, update);
    }

    /// Whether `update` is a draft of an answer whose last draft was relayed too lately to
    /// relay this one (a message ends the answer's drafts).
    fn relayed_lately(&self, update: &Update) -> bool {
        let mut drafts = self.drafts_relayed.lock().expect("watch lock");
        match update {
            Update::Draft { conversation, .. } => {
                let now = std::time::Instant::now();
                if drafts
                    .get(conversation)
                    .is_some_and(|at| now.duration_since(*at) < DRAFT_RELAY_EVERY)
                {
                    return true;
                }
                if drafts.len() >= MAX_DRAFTS {
                    drafts.clear();
                }
                drafts.insert(conversation.clone(), now);
                false
            }
            Update::Message { conversation, .. } => {
                drafts.remove(conversation);
                false
            }
            _ => false,
        }
    }

    fn to_tabs(&self, site: &SiteId, visitor: &VisitorId, update: Update) {
        {
            let mut tabs = self.tabs.lock().expect("watch lock");
            let key = (site.clone(), visitor.clone());
            if let Some(list) = tabs.get_mut(&key) {
                // A full or closed tab is dropped: it resyncs when it reconnects.
                let shared = Arc::new(update.clone());
                list.retain(|(_, t)| t.try_send(shared.clone()).is_ok());
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
        self.relay(|| News::Invite {
            site: site.clone(),
            visitor: visitor.clone(),
        });
        let _ = self.invites.send((site.clone(), visitor.clone())); // no edge listening: no tab
    }

    pub(super) fn take_lifecycle(&self) -> Option<mpsc::UnboundedReceiver<Lifecycle>> {
        let mut slot = self.lifecycle.lock().expect("watch lock");
        if slot.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *slot = Some(tx);
        Some(rx)
    }

    pub(super) fn began_or_ended(&self, c: &Conversation, running: bool) {
        let slot = self.lifecycle.lock().expect("watch lock");
        if let Some(tx) = slot.as_ref() {
            let _ = tx.send(Lifecycle {
                site: c.site.clone(),
                visitor: c.visitor.clone(),
                conversation: c.id.clone(),
                running,
            });
        }
    }

    pub(super) fn publish_board(&self, site: &SiteId) {
        self.relay(|| News::Update {
            site: site.clone(),
            visitor: None,
            update: Box::new(Update::Board),
        });
        self.to_consoles(site, Update::Board);
    }

    fn to_consoles(&self, site: &SiteId, update: Update) {
        let consoles = self.consoles.lock().expect("watch lock");
        if let Some(tx) = consoles.get(site) {
            let _ = tx.send(update); // no console open: nobody to tell
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a relay was handed.
    #[derive(Default)]
    struct Heard(Mutex<Vec<News>>);

    impl Relay for Heard {
        fn relay(&self, news: &News) {
            self.0.lock().unwrap().push(news.clone());
        }
    }

    #[test]
    fn drafts_are_relayed_sparingly_and_the_message_always() {
        let w = Watchers::default();
        let heard = Arc::new(Heard::default());
        w.set_relay(heard.clone());
        let site = SiteId::parse("s").unwrap();
        let v = VisitorId::parse("v_1").unwrap();
        let mut tab = w.visitor(&site, &v);
        let conversation = ConversationId::from_random("aaaaaaaaaaaaaaaaaaaa").unwrap();
        for n in 0..50 {
            let draft = Update::Draft {
                conversation: conversation.clone(),
                visitor: v.clone(),
                text: "x".repeat(n),
            };
            w.publish(&site, &v, draft);
        }
        let relayed = heard.0.lock().unwrap().len();
        assert!(
            (1..50).contains(&relayed),
            "{relayed} of 50 drafts written at once relayed"
        );
        let mut local = 0;
        while let Ok(u) = tab.rx.try_recv() {
            assert!(matches!(*u, Update::Draft { .. }));
            local += 1;
        }
        assert_eq!(local, 50, "this node's tabs hear every draft");
        let message = Message {
            seq: 1,
            client_id: None,
            author: Author::Ai,
            author_id: None,
            author_name: None,
            text: "done".to_owned(),
            attachment: None,
            at: beckon_engine::Timestamp::from_millis(0),
        };
        w.publish(
            &site,
            &v,
            Update::Message {
                conversation: conversation.clone(),
                visitor: v.clone(),
                message,
            },
        );
        let last = heard.0.lock().unwrap().last().cloned().unwrap();
        assert!(
            matches!(last, News::Update { ref update, .. } if matches!(**update, Update::Message { .. })),
            "{last:?}"
        );
    }

    #[test]
    fn a_dropped_tab_leaves_nothing_behind() {
        let w = Watchers::default();
        let site = SiteId::parse("s").unwrap();
        for n in 0..1000 {
            let v = VisitorId::parse(&format!("v_{n}")).unwrap();
            let a = w.visitor(&site, &v);
            let b = w.visitor(&site, &v);
            drop(a);
            assert_eq!(w.watched(), 1, "the visitor's other tab still watches");
            drop(b);
        }
        assert_eq!(w.watched(), 0, "every closed tab was taken off");
    }
}
