//! The variables rules can test: their names, types and how they move with time.
//!
//! Names are a public contract (rule files in version control depend on them), so they are
//! listed once here and never renamed.

use crate::page::PageType;

/// The type of a variable's value, which decides the operators it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A number.
    Num,
    /// Text.
    Str,
    /// true / false.
    Bool,
    /// An instant (compared with dates).
    Time,
    /// One of the page types.
    PageType,
    /// One of the device types.
    DeviceType,
    /// One of mon, tue, … sun.
    Weekday,
    /// A set of names (tracked elements, custom events); tested with `contains`.
    Names,
    /// A set of page types; tested with `contains`.
    PageTypes,
    /// A trait, attribute or property whose type is known only at evaluation time.
    Dynamic,
}

impl Ty {
    /// How the type is named in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Ty::Num => "a number",
            Ty::Str => "text",
            Ty::Bool => "true/false",
            Ty::Time => "an instant",
            Ty::PageType => "a page type",
            Ty::DeviceType => "a device type",
            Ty::Weekday => "a weekday",
            Ty::Names => "a set of names",
            Ty::PageTypes => "a set of page types",
            Ty::Dynamic => "a value of any type",
        }
    }
}

/// How a variable's value moves when time passes and nothing happens. The engine uses this to
/// say when a condition could next change, so the server can wake the session then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Changes only with events.
    Still,
    /// Seconds that grow while the page is visible.
    VisibleSeconds,
    /// Seconds that grow while the visible page is an unfinished checkout.
    CheckoutSeconds,
    /// Seconds that always grow.
    Seconds,
    /// The visitor's local hour, which steps every hour.
    Hour,
    /// The visitor's local weekday, which steps at midnight.
    Weekday,
    /// The current instant.
    Now,
}

/// A resolved variable.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Var {
    PageUrl,
    PagePath,
    PageTitle,
    PageType,
    PageReferrer,
    PageProduct,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    PageViews,
    TimeOnPage,
    TimeOnSite,
    TimeIdle,
    TimeHour,
    TimeWeekday,
    TimeDate,
    Scroll,
    ExitIntent,
    Hovered,
    Clicked,
    Compared,
    Pages,
    PageTypes,
    CartValue,
    CartItems,
    CartCurrency,
    CartIdle,
    CartItemRemoved,
    CheckoutTime,
    Visits,
    Returning,
    FirstSeen,
    LastSeen,
    Conversations,
    Converted,
    EverConverted,
    Dismissals,
    Interventions,
    Language,
    Trait(Box<str>),
    Attribute(Box<str>),
    DeviceType,
    Browser,
    BrowserVersion,
    Os,
    EventName,
    EventProp(Box<str>),
    Tracked,
}

/// A variable's entry in the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct VarInfo {
    /// The name rules use.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// What it means.
    pub doc: &'static str,
}

macro_rules! catalogue {
    ($( $name:literal => $var:ident, $ty:ident, $clock:ident, $doc:literal; )*) => {
        /// Every fixed variable, in the order the documentation lists them.
        pub const VARIABLES: &[VarInfo] = &[
            $( VarInfo { name: $name, ty: Ty::$ty, doc: $doc }, )*
            VarInfo { name: "visitor.traits.<name>", ty: Ty::Dynamic, doc: "a trait from identify (email, plan, …)" },
            VarInfo { name: "visitor.attributes.<name>", ty: Ty::Dynamic, doc: "a custom attribute set by the site's backend" },
            VarInfo { name: "event.props.<name>", ty: Ty::Dynamic, doc: "a property of the custom event being handled" },
        ];

        fn fixed(name: &str) -> Option<(Var, Ty, Clock)> {
            match name {
                $( $name => Some((Var::$var, Ty::$ty, Clock::$clock)), )*
                _ => None,
            }
        }
    };
}

catalogue! {
    "page.url" => PageUrl, Str, Still, "the full URL of the current page";
    "page.path" => PagePath, Str, Still, "the path of the current page, e.g. /checkout";
    "page.title" => PageTitle, Str, Still, "the document title";
    "page.type" => PageType, PageType, Still, "home, category, product, pricing, cart, checkout, article or other";
    "page.referrer" => PageReferrer, Str, Still, "the referrer of the current page";
    "page.product" => PageProduct, Str, Still, "the product or plan the page is about";
    "page.utm_source" => UtmSource, Str, Still, "utm_source of the visit's campaign";
    "page.utm_medium" => UtmMedium, Str, Still, "utm_medium of the visit's campaign";
    "page.utm_campaign" => UtmCampaign, Str, Still, "utm_campaign of the visit's campaign";
    "page.views" => PageViews, Num, Still, "how many times this visitor has viewed this path, this view included";
    "time.on_page" => TimeOnPage, Num, VisibleSeconds, "seconds the current page has been visible";
    "time.on_site" => TimeOnSite, Num, VisibleSeconds, "seconds the site has been visible this visit";
    "time.idle" => TimeIdle, Num, Seconds, "seconds since the visitor last interacted";
    "time.hour" => TimeHour, Num, Hour, "the visitor's local hour, 0-23";
    "time.weekday" => TimeWeekday, Weekday, Weekday, "the visitor's local weekday, mon-sun";
    "time.date" => TimeDate, Time, Now, "now; compare with before, after or between dates";
    "behaviour.scroll" => Scroll, Num, Still, "deepest scroll on the current page, in percent";
    "behaviour.exit_intent" => ExitIntent, Bool, Still, "the visitor is leaving (pointer out through the top, fast scroll up, tab hidden on mobile)";
    "behaviour.hovered" => Hovered, Names, Still, "tracked elements hovered this visit";
    "behaviour.clicked" => Clicked, Names, Still, "tracked elements clicked this visit";
    "behaviour.compared" => Compared, Num, Still, "distinct products or plans looked at this visit";
    "behaviour.pages" => Pages, Num, Still, "pages viewed this visit";
    "behaviour.page_types" => PageTypes, PageTypes, Still, "page types seen this visit";
    "cart.value" => CartValue, Num, Still, "the cart's total value";
    "cart.items" => CartItems, Num, Still, "items in the cart (0 without a cart)";
    "cart.currency" => CartCurrency, Str, Still, "the cart's currency code";
    "cart.idle" => CartIdle, Num, Seconds, "seconds since the cart last changed";
    "cart.item_removed" => CartItemRemoved, Bool, Still, "an item was removed from the cart this visit";
    "cart.checkout_time" => CheckoutTime, Num, CheckoutSeconds, "seconds on checkout this visit without an order";
    "visitor.visits" => Visits, Num, Still, "visits so far, this one included";
    "visitor.returning" => Returning, Bool, Still, "the visitor has been here before";
    "visitor.first_seen" => FirstSeen, Time, Still, "when the visitor was first seen";
    "visitor.last_seen" => LastSeen, Time, Still, "when the previous visit was last active";
    "visitor.conversations" => Conversations, Num, Still, "conversations the visitor has had";
    "visitor.converted" => Converted, Bool, Still, "the visitor converted during this visit";
    "visitor.ever_converted" => EverConverted, Bool, Still, "the visitor has converted at some time";
    "visitor.dismissals" => Dismissals, Num, Still, "interventions the visitor has dismissed";
    "visitor.interventions" => Interventions, Num, Still, "interventions the visitor has seen";
    "visitor.language" => Language, Str, Still, "the visitor's language, e.g. en, fr";
    "device.type" => DeviceType, DeviceType, Still, "desktop, tablet or mobile";
    "device.browser" => Browser, Str, Still, "browser family, e.g. Chrome";
    "device.browser_version" => BrowserVersion, Num, Still, "the browser's major version";
    "device.os" => Os, Str, Still, "operating system family, e.g. iOS";
    "event.name" => EventName, Str, Still, "the name of the custom event being handled";
    "event.tracked" => Tracked, Names, Still, "custom events tracked this visit";
}

/// Resolves a variable name, accepting the American spelling `behavior.` too.
pub(crate) fn resolve(name: &str) -> Result<(Var, Ty, Clock), String> {
    let canonical;
    let name = match name.strip_prefix("behavior.") {
        Some(rest) => {
            canonical = format!("behaviour.{rest}");
            canonical.as_str()
        }
        None => name,
    };
    if let Some(found) = fixed(name) {
        return Ok(found);
    }
    let dynamic = [
        ("visitor.traits.", Var::Trait as fn(Box<str>) -> Var),
        ("visitor.attributes.", Var::Attribute),
        ("event.props.", Var::EventProp),
    ];
    for (prefix, make) in dynamic {
        if let Some(key) = name.strip_prefix(prefix) {
            if key.is_empty() || key.len() > 64 {
                return Err(format!(
                    "{name:?} needs a key of 1 to 64 characters after {prefix:?}"
                ));
            }
            return Ok((make(key.into()), Ty::Dynamic, Clock::Still));
        }
    }
    let suggestion = VARIABLES
        .iter()
        .map(|v| (strsim::jaro_winkler(v.name, name), v.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean {n:?}?)"))
        .unwrap_or_default();
    Err(format!("unknown variable {name:?}{suggestion}"))
}

/// The variable a page type literal belongs to, for error messages.
pub(crate) fn page_type_names() -> String {
    PageType::ALL.map(PageType::as_str).join(", ")
}
