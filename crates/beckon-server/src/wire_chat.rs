//! The chat's frames (`docs/wire-protocol.md`, Chat): what `chat.js` sends over the socket or
//! `POST /v1/chat`, and what it is sent. Converted by hand from and to the desk's types, so
//! that the desk never knows a wire shape.

use beckon_agent::desk::Update;
use beckon_store::conversations::{Conversation, Message, Status};
use serde::{Deserialize, Serialize};

/// A chat frame sent up.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChatUp {
    /// Send the open conversation and its messages after `after`.
    ChatSync {
        /// The last `seq` the tab has.
        #[serde(default)]
        after: u64,
    },
    /// Open the chat: the conversation, started if there is none.
    ChatStart {
        /// The intervention engaged, when one was.
        #[serde(default)]
        intervention: Option<String>,
        /// Its rule.
        #[serde(default)]
        rule: Option<String>,
        /// The pre-chat form.
        #[serde(default)]
        prechat: Option<PrechatUp>,
    },
    /// A message from the visitor.
    Say {
        /// The tab's id for it (a resend carries the same).
        id: String,
        /// Its text.
        text: String,
        /// The intervention engaged, when it starts the conversation.
        #[serde(default)]
        intervention: Option<String>,
        /// Its rule.
        #[serde(default)]
        rule: Option<String>,
    },
    /// The visitor is typing (or stopped).
    Typing {
        /// Whether they are.
        on: bool,
    },
    /// The visitor has read up to a message.
    Read {
        /// Its `seq`.
        seq: u64,
    },
    /// "Talk to a person".
    Handoff,
    /// An address for a follow-up, when nobody was free.
    FollowUp {
        /// The address.
        email: String,
        /// A name.
        #[serde(default)]
        name: String,
    },
    /// The visitor ends the chat.
    ChatEnd,
    /// The visitor rates the chat.
    Rate {
        /// 1 to 5.
        score: u8,
        /// A comment.
        #[serde(default)]
        comment: String,
    },
}

/// The pre-chat form's fields.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrechatUp {
    /// A name.
    #[serde(default)]
    pub name: String,
    /// An address.
    #[serde(default)]
    pub email: String,
    /// A topic.
    #[serde(default)]
    pub topic: String,
}

/// A chat frame sent down.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatDown {
    /// A stored message.
    Chat(ChatMessage),
    /// An answer being written: the whole text so far.
    ChatDraft {
        /// The conversation.
        conversation: String,
        /// The text so far.
        text: String,
    },
    /// Someone on the other side types.
    ChatTyping {
        /// `agent` or `visitor` (another tab).
        from: &'static str,
        /// Whether they are typing.
        on: bool,
    },
    /// Someone read up to a message.
    ChatRead {
        /// `agent` or `visitor`.
        by: &'static str,
        /// Up to which.
        seq: u64,
    },
    /// The conversation's standing (and, after a sync or a start, its messages).
    ChatState {
        /// The conversation, or none.
        conversation: Option<ChatConversation>,
        /// Its messages after the tab's last.
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<Vec<ChatMessage>>,
    },
    /// The visitor's message is stored.
    Said {
        /// The tab's id for it.
        id: String,
        /// Its place.
        seq: u64,
    },
    /// What was wrong with a chat frame.
    ChatError {
        /// The message it concerns, for a `say`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// What was wrong.
        error: String,
        /// Whether the frame may be sent again as it is (the chat is unavailable for a moment:
        /// the site's desk is moving to another node); a `say` is then kept and resent.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
    /// This tab missed updates: it should sync.
    ChatStale,
}

/// A message, as the widget shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChatMessage {
    /// The conversation.
    pub conversation: String,
    /// Its place.
    pub seq: u64,
    /// The tab's id for a visitor's message.
    pub id: Option<String>,
    /// `visitor`, `ai`, `agent` or `system`.
    pub from: &'static str,
    /// A person's name.
    pub name: Option<String>,
    /// The text (never HTML); a file's name for a file.
    pub text: String,
    /// A file sent with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<ChatFile>,
    /// When, in ms.
    pub at: i64,
}

/// A file of a message: fetched from `GET /v1/chat/files/{id}` by the visitor.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChatFile {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its type (one of the accepted ones).
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A conversation, as the widget needs it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChatConversation {
    /// Its id.
    pub id: String,
    /// `bot` (the AI answers), `waiting` (for a person), `active` (a person answers),
    /// `missed` (nobody was free: ask for an address) or `closed`.
    pub status: &'static str,
    /// Whether the visitor left an address for a follow-up.
    pub follow_up: bool,
    /// Whether it is closed and waits for a rating.
    pub rate: bool,
    /// The last message the other side read.
    pub read: u64,
}

/// A message for the widget.
pub fn message(conversation: &str, m: &Message) -> ChatMessage {
    ChatMessage {
        conversation: conversation.to_owned(),
        seq: m.seq,
        id: m.client_id.clone(),
        from: m.author.as_str(),
        name: m.author_name.clone(),
        text: m.text.clone(),
        file: m.attachment.as_ref().map(|a| ChatFile {
            id: a.id.clone(),
            name: a.name.clone(),
            mime: a.mime.clone(),
            size: a.size,
        }),
        at: m.at.as_millis(),
    }
}

/// A conversation for the widget.
pub fn conversation(c: &Conversation) -> ChatConversation {
    ChatConversation {
        id: c.id.to_string(),
        status: match c.status {
            Status::Bot => "bot",
            Status::Queued | Status::Offered => "waiting",
            Status::Active => "active",
            Status::Missed => "missed",
            Status::Closed => "closed",
        },
        follow_up: c.prechat.as_ref().is_some_and(|p| !p.email.is_empty()),
        rate: c.status.is_closed() && c.rating.is_none(),
        read: c.agent_read,
    }
}

/// What a visitor's tab is told of an update (a visitor's own typing and read marks are for
/// the console, not their other tabs).
pub fn update(u: &Update) -> Option<ChatDown> {
    use beckon_store::conversations::Author;
    match u {
        Update::Message {
            conversation,
            message: m,
            ..
        } => Some(ChatDown::Chat(message(conversation.as_str(), m))),
        Update::Draft {
            conversation, text, ..
        } => Some(ChatDown::ChatDraft {
            conversation: conversation.to_string(),
            text: text.clone(),
        }),
        Update::Typing { author, on, .. } if *author == Author::Agent => {
            Some(ChatDown::ChatTyping {
                from: "agent",
                on: *on,
            })
        }
        Update::Read { author, seq, .. } if *author == Author::Agent => Some(ChatDown::ChatRead {
            by: "agent",
            seq: *seq,
        }),
        Update::Changed { conversation: c } => Some(ChatDown::ChatState {
            conversation: Some(conversation(c)),
            messages: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_error_says_retry_only_when_the_frame_may_be_sent_again() {
        let error = |retry| {
            serde_json::to_value(ChatDown::ChatError {
                id: Some("m1".to_owned()),
                error: "e".to_owned(),
                retry,
            })
            .unwrap()
        };
        assert_eq!(
            error(false),
            serde_json::json!({"type": "chat_error", "id": "m1", "error": "e"})
        );
        assert_eq!(error(true)["retry"], true);
    }
}
