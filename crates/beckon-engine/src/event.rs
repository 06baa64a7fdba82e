//! Everything the widget and the merchant's backend can tell the engine about a visitor.

use serde::{Deserialize, Serialize};

use crate::ids::RuleId;
use crate::page::PageType;

/// One thing that happened. The instant is not part of the event: the caller passes `now`
/// to [`crate::Engine::decide`], because the server, not the visitor's clock, decides time.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A page (or a single-page-app route) was shown.
    PageView(PageView),
    /// The tab became visible or hidden; time on page counts only while visible.
    Visibility {
        /// Whether the page is now visible.
        visible: bool,
    },
    /// The visitor scrolled; `depth` is the percentage of the page seen so far (0–100).
    Scroll {
        /// Deepest point reached, in percent.
        depth: u8,
    },
    /// The visitor looks like they are leaving (pointer out through the top, fast scroll up on
    /// mobile, or the tab being hidden on mobile).
    ExitIntent,
    /// The visitor moved, typed or touched: they are present.
    Activity,
    /// The widget noticed that the visitor stopped interacting.
    Idle,
    /// The pointer rested on an element the site marks with `data-beckon-track`.
    Hover(Tracked),
    /// The visitor clicked an element the site marks with `data-beckon-track`.
    Click(Tracked),
    /// The cart changed: its full new state.
    Cart(CartUpdate),
    /// The visitor converted (an order, a sign-up), reported by the page or the backend.
    Conversion {
        /// The merchant's order id, if any.
        order_id: Option<String>,
        /// The order value in the cart's currency.
        value: f64,
    },
    /// The site told us who the visitor is.
    Identify {
        /// Traits such as email, name, plan.
        traits: Vec<(String, AttrValue)>,
    },
    /// A custom event the site tracks ("trial_started", "payment_failed").
    Track {
        /// The event's name.
        name: String,
        /// Its properties.
        props: Vec<(String, AttrValue)>,
    },
    /// The visitor opened the chat.
    ChatOpened,
    /// The visitor closed the chat.
    ChatClosed,
    /// An intervention is on screen.
    Shown {
        /// The rule that fired it.
        rule: RuleId,
    },
    /// The visitor dismissed an intervention.
    Dismissed {
        /// The rule that fired it.
        rule: RuleId,
    },
    /// The visitor engaged with an intervention (replied, clicked, opened).
    Engaged {
        /// The rule that fired it.
        rule: RuleId,
    },
    /// A conversation (AI or human) started.
    ConversationStarted,
    /// The conversation ended.
    ConversationEnded,
    /// A timer the engine asked for (a decision's `next_wake`) is due. Nothing happened; time
    /// passed.
    Tick,
}

impl Event {
    /// The event's name, as written in logs and on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::PageView(_) => "page",
            Event::Visibility { .. } => "visibility",
            Event::Scroll { .. } => "scroll",
            Event::ExitIntent => "exit_intent",
            Event::Activity => "activity",
            Event::Idle => "idle",
            Event::Hover(_) => "hover",
            Event::Click(_) => "click",
            Event::Cart(_) => "cart",
            Event::Conversion { .. } => "convert",
            Event::Identify { .. } => "identify",
            Event::Track { .. } => "track",
            Event::ChatOpened => "chat_opened",
            Event::ChatClosed => "chat_closed",
            Event::Shown { .. } => "shown",
            Event::Dismissed { .. } => "dismissed",
            Event::Engaged { .. } => "engaged",
            Event::ConversationStarted => "conversation_started",
            Event::ConversationEnded => "conversation_ended",
            Event::Tick => "tick",
        }
    }

    /// Whether the event shows the visitor is present and interacting. Such events reset the
    /// idle clock and end an exit intent (a visitor who scrolls again has not left).
    pub fn is_interaction(&self) -> bool {
        matches!(
            self,
            Event::PageView(_)
                | Event::Scroll { .. }
                | Event::Activity
                | Event::Hover(_)
                | Event::Click(_)
                | Event::Cart(_)
                | Event::ChatOpened
        )
    }

    /// Whether the event shows a person at the page: a pointer, touch, key or scroll (the
    /// widget reports each as `activity`), a hover, a click, or opening the chat. A page view,
    /// a scroll depth measured at load or a cart set by the page's script shows no one.
    pub fn shows_a_person(&self) -> bool {
        matches!(
            self,
            Event::Activity | Event::Hover(_) | Event::Click(_) | Event::ChatOpened
        )
    }
}

/// A page view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageView {
    /// The full URL.
    pub url: String,
    /// The URL's path, e.g. `/checkout`.
    pub path: String,
    /// The document title.
    pub title: String,
    /// The page type the site declared, [`PageType::Other`] when it declared none.
    pub page_type: Option<PageType>,
    /// The referrer, empty when none.
    pub referrer: String,
    /// The product or plan this page is about, if any.
    pub product: Option<String>,
    /// `utm_source`, `utm_medium` and `utm_campaign` of the URL, if present.
    pub utm: Utm,
}

/// Campaign parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    /// `utm_source`.
    pub source: Option<String>,
    /// `utm_medium`.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
}

impl Utm {
    /// Whether no parameter is present.
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.medium.is_none() && self.campaign.is_none()
    }
}

/// An element the site marked with `data-beckon-track="name"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The element's track name.
    pub element: String,
    /// The product or plan the element stands for (`data-beckon-item`), if any; distinct items
    /// count as compared.
    pub item: Option<String>,
}

/// The cart's new state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CartUpdate {
    /// Total value.
    pub value: f64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Number of items.
    pub items: u32,
}

/// A trait, attribute or event property value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// true or false.
    Bool(bool),
    /// A number.
    Num(f64),
    /// Text.
    Str(String),
}
