//! Page types: what kind of page the visitor is on, declared by the site.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of page, as declared by `<meta name="beckon:page-type">` or `beckon('page', {type})`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum PageType {
    /// The home page.
    Home,
    /// A listing of products.
    Category,
    /// A single product.
    Product,
    /// Plans and prices.
    Pricing,
    /// The cart.
    Cart,
    /// Any step of the checkout.
    Checkout,
    /// Long-form content: a blog post, a guide.
    Article,
    /// Anything else.
    Other,
}

impl PageType {
    /// Every page type, in declaration order.
    pub const ALL: [PageType; 8] = [
        PageType::Home,
        PageType::Category,
        PageType::Product,
        PageType::Pricing,
        PageType::Cart,
        PageType::Checkout,
        PageType::Article,
        PageType::Other,
    ];

    /// The name used in rules and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PageType::Home => "home",
            PageType::Category => "category",
            PageType::Product => "product",
            PageType::Pricing => "pricing",
            PageType::Cart => "cart",
            PageType::Checkout => "checkout",
            PageType::Article => "article",
            PageType::Other => "other",
        }
    }

    /// This type as one bit of a [`PageTypes`] set.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for PageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PageType {
    type Err = String;

    /// Parses a page type name. Unknown names are an error rather than [`PageType::Other`] in
    /// rules, so that a typo such as "chekout" is caught when the rule is saved.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PageType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown page type {s:?}; expected one of {}",
                    PageType::ALL.map(PageType::as_str).join(", ")
                )
            })
    }
}

/// A set of page types, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageTypes(u8);

impl PageTypes {
    /// The empty set.
    pub const EMPTY: PageTypes = PageTypes(0);

    /// Adds a type.
    pub fn insert(&mut self, t: PageType) {
        self.0 |= t.bit();
    }

    /// Whether the set holds `t`.
    pub fn contains(self, t: PageType) -> bool {
        self.0 & t.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = PageType> {
        PageType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<PageType> for PageTypes {
    fn from_iter<I: IntoIterator<Item = PageType>>(iter: I) -> Self {
        let mut set = PageTypes::EMPTY;
        for t in iter {
            set.insert(t);
        }
        set
    }
}
