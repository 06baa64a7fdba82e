//! The variables rules read, tracked from the events the way the engine's session tracks them,
//! so that json-rules-engine can be handed the same values Beckon decides on.
//!
//! The engine keeps its session state private (it is free to store names as hashes, bank time
//! in pieces, …) and has no public way to read a variable's value. Rather than widen its API
//! for a benchmark, this module replays the events into a small mirror of the state that each
//! supported variable depends on. It mirrors `Session::apply` and `rules::eval::value` of
//! beckon-engine; the comparison script checks the mirror, event by event, against the
//! engine's own verdicts (`Engine::explain`), so a drift shows up as a disagreement there.

use beckon_engine::{Event, PageType, Timestamp, Tracked};
use serde_json::Value;

use crate::workload::Visitor;

/// The engine keeps at most this many distinct names per list (`MAX_SESSION_NAMES`).
const MAX_NAMES: usize = beckon_engine::session::MAX_SESSION_NAMES;

/// A variable the comparison supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fact {
    /// `page.type`
    PageType,
    /// `page.path`
    PagePath,
    /// `cart.value`
    CartValue,
    /// `cart.items`
    CartItems,
    /// `time.on_page`
    TimeOnPage,
    /// `time.on_site`
    TimeOnSite,
    /// `time.idle`
    TimeIdle,
    /// `behaviour.scroll`
    Scroll,
    /// `behaviour.exit_intent`
    ExitIntent,
    /// `behaviour.hovered`
    Hovered,
    /// `behaviour.compared`
    Compared,
    /// `device.type`
    DeviceType,
    /// `visitor.visits`
    Visits,
    /// `visitor.returning`
    Returning,
}

impl Fact {
    /// Every supported variable.
    pub const ALL: [Fact; 14] = [
        Fact::PageType,
        Fact::PagePath,
        Fact::CartValue,
        Fact::CartItems,
        Fact::TimeOnPage,
        Fact::TimeOnSite,
        Fact::TimeIdle,
        Fact::Scroll,
        Fact::ExitIntent,
        Fact::Hovered,
        Fact::Compared,
        Fact::DeviceType,
        Fact::Visits,
        Fact::Returning,
    ];

    /// The variable's name in rules, which is also the fact's name for json-rules-engine.
    pub fn name(self) -> &'static str {
        match self {
            Fact::PageType => "page.type",
            Fact::PagePath => "page.path",
            Fact::CartValue => "cart.value",
            Fact::CartItems => "cart.items",
            Fact::TimeOnPage => "time.on_page",
            Fact::TimeOnSite => "time.on_site",
            Fact::TimeIdle => "time.idle",
            Fact::Scroll => "behaviour.scroll",
            Fact::ExitIntent => "behaviour.exit_intent",
            Fact::Hovered => "behaviour.hovered",
            Fact::Compared => "behaviour.compared",
            Fact::DeviceType => "device.type",
            Fact::Visits => "visitor.visits",
            Fact::Returning => "visitor.returning",
        }
    }

    /// The supported variable called `name`.
    pub fn parse(name: &str) -> Option<Fact> {
        Fact::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether Beckon can see no value at all (`null` in the snapshot): the cart's value before
    /// there is a cart, the page before the first page view.
    pub fn can_be_missing(self) -> bool {
        matches!(self, Fact::CartValue | Fact::PageType | Fact::PagePath)
    }

    /// Whether the value is a list of names (the only kind `contains` applies to in
    /// json-rules-engine).
    pub fn is_list(self) -> bool {
        self == Fact::Hovered
    }
}

/// The mirror of one session: exactly the state the supported variables depend on.
#[derive(Clone, Debug)]
pub struct SessionFacts {
    device: &'static str,
    visits: u32,
    page_type: Option<PageType>,
    path: String,
    /// Whether the tab is visible, and since when (ms).
    visible_since: Option<i64>,
    page_active_ms: i64,
    site_active_ms: i64,
    last_interaction: i64,
    scroll: u8,
    exit_intent: bool,
    hovered: Vec<String>,
    compared: Vec<String>,
    cart: Option<(f64, u32)>,
}

impl SessionFacts {
    /// The state right after `Engine::start_session` for this visitor.
    pub fn start(visitor: &Visitor) -> SessionFacts {
        let t = visitor.started_at.as_millis();
        SessionFacts {
            device: visitor.start.device.kind.as_str(),
            visits: visitor.profile.visits.saturating_add(1),
            page_type: None,
            path: String::new(),
            visible_since: Some(t),
            page_active_ms: 0,
            site_active_ms: 0,
            last_interaction: t,
            scroll: 0,
            exit_intent: false,
            hovered: Vec::new(),
            compared: Vec::new(),
            cart: None,
        }
    }

    /// Applies one event at `now`, as `Session::apply` does.
    pub fn apply(&mut self, event: &Event, now: Timestamp) {
        let now = now.as_millis();
        if event.is_interaction() {
            self.last_interaction = now;
            self.exit_intent = false;
        }
        match event {
            Event::PageView(view) => {
                self.bank(now);
                self.page_type = Some(view.page_type.unwrap_or(PageType::Other));
                self.path.clone_from(&view.path);
                self.page_active_ms = 0;
                self.scroll = 0;
                self.exit_intent = false;
                if let Some(product) = &view.product {
                    push_name(&mut self.compared, product);
                }
                // A page view means the page is shown, whatever the previous page left.
                self.visible_since = Some(now);
            }
            Event::Visibility { visible } => match (visible, self.visible_since) {
                (true, None) => self.visible_since = Some(now),
                (false, Some(_)) => {
                    self.bank(now);
                    self.visible_since = None;
                }
                _ => {}
            },
            Event::Scroll { depth } => self.scroll = self.scroll.max((*depth).min(100)),
            Event::ExitIntent => self.exit_intent = true,
            Event::Hover(t) => self.note(t, true),
            Event::Click(t) => self.note(t, false),
            Event::Cart(c) => self.cart = Some((c.value, c.items)),
            Event::Conversion { .. } => self.bank(now),
            _ => {}
        }
    }

    /// The value Beckon sees for `fact` at `now`, as JSON; `null` where Beckon sees none.
    pub fn value(&self, fact: Fact, now: Timestamp) -> Value {
        let now = now.as_millis();
        let stretch = self.visible_since.map_or(0, |since| (now - since).max(0));
        let secs = |ms: i64| Value::from(ms as f64 / 1000.0);
        match fact {
            Fact::PageType => self.page_type.map_or(Value::Null, |t| t.as_str().into()),
            Fact::PagePath if self.path.is_empty() => Value::Null,
            Fact::PagePath => self.path.as_str().into(),
            Fact::CartValue => self.cart.map_or(Value::Null, |(v, _)| v.into()),
            Fact::CartItems => self.cart.map_or(0, |(_, n)| n).into(),
            Fact::TimeOnPage => secs(self.page_active_ms + stretch),
            Fact::TimeOnSite => secs(self.site_active_ms + stretch),
            Fact::TimeIdle => secs((now - self.last_interaction).max(0)),
            Fact::Scroll => self.scroll.into(),
            Fact::ExitIntent => self.exit_intent.into(),
            Fact::Hovered => self.hovered.clone().into(),
            Fact::Compared => self.compared.len().into(),
            Fact::DeviceType => self.device.into(),
            Fact::Visits => self.visits.into(),
            Fact::Returning => (self.visits > 1).into(),
        }
    }

    /// Moves the running visible stretch into the totals.
    fn bank(&mut self, now: i64) {
        if let Some(since) = self.visible_since {
            let ms = (now - since).max(0);
            self.page_active_ms += ms;
            self.site_active_ms += ms;
            self.visible_since = Some(now);
        }
    }

    fn note(&mut self, t: &Tracked, hover: bool) {
        // Clicks are kept by the engine too, but no supported variable reads them.
        if hover {
            push_name(&mut self.hovered, &t.element);
        }
        if let Some(item) = &t.item {
            push_name(&mut self.compared, item);
        }
    }
}

/// Adds a name to a bounded set, as the engine's `push_name` does.
fn push_name(list: &mut Vec<String>, name: &str) {
    if list.len() < MAX_NAMES && !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}
