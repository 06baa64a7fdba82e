//! The live state of one visit, held in memory by the engine shard that owns the session.
//!
//! A session is updated only by [`Session::apply`], from events, in order; replaying the same
//! events from the log rebuilds the same state. It is kept small (no per-event history, names
//! stored as hashes) so that hundreds of thousands of live sessions fit in a node's memory.

use crate::device::Device;
use crate::event::{AttrValue, CartUpdate, Event, PageView, Tracked};
use crate::hash::fnv1a64;
use crate::ids::{RuleId, VisitorId};
use crate::page::{PageType, PageTypes};
use crate::policy::Policy;
use crate::profile::{Profile, set_attr};
use crate::time::{Timestamp, duration_ms};

/// How many distinct names each per-session list keeps (hovered, clicked, compared, tracked).
pub const MAX_SESSION_NAMES: usize = 32;

/// Which arm of the holdout the visitor is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Sees interventions.
    Treated,
    /// Sees nothing; ghost exposures are logged where a rule would have fired.
    Holdout,
}

/// What the edge knows when a visit starts. Serializable because the log records it with the
/// batch that started the visit, so that the visit can be replayed exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionStart {
    /// Device, from the user agent.
    pub device: Device,
    /// Whether the edge judged the visitor a bot. Bots are kept in the state only so that the
    /// engine can refuse them again; they never trigger.
    pub bot: bool,
    /// Preferred language (BCP 47 primary tag, e.g. "en", "fr").
    pub language: Option<String>,
    /// The visitor's offset from UTC in minutes, for their local hour and weekday.
    pub utc_offset_minutes: i16,
}

/// The live state of one visit. Serializable so that the server can persist a snapshot with
/// every group commit: a restart in the middle of a visit loses nothing.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub(crate) visitor: VisitorId,
    pub(crate) arm: Arm,
    pub(crate) started_at: Timestamp,
    pub(crate) bot: bool,
    /// Whether anything in the visit has shown a person there ([`Event::shows_a_person`]);
    /// until then nothing is shown, and nothing counted as an exposure.
    #[serde(default)]
    pub(crate) interacted: bool,
    pub(crate) device: Device,
    pub(crate) language: Option<String>,
    pub(crate) utc_offset_minutes: i16,

    pub(crate) page: Page,
    pub(crate) utm: crate::event::Utm,
    pub(crate) pages: u32,
    pub(crate) page_types: PageTypes,

    /// Whether the tab is visible now, and since when.
    pub(crate) visible_since: Option<Timestamp>,
    /// Visible time on the site before the current visible stretch, in ms.
    pub(crate) site_active_ms: i64,
    /// Visible time on checkout pages before the current visible stretch, in ms.
    pub(crate) checkout_active_ms: i64,
    pub(crate) last_interaction: Timestamp,

    pub(crate) hovered: Vec<u64>,
    pub(crate) clicked: Vec<u64>,
    pub(crate) compared: Vec<u64>,
    pub(crate) tracked: Vec<u64>,

    pub(crate) cart: Option<Cart>,
    pub(crate) item_removed: bool,

    pub(crate) converted_at: Option<Timestamp>,
    pub(crate) chat_open: bool,
    pub(crate) conversation_active: bool,
    pub(crate) intervention_open: bool,
    pub(crate) fired: u32,
    /// Rules whose conditions hold, and since when (for delays), keyed by a hash of the rule id
    /// so that a rule set reload keeps them.
    pub(crate) holding: Vec<(u64, Timestamp)>,
}

/// The page being viewed.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Page {
    pub(crate) url: String,
    pub(crate) path: String,
    pub(crate) title: String,
    pub(crate) page_type: Option<PageType>,
    pub(crate) referrer: String,
    pub(crate) product: Option<String>,
    pub(crate) views: u32,
    /// Visible time on this page before the current visible stretch, in ms.
    pub(crate) active_ms: i64,
    pub(crate) scroll: u8,
    pub(crate) exit_intent: bool,
}

/// The cart.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Cart {
    pub(crate) value: f64,
    pub(crate) currency: String,
    pub(crate) items: u32,
    pub(crate) changed_at: Timestamp,
}

impl Session {
    /// Starts a visit: counts it in the profile and fixes the holdout arm. The arm is computed
    /// by the engine (it knows the site and the salt) and passed in.
    pub(crate) fn start(
        visitor: VisitorId,
        arm: Arm,
        start: SessionStart,
        profile: &mut Profile,
        now: Timestamp,
    ) -> Session {
        profile.visits = profile.visits.saturating_add(1);
        profile.first_seen.get_or_insert(now);
        profile.last_seen = profile.last_active;
        profile.last_active = Some(now);
        Session {
            visitor,
            arm,
            started_at: now,
            bot: start.bot,
            interacted: false,
            device: start.device,
            language: start.language,
            utc_offset_minutes: start.utc_offset_minutes,
            page: Page::default(),
            utm: Default::default(),
            pages: 0,
            page_types: PageTypes::EMPTY,
            // A page that loads the widget is visible until told otherwise.
            visible_since: Some(now),
            site_active_ms: 0,
            checkout_active_ms: 0,
            last_interaction: now,
            hovered: Vec::new(),
            clicked: Vec::new(),
            compared: Vec::new(),
            tracked: Vec::new(),
            cart: None,
            item_removed: false,
            converted_at: None,
            chat_open: false,
            conversation_active: false,
            intervention_open: false,
            fired: 0,
            holding: Vec::new(),
        }
    }

    /// The visitor this session belongs to.
    pub fn visitor(&self) -> &VisitorId {
        &self.visitor
    }

    /// The visitor's holdout arm.
    pub fn arm(&self) -> Arm {
        self.arm
    }

    /// When the visit started.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Whether the edge judged the visitor a bot.
    pub fn is_bot(&self) -> bool {
        self.bot
    }

    /// Judges the visitor a bot for the rest of the visit: what the session did (its event
    /// rates, its timing) showed it, after the edge let it in. Nothing fires from now on.
    pub fn mark_bot(&mut self) {
        self.bot = true;
    }

    /// Whether anything in the visit has shown a person there.
    pub fn interacted(&self) -> bool {
        self.interacted
    }

    /// Whether the visitor converted during this visit.
    pub fn converted(&self) -> bool {
        self.converted_at.is_some()
    }

    /// Interventions fired (shown or ghost) in this visit.
    pub fn fired(&self) -> u32 {
        self.fired
    }

    /// The current page type.
    pub fn page_type(&self) -> Option<PageType> {
        self.page.page_type
    }

    /// The current page's path.
    pub fn page_path(&self) -> &str {
        &self.page.path
    }

    /// Updates the state with one event at `now`.
    pub(crate) fn apply(
        &mut self,
        event: &Event,
        profile: &mut Profile,
        policy: &Policy,
        now: Timestamp,
    ) {
        if event.shows_a_person() {
            self.interacted = true;
        }
        if event.is_interaction() {
            self.last_interaction = now;
            self.page.exit_intent = false;
            profile.last_active = Some(now);
        }
        match event {
            Event::PageView(view) => self.enter_page(view, profile, now),
            Event::Visibility { visible } => self.set_visible(*visible, now),
            Event::Scroll { depth } => self.page.scroll = self.page.scroll.max((*depth).min(100)),
            Event::ExitIntent => self.page.exit_intent = true,
            Event::Activity | Event::Idle | Event::Tick => {}
            Event::Hover(t) => self.note_tracked(t, false),
            Event::Click(t) => self.note_tracked(t, true),
            Event::Cart(cart) => self.update_cart(cart, now),
            Event::Conversion { .. } => {
                self.bank_active_time(now);
                self.converted_at = Some(now);
                profile.conversions = profile.conversions.saturating_add(1);
                profile.last_conversion = Some(now);
            }
            Event::Identify { traits } => {
                for (k, v) in traits {
                    set_attr(&mut profile.traits, k, v);
                }
            }
            Event::Track { name, .. } => push_name(&mut self.tracked, fnv1a64(name)),
            Event::ChatOpened => self.chat_open = true,
            Event::ChatClosed => self.chat_open = false,
            Event::Shown { .. } => {
                profile.interventions_seen = profile.interventions_seen.saturating_add(1);
            }
            Event::Dismissed { .. } => {
                self.intervention_open = false;
                profile.record_dismissal(
                    now,
                    policy.dismissals_before_silence,
                    duration_ms(policy.silence),
                );
            }
            // Engaging keeps the intervention on screen (an applied coupon, a chat opening), so
            // nothing new replaces it until the visitor moves on or closes it.
            Event::Engaged { .. } => {}
            Event::ConversationStarted => {
                self.conversation_active = true;
                self.intervention_open = false;
                profile.conversations = profile.conversations.saturating_add(1);
            }
            Event::ConversationEnded => self.conversation_active = false,
        }
    }

    /// Records that `rule` fired (shown or ghost) at `now`.
    pub(crate) fn record_fire(
        &mut self,
        rule: &RuleId,
        key: u64,
        profile: &mut Profile,
        now: Timestamp,
    ) {
        self.fired = self.fired.saturating_add(1);
        // A ghost keeps the slot too, so that the held-out arm meets the next trigger at the
        // same cadence as the treated arm.
        self.intervention_open = true;
        self.holding.retain(|(k, _)| *k != key);
        profile.record_fire(rule, now);
    }

    fn enter_page(&mut self, view: &PageView, profile: &mut Profile, now: Timestamp) {
        self.bank_active_time(now);
        let path_key = fnv1a64(&view.path);
        let page_type = view.page_type.unwrap_or(PageType::Other);
        self.page = Page {
            url: view.url.clone(),
            path: view.path.clone(),
            title: view.title.clone(),
            page_type: Some(page_type),
            referrer: view.referrer.clone(),
            product: view.product.clone(),
            views: profile.count_view(path_key),
            active_ms: 0,
            scroll: 0,
            exit_intent: false,
        };
        if self.utm.is_empty() && !view.utm.is_empty() {
            self.utm = view.utm.clone();
        }
        if let Some(product) = &view.product {
            push_name(&mut self.compared, fnv1a64(product));
        }
        self.pages = self.pages.saturating_add(1);
        self.page_types.insert(page_type);
        // Navigating away closes whatever was on screen, for both arms alike, and the chat
        // with it unless a conversation runs (the widget opens no chat on a new page, so a
        // chat left "open" would silence every rule for the rest of the visit).
        self.intervention_open = false;
        if !self.conversation_active {
            self.chat_open = false;
        }
        // A page view is reported when a page is shown, so the new page is visible (the
        // widget reports `visibility: false` right after if it loaded in a background tab).
        // The previous page's `pagehide` may have left the session hidden.
        self.visible_since = Some(now);
    }

    fn set_visible(&mut self, visible: bool, now: Timestamp) {
        match (visible, self.visible_since) {
            (true, None) => self.visible_since = Some(now),
            (false, Some(_)) => {
                self.bank_active_time(now);
                self.visible_since = None;
            }
            _ => {}
        }
    }

    /// Moves the current visible stretch into the banked totals, so that the totals stay
    /// correct when the page, the visibility or the checkout state changes.
    fn bank_active_time(&mut self, now: Timestamp) {
        if let Some(since) = self.visible_since {
            let ms = now.ms_since(since);
            self.page.active_ms += ms;
            self.site_active_ms += ms;
            if self.on_unfinished_checkout() {
                self.checkout_active_ms += ms;
            }
            self.visible_since = Some(now);
        }
    }

    fn note_tracked(&mut self, t: &Tracked, click: bool) {
        let list = if click {
            &mut self.clicked
        } else {
            &mut self.hovered
        };
        push_name(list, fnv1a64(&t.element));
        if let Some(item) = &t.item {
            push_name(&mut self.compared, fnv1a64(item));
        }
    }

    fn update_cart(&mut self, cart: &CartUpdate, now: Timestamp) {
        if let Some(old) = &self.cart {
            if cart.items < old.items {
                self.item_removed = true;
            }
        }
        self.cart = Some(Cart {
            value: cart.value,
            currency: cart.currency.clone(),
            items: cart.items,
            changed_at: now,
        });
    }

    pub(crate) fn on_unfinished_checkout(&self) -> bool {
        self.page.page_type == Some(PageType::Checkout) && self.converted_at.is_none()
    }

    /// Visible ms on the current page at `now`.
    pub(crate) fn page_active_ms(&self, now: Timestamp) -> i64 {
        self.page.active_ms + self.visible_stretch(now)
    }

    /// Visible ms on the site this session at `now`.
    pub(crate) fn site_active_ms(&self, now: Timestamp) -> i64 {
        self.site_active_ms + self.visible_stretch(now)
    }

    /// Visible ms on checkout without an order at `now`.
    pub(crate) fn checkout_active_ms(&self, now: Timestamp) -> i64 {
        let running = if self.on_unfinished_checkout() {
            self.visible_stretch(now)
        } else {
            0
        };
        self.checkout_active_ms + running
    }

    pub(crate) fn visible_stretch(&self, now: Timestamp) -> i64 {
        self.visible_since.map_or(0, |since| now.ms_since(since))
    }

    pub(crate) fn cart_items(&self) -> u32 {
        self.cart.as_ref().map_or(0, |c| c.items)
    }

    /// Since when the conditions of the rule keyed `key` hold, recording `now` if they just
    /// started to.
    pub(crate) fn holding_since(&mut self, key: u64, now: Timestamp) -> Timestamp {
        match self.holding.iter().find(|(k, _)| *k == key) {
            Some((_, since)) => *since,
            None => {
                self.holding.push((key, now));
                now
            }
        }
    }

    /// Forgets that the rule keyed `key` holds.
    pub(crate) fn stop_holding(&mut self, key: u64) {
        if let Some(i) = self.holding.iter().position(|(k, _)| *k == key) {
            self.holding.swap_remove(i);
        }
    }

    /// Heap bytes held by this session beyond its inline size, for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        let strings = [
            &self.page.url,
            &self.page.path,
            &self.page.title,
            &self.page.referrer,
            &self.device.browser,
            &self.device.os,
        ];
        let opt_strings = [
            &self.page.product,
            &self.language,
            &self.utm.source,
            &self.utm.medium,
            &self.utm.campaign,
        ];
        strings.iter().map(|s| s.capacity()).sum::<usize>()
            + opt_strings
                .iter()
                .map(|s| s.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
            + self.cart.as_ref().map_or(0, |c| c.currency.capacity())
            + 8 * (self.hovered.capacity()
                + self.clicked.capacity()
                + self.compared.capacity()
                + self.tracked.capacity())
            + std::mem::size_of::<(u64, Timestamp)>() * self.holding.capacity()
            + self.visitor.as_str().len()
    }
}

/// Adds a hashed name to a bounded set.
fn push_name(list: &mut Vec<u64>, key: u64) {
    if list.len() < MAX_SESSION_NAMES && !list.contains(&key) {
        list.push(key);
    }
}

/// The custom event's properties, when the event is a `track`.
pub(crate) fn event_props(event: &Event) -> &[(String, AttrValue)] {
    match event {
        Event::Track { props, .. } => props,
        _ => &[],
    }
}

impl Session {
    /// The values message templates may use (`page`, `cart`, `visitor`, `device`), named as in
    /// the rule language.
    pub fn template_context(&self, profile: &Profile) -> minijinja::Value {
        use std::collections::BTreeMap;
        let traits: BTreeMap<&str, minijinja::Value> = profile
            .traits
            .iter()
            .map(|(k, v)| (k.as_str(), attr_value(v)))
            .collect();
        minijinja::context! {
            page => minijinja::context! {
                url => self.page.url,
                path => self.page.path,
                title => self.page.title,
                type => self.page.page_type.map(PageType::as_str),
                product => self.page.product,
            },
            cart => minijinja::context! {
                value => self.cart.as_ref().map(|c| c.value),
                items => self.cart_items(),
                currency => self.cart.as_ref().map(|c| c.currency.as_str()),
            },
            visitor => minijinja::context! {
                visits => profile.visits,
                returning => profile.visits > 1,
                language => self.language,
                traits => traits,
            },
            device => minijinja::context! {
                type => self.device.kind.as_str(),
                browser => self.device.browser,
                os => self.device.os,
            },
        }
    }
}

fn attr_value(v: &AttrValue) -> minijinja::Value {
    match v {
        AttrValue::Bool(b) => (*b).into(),
        AttrValue::Num(n) => (*n).into(),
        AttrValue::Str(s) => s.as_str().into(),
    }
}
