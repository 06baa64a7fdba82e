//! A rendered message as the widget receives it (`docs/wire-protocol.md`, "message").
//!
//! Converted by hand from the engine's rule-file [`beckon_engine::rules::Message`], so that
//! renaming a field of the rule language never changes the wire protocol, and the other way
//! round.

use beckon_engine::rules::Message as Rule;
use beckon_engine::rules::message::{ButtonAction, CompareItem};
use serde::Serialize;

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A line of text.
    Text {
        /// The text.
        text: String,
    },
    /// A card.
    Card {
        /// Title.
        title: String,
        /// Body.
        body: String,
        /// Image URL.
        #[serde(skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// Up to three buttons.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<Button>,
    },
    /// A coupon.
    Offer {
        /// The pitch.
        text: String,
        /// The code.
        code: String,
        /// What it gives.
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Its expiry date.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
    /// Two items side by side.
    Comparison {
        /// Title.
        title: String,
        /// The items (none: the widget reads the page's).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        items: Vec<Item>,
    },
    /// An e-mail capture form.
    EmailCapture {
        /// The pitch.
        text: String,
        /// Ask for a name.
        ask_name: bool,
        /// Ask for a question.
        ask_question: bool,
        /// The consent wording.
        consent: String,
    },
    /// Opens the chat with a starter question.
    OpenChat {
        /// The question.
        question: String,
        /// A line above the chat.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
}

/// A card button.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Button {
    /// The label.
    pub label: String,
    /// `reply`, `url`, `chat` or `coupon`.
    pub action: &'static str,
    /// The reply, URL, question or code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    /// Name.
    pub name: String,
    /// Price as displayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Short points.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Where "choose" leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl From<&Rule> for Message {
    fn from(m: &Rule) -> Message {
        match m {
            Rule::Text { text } => Message::Text { text: text.clone() },
            Rule::Card {
                title,
                body,
                image,
                buttons,
            } => Message::Card {
                title: title.clone(),
                body: body.clone(),
                image: image.clone(),
                buttons: buttons
                    .iter()
                    .map(|b| Button {
                        label: b.label.clone(),
                        action: match b.action {
                            ButtonAction::Reply => "reply",
                            ButtonAction::Url => "url",
                            ButtonAction::Chat => "chat",
                            ButtonAction::Coupon => "coupon",
                        },
                        value: b.value.clone(),
                    })
                    .collect(),
            },
            Rule::Offer {
                text,
                code,
                description,
                expires,
            } => Message::Offer {
                text: text.clone(),
                code: code.clone(),
                description: description.clone(),
                expires: expires.clone(),
            },
            Rule::Comparison { title, items } => Message::Comparison {
                title: title.clone(),
                items: items.iter().map(item).collect(),
            },
            Rule::EmailCapture {
                text,
                ask_name,
                ask_question,
                consent,
            } => Message::EmailCapture {
                text: text.clone(),
                ask_name: *ask_name,
                ask_question: *ask_question,
                consent: consent.clone(),
            },
            Rule::OpenChat { question, text } => Message::OpenChat {
                question: question.clone(),
                text: text.clone(),
            },
        }
    }
}

fn item(i: &CompareItem) -> Item {
    Item {
        name: i.name.clone(),
        price: i.price.clone(),
        features: i.features.clone(),
        url: i.url.clone(),
    }
}
