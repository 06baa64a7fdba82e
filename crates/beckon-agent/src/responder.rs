//! The AI agent behind one interface: the offline responder (the default) answers from the
//! site's knowledge alone; a model client answers through a chat-completions API.

use async_trait::async_trait;
use beckon_store::conversations::{Author, Context, Message};

use crate::knowledge::Knowledge;

/// What a responder is asked.
pub struct Question<'a> {
    /// The visitor's message.
    pub text: &'a str,
    /// The conversation so far (oldest first), the message itself last.
    pub history: &'a [Message],
    /// The visitor's context.
    pub context: &'a Context,
    /// The site's knowledge.
    pub knowledge: &'a Knowledge,
}

/// What a responder wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The text for the visitor.
    pub text: String,
    /// Whether the knowledge (or the model) answered; `false` when it said it does not know.
    pub known: bool,
    /// What answering cost.
    pub usage: Usage,
}

/// What one answer cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Model calls made.
    pub calls: u32,
    /// Tokens sent.
    pub prompt_tokens: u64,
    /// Tokens received.
    pub completion_tokens: u64,
}

/// Why a responder could not answer (the desk falls back to the offline responder).
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The provider failed, timed out or answered something unreadable.
    #[error("{0}")]
    Provider(String),
}

/// Where a streamed answer's text goes as it is written (the whole text so far).
pub trait Draft: Send {
    /// The answer so far.
    fn progress(&mut self, text_so_far: &str);
}

/// A draft nobody watches.
pub struct NoDraft;

impl Draft for NoDraft {
    fn progress(&mut self, _: &str) {}
}

/// Writes answers.
#[async_trait]
pub trait Responder: Send + Sync {
    /// Its name, for the record ("offline", "model:gpt-4o-mini").
    fn name(&self) -> String;

    /// Whether it calls a model (and so counts against the site's budget).
    fn is_model(&self) -> bool {
        true
    }

    /// Answers a question.
    async fn answer(
        &self,
        question: &Question<'_>,
        draft: &mut dyn Draft,
    ) -> Result<Reply, ResponderError>;

    /// Writes a rule's greeting (see [`crate::greeting`]); a responder without a model writes
    /// none, and the rule's own text is shown.
    async fn greet(&self, _ask: &crate::greeting::GreetingAsk) -> Result<Reply, ResponderError> {
        Err(ResponderError::Provider(
            "this responder writes no greetings".to_owned(),
        ))
    }
}

/// The most characters of a passage given as an answer.
const MAX_ANSWER_CHARS: usize = 900;

/// What the offline responder says when the knowledge has no good answer.
pub const DONT_KNOW: &str = "I'm not sure about that, and I'd rather not guess. \
    Would you like to talk to a person? Press \u{201c}Talk to a person\u{201d} or just ask.";

/// Answers from the site's knowledge with no model at all: the best passage, verbatim, or "I
/// don't know" with the offer of a person. It never writes a sentence the knowledge does not
/// hold.
pub struct Offline;

#[async_trait]
impl Responder for Offline {
    fn name(&self) -> String {
        "offline".to_owned()
    }

    fn is_model(&self) -> bool {
        false
    }

    async fn answer(
        &self,
        q: &Question<'_>,
        _draft: &mut dyn Draft,
    ) -> Result<Reply, ResponderError> {
        Ok(offline_answer(q.knowledge, q.text))
    }
}

/// The offline responder's answer, also the fallback when a model fails or the budget is spent.
pub fn offline_answer(knowledge: &Knowledge, text: &str) -> Reply {
    match knowledge.answer(text) {
        Some(hit) => Reply {
            text: clip(&hit.passage.text, MAX_ANSWER_CHARS),
            known: true,
            usage: Usage::default(),
        },
        None => Reply {
            text: DONT_KNOW.to_owned(),
            known: false,
            usage: Usage::default(),
        },
    }
}

/// The text cut at a sentence's end before `max` characters, or at `max`.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(['.', '!', '?']) {
        Some(end) if end > max / 2 => cut[..=end].to_owned(),
        _ => format!("{}…", cut.trim_end()),
    }
}

/// Whether a message is the visitor's.
pub fn is_visitor(m: &Message) -> bool {
    m.author == Author::Visitor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_passages_are_clipped_at_a_sentence() {
        let text = format!("{} End here. {}", "word ".repeat(150), "more ".repeat(100));
        let c = clip(&text, 900);
        assert!(c.ends_with("End here."), "{c}");
        assert_eq!(clip("short.", 900), "short.");
    }

    #[test]
    fn the_offline_responder_says_it_does_not_know_rather_than_guess() {
        let k = Knowledge::from_files(&[(
            "faq.md".to_owned(),
            "## Do you ship to Canada?\n\nYes, in 5–8 days.\n".to_owned(),
        )])
        .unwrap();
        let known = offline_answer(&k, "do you ship to canada");
        assert!(known.known);
        assert_eq!(known.text, "Yes, in 5–8 days.");
        let unknown = offline_answer(&k, "can I pay with bitcoin?");
        assert!(!unknown.known);
        assert_eq!(unknown.text, DONT_KNOW);
    }
}
