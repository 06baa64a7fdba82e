//! The AI agent on any OpenAI-compatible chat-completions API (OpenAI, Azure, vLLM, Ollama,
//! llama.cpp's server…): a thin client on reqwest with eventsource-stream's SSE parser rather
//! than an SDK, because the SDKs' strict types fail on the fields compatible servers leave out;
//! here every field is optional ([`wire`]).
//!
//! A call streams the answer (each piece goes to the draft the visitor sees), joins tool-call
//! fragments by index, runs the tools and calls again (at most [`MAX_ROUNDS`]); it is bounded
//! by a deadline, and retried on a refused or failed connection, a 429 or a 5xx (honouring
//! `Retry-After`). Whatever fails is an error the desk turns into the offline answer.

mod tools;
pub mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use beckon_store::conversations::Author;
use eventsource_stream::Eventsource;
use futures::StreamExt;

pub use tools::OrderEndpoint;
use wire::{Chunk, FunctionCall, Message, Request, StreamOptions, ToolCall};

use crate::knowledge::Knowledge;
use crate::responder::{Draft, Question, Reply, Responder, ResponderError, Usage};

/// The most model calls one answer may take (each tool round is one).
pub const MAX_ROUNDS: usize = 3;
/// How many knowledge passages go with the question.
const PASSAGES: usize = 4;
/// How many earlier messages go with the question.
const HISTORY: usize = 12;
/// The longest wait a `Retry-After` may ask for before the call gives up instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How to reach a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The API's base, e.g. `https://api.openai.com/v1` (`/chat/completions` is added).
    pub base_url: String,
    /// The model.
    pub model: String,
    /// The key, sent as `Authorization: Bearer …` (none for a local server).
    pub api_key: Option<String>,
    /// The longest one answer may take, tool rounds and retries included.
    pub timeout: Duration,
    /// How many times a failed call is tried again.
    pub retries: u32,
    /// The most tokens one call may write.
    pub max_tokens: u32,
    /// The shop's name, for the model's instructions.
    pub shop: String,
    /// The merchant's order-status endpoint, when there is one.
    pub orders: Option<OrderEndpoint>,
}

/// Answers through a model.
pub struct ModelResponder {
    config: ModelConfig,
    http: reqwest::Client,
    endpoint: String,
}

impl ModelResponder {
    /// Checks the configuration and builds the client.
    pub fn new(config: ModelConfig) -> Result<ModelResponder, String> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "the model's base URL must be http:// or https://, not {base:?}"
            ));
        }
        if config.model.trim().is_empty() {
            return Err("name the model".to_owned());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the model's HTTP client: {e}"))?;
        Ok(ModelResponder {
            endpoint: format!("{base}/chat/completions"),
            config,
            http,
        })
    }

    fn instructions(&self, knowledge: &Knowledge, question: &str) -> String {
        let mut s = format!(
            "You are the shopping assistant of {shop}, chatting with a visitor on its website. \
             Answer questions before a purchase: products, stock, prices, shipping, sizing, \
             payment and the shop's policies. Use only the facts below and what the tools \
             answer; if they do not cover the question, say you do not know and offer to \
             connect the visitor with a person. Never invent a policy, a price, a discount or \
             a delivery date, and never promise what the facts do not say. Returns, refunds, \
             problems with an order or an account are for a person. Keep answers short (at most \
             three sentences), friendly and in the visitor's language. Write plain text, no \
             Markdown.\n\nFacts:\n",
            shop = self.config.shop
        );
        for hit in knowledge.search(question, PASSAGES) {
            s.push_str(&format!("- {}: {}\n", hit.passage.title, hit.passage.text));
        }
        s
    }

    /// One call, with retries; what it wrote and the tools it called.
    async fn call(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        draft: &mut dyn Draft,
        deadline: Instant,
    ) -> Result<Called, ResponderError> {
        let mut attempt = 0;
        loop {
            match self.call_once(messages, tools, draft).await {
                Ok(called) => return Ok(called),
                Err(Failure::Retry { why, after }) if attempt < self.config.retries => {
                    attempt += 1;
                    let wait = after.unwrap_or(Duration::from_millis(300 << attempt));
                    if wait > MAX_RETRY_AFTER || Instant::now() + wait >= deadline {
                        return Err(ResponderError::Provider(why));
                    }
                    tracing::debug!(attempt, %why, "retrying the model call");
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Retry { why, .. } | Failure::Fatal(why)) => {
                    return Err(ResponderError::Provider(why));
                }
            }
        }
    }

    async fn call_once(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        draft: &mut dyn Draft,
    ) -> Result<Called, Failure> {
        let body = Request {
            model: &self.config.model,
            messages,
            tools,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens: self.config.max_tokens,
            temperature: 0.2,
        };
        let mut request = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| Failure::Retry {
            why: format!("the model could not be reached: {e}"),
            after: None,
        })?;
        let status = response.status();
        if !status.is_success() {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let why = format!("the model answered {status}: {text}");
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                Failure::Retry { why, after }
            } else {
                Failure::Fatal(why)
            });
        }
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let mut called = Called::default();
        if !streamed {
            // A server that ignores `stream` answers the whole completion at once.
            let whole: Chunk = response
                .json()
                .await
                .map_err(|e| Failure::Fatal(format!("the model's answer is unreadable: {e}")))?;
            called.take(whole, draft, true)?;
            return Ok(called);
        }
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| Failure::Retry {
                why: format!("the model's stream broke: {e}"),
                after: None,
            })?;
            let data = event.data.trim();
            if data == "[DONE]" {
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| Failure::Fatal(format!("the model sent an unreadable chunk: {e}")))?;
            called.take(chunk, draft, false)?;
        }
        Ok(called)
    }
}

/// Why a call failed, and whether trying again may help.
enum Failure {
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// What one call wrote.
#[derive(Default)]
struct Called {
    text: String,
    calls: BTreeMap<usize, ToolCall>,
    usage: Usage,
}

impl Called {
    fn take(&mut self, chunk: Chunk, draft: &mut dyn Draft, whole: bool) -> Result<(), Failure> {
        if let Some(e) = chunk.error {
            return Err(Failure::Fatal(format!("the model reported an error: {e}")));
        }
        if let Some(u) = chunk.usage {
            self.usage.prompt_tokens = u.prompt_tokens;
            self.usage.completion_tokens = u.completion_tokens;
        }
        for choice in chunk.choices {
            let Some(delta) = (if whole { choice.message } else { choice.delta }) else {
                continue;
            };
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                self.text.push_str(&text);
                draft.progress(&self.text);
            }
            for (n, piece) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let call = self
                    .calls
                    .entry(piece.index.unwrap_or(n))
                    .or_insert_with(|| ToolCall {
                        kind: "function",
                        ..ToolCall::default()
                    });
                if let Some(id) = piece.id {
                    call.id = id;
                }
                if let Some(f) = piece.function {
                    if let Some(name) = f.name {
                        call.function.name.push_str(&name);
                    }
                    match f.arguments {
                        Some(serde_json::Value::String(s)) => call.function.arguments.push_str(&s),
                        Some(other) => call.function.arguments.push_str(&other.to_string()),
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Responder for ModelResponder {
    fn name(&self) -> String {
        format!("model:{}", self.config.model)
    }

    async fn answer(
        &self,
        q: &Question<'_>,
        draft: &mut dyn Draft,
    ) -> Result<Reply, ResponderError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut messages = vec![Message::text(
            "system",
            self.instructions(q.knowledge, q.text),
        )];
        let earlier = q.history.len().saturating_sub(HISTORY);
        for m in &q.history[earlier..] {
            match m.author {
                Author::Visitor => messages.push(Message::text("user", m.text.clone())),
                Author::Ai | Author::Agent => {
                    messages.push(Message::text("assistant", m.text.clone()));
                }
                Author::System => {}
            }
        }
        if !q
            .history
            .last()
            .is_some_and(|m| m.author == Author::Visitor && m.text == q.text)
        {
            messages.push(Message::text("user", q.text));
        }
        let tools = tools::definitions(self.config.orders.is_some());
        let mut usage = Usage::default();
        for _ in 0..MAX_ROUNDS {
            let left = deadline.saturating_duration_since(Instant::now());
            let called = tokio::time::timeout(left, self.call(&messages, &tools, draft, deadline))
                .await
                .map_err(|_| {
                    ResponderError::Provider(format!(
                        "the model took longer than {:?}",
                        self.config.timeout
                    ))
                })??;
            usage.calls += 1;
            usage.prompt_tokens += called.usage.prompt_tokens;
            usage.completion_tokens += called.usage.completion_tokens;
            if called.calls.is_empty() {
                let text = called.text.trim().to_owned();
                if text.is_empty() {
                    return Err(ResponderError::Provider(
                        "the model wrote nothing".to_owned(),
                    ));
                }
                return Ok(Reply {
                    text,
                    known: true,
                    usage,
                });
            }
            let calls: Vec<ToolCall> = called
                .calls
                .into_values()
                .enumerate()
                .map(|(i, mut c)| {
                    if c.id.is_empty() {
                        c.id = format!("call_{i}");
                    }
                    c
                })
                .collect();
            messages.push(Message {
                role: "assistant",
                content: (!called.text.is_empty()).then_some(called.text),
                tool_calls: calls.clone(),
                tool_call_id: None,
            });
            for c in calls {
                let FunctionCall { name, arguments } = &c.function;
                let answer = tools::run(
                    name,
                    arguments,
                    q.knowledge,
                    self.config.orders.as_ref(),
                    &self.http,
                )
                .await;
                messages.push(Message {
                    role: "tool",
                    content: Some(answer),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(c.id.clone()),
                });
            }
        }
        Err(ResponderError::Provider(format!(
            "the model still called tools after {MAX_ROUNDS} rounds"
        )))
    }

    async fn greet(&self, ask: &crate::greeting::GreetingAsk) -> Result<Reply, ResponderError> {
        let deadline = Instant::now() + self.config.timeout;
        let system = format!(
            "You write the first line a shop's chat shows a visitor, for {shop}. {prompt}\n\
             Write one sentence of at most {max} characters, plain text, no quotes, no link. \
             Promise nothing the shop's own message below does not: no price, discount, \
             delivery date or policy of your own.{lang}\n\nThe shop's own message: {fixed}\n\
             The visitor: {context}",
            shop = self.config.shop,
            prompt = ask.prompt,
            max = ask.max_chars,
            lang = if ask.language.is_empty() {
                String::new()
            } else {
                format!(" Write in the language {}.", ask.language)
            },
            fixed = ask.fixed,
            context = ask.context,
        );
        let messages = [
            Message::text("system", system),
            Message::text("user", "Write the greeting."),
        ];
        let left = deadline.saturating_duration_since(Instant::now());
        let called = tokio::time::timeout(
            left,
            self.call(&messages, &[], &mut crate::responder::NoDraft, deadline),
        )
        .await
        .map_err(|_| ResponderError::Provider("the model took too long".to_owned()))??;
        Ok(Reply {
            text: called.text.trim().to_owned(),
            known: true,
            usage: Usage {
                calls: 1,
                prompt_tokens: called.usage.prompt_tokens,
                completion_tokens: called.usage.completion_tokens,
            },
        })
    }
}
