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

/// One variable as a rule editor offers it: what it is, the operators the compiler accepts
/// for it, and the values to choose from when the type has a fixed set. Generated from the
/// catalogue and the compiler's own typing, so an editor built on it cannot offer a rule the
/// engine refuses (checked against the compiler in the tests).
#[derive(Clone, Debug, PartialEq)]
pub struct Pickable {
    /// The name rules use (`visitor.traits.<name>` for a family with a key of the author's).
    pub name: &'static str,
    /// The type's name (`number`, `text`, `boolean`, `date`, `page_type`, `device_type`,
    /// `weekday`, `names`, `page_types`, `any`).
    pub kind: &'static str,
    /// What it means.
    pub doc: &'static str,
    /// The operators the compiler accepts for it.
    pub ops: Vec<super::Op>,
    /// The values to pick from, for a type with a fixed set.
    pub choices: Vec<&'static str>,
}

impl Ty {
    /// The type's name in the editor's catalogue.
    pub fn kind(self) -> &'static str {
        match self {
            Ty::Num => "number",
            Ty::Str => "text",
            Ty::Bool => "boolean",
            Ty::Time => "date",
            Ty::PageType => "page_type",
            Ty::DeviceType => "device_type",
            Ty::Weekday => "weekday",
            Ty::Names => "names",
            Ty::PageTypes => "page_types",
            Ty::Dynamic => "any",
        }
    }

    fn choices(self) -> Vec<&'static str> {
        match self {
            Ty::PageType | Ty::PageTypes => PageType::ALL.map(PageType::as_str).to_vec(),
            Ty::DeviceType => crate::DeviceType::ALL
                .map(crate::DeviceType::as_str)
                .to_vec(),
            Ty::Weekday => super::schedule::Weekday::ALL
                .map(super::schedule::Weekday::as_str)
                .to_vec(),
            Ty::Bool => vec!["true", "false"],
            _ => Vec::new(),
        }
    }
}

/// The operators the compiler accepts for a variable of type `ty` moving with `clock`.
fn operators(ty: Ty, clock: Clock) -> Vec<super::Op> {
    use super::Op::*;
    let continuous = matches!(
        clock,
        Clock::VisibleSeconds | Clock::CheckoutSeconds | Clock::Seconds
    );
    super::Op::ALL
        .into_iter()
        .filter(|op| match op {
            Exists => true,
            Equals | NotEquals | In | NotIn => {
                !continuous
                    && matches!(
                        ty,
                        Ty::Num
                            | Ty::Str
                            | Ty::Bool
                            | Ty::PageType
                            | Ty::DeviceType
                            | Ty::Weekday
                            | Ty::Dynamic
                    )
            }
            Gt | Gte | Lt | Lte => matches!(ty, Ty::Num | Ty::Dynamic),
            Between => matches!(ty, Ty::Num | Ty::Dynamic | Ty::Time),
            Before | After => ty == Ty::Time,
            Contains | NotContains => {
                matches!(ty, Ty::Str | Ty::Dynamic | Ty::Names | Ty::PageTypes)
            }
            StartsWith | EndsWith | Matches => matches!(ty, Ty::Str | Ty::Dynamic),
        })
        .collect()
}

/// Every variable, as a rule editor offers it, in the catalogue's order.
pub fn pickables() -> Vec<Pickable> {
    VARIABLES
        .iter()
        .map(|v| {
            // The families (`visitor.traits.<name>`) resolve with any key.
            let probe = v.name.replace("<name>", "x");
            let clock = resolve(&probe).map_or(Clock::Still, |(_, _, c)| c);
            Pickable {
                name: v.name,
                kind: v.ty.kind(),
                doc: v.doc,
                ops: operators(v.ty, clock),
                choices: v.ty.choices(),
            }
        })
        .collect()
}

#[cfg(test)]
mod pickable_tests {
    use super::*;
    use crate::rules::{Op, RuleFile, RuleSet};
    use serde_json::{Value, json};

    /// A value of the right shape for `op` on a variable of `kind`.
    fn sample(kind: &str, op: Op) -> Option<Value> {
        let one = match kind {
            "number" | "any" => json!(1),
            "text" | "names" => json!("a"),
            "boolean" => json!(true),
            "date" => json!("2026-01-01"),
            "page_type" | "page_types" => json!("checkout"),
            "device_type" => json!("mobile"),
            "weekday" => json!("mon"),
            other => panic!("no sample for {other}"),
        };
        let textual = matches!(
            op,
            Op::Contains | Op::NotContains | Op::StartsWith | Op::EndsWith
        );
        match op {
            Op::Exists => None,
            _ if textual && kind == "any" => Some(json!("a")),
            Op::In | Op::NotIn => Some(json!([one])),
            Op::Between if kind == "date" => Some(json!(["2026-01-01", "2026-02-01"])),
            Op::Between => Some(json!([1, 2])),
            Op::Matches => Some(json!("^a")),
            _ => Some(one),
        }
    }

    #[test]
    fn the_editor_offers_exactly_the_operators_the_compiler_accepts() {
        for p in pickables() {
            let name = p.name.replace("<name>", "x");
            for op in Op::ALL {
                let mut leaf = json!({"var": name, "op": op.as_str()});
                if let Some(v) = sample(p.kind, op) {
                    leaf["value"] = v;
                }
                let spec: crate::rules::RuleSpec = serde_json::from_value(json!({
                    "id": "probe", "name": "probe", "status": "live",
                    "when": {"all": [leaf]},
                    "message": {"type": "text", "text": "x"},
                }))
                .unwrap();
                let compiled = RuleSet::compile(RuleFile { rules: vec![spec] }, chrono_tz::UTC);
                let offered = p.ops.contains(&op);
                match compiled {
                    Ok(_) => assert!(
                        offered,
                        "{name} {} compiles but is not offered",
                        op.as_str()
                    ),
                    Err(e) => {
                        assert!(
                            !offered,
                            "{name} {} is offered but refused: {e}",
                            op.as_str()
                        );
                        assert!(
                            e.to_string().contains(".op:"),
                            "{name} {}: refused for its value, not its operator: {e}",
                            op.as_str()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn types_with_a_fixed_set_offer_their_values() {
        let all = pickables();
        let page = all.iter().find(|p| p.name == "page.type").unwrap();
        assert!(page.choices.contains(&"checkout"));
        let weekday = all.iter().find(|p| p.name == "time.weekday").unwrap();
        assert_eq!(weekday.choices.len(), 7);
        let on_page = all.iter().find(|p| p.name == "time.on_page").unwrap();
        assert!(
            !on_page.ops.contains(&Op::Equals),
            "a continuous measure is never exactly one value"
        );
    }
}
