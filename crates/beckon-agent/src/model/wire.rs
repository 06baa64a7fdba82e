//! The chat-completions wire format, as OpenAI documents it and as compatible servers (Azure,
//! vLLM, Ollama, llama.cpp's server…) speak it. Every field read is optional: servers differ in
//! what they leave out (`id`, `created`, `usage`…), and a missing field must never fail an
//! answer that is otherwise readable.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message sent to the model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// Its text (none for an assistant message that only calls tools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The tools an assistant message called.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool's answer: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message of `role` with `text`.
    pub fn text(role: &'static str, text: impl Into<String>) -> Message {
        Message {
            role,
            content: Some(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call, as sent back with the assistant's message.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ToolCall {
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function and its arguments (a JSON text).
    pub function: FunctionCall,
}

/// A function's name and arguments.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FunctionCall {
    /// The function.
    pub name: String,
    /// Its arguments, a JSON text.
    pub arguments: String,
}

/// The request.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    /// The model.
    pub model: &'a str,
    /// The conversation.
    pub messages: &'a [Message],
    /// The tools it may call.
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    pub tools: &'a [Value],
    /// Stream the answer.
    pub stream: bool,
    /// Ask for the usage in the last chunk.
    pub stream_options: StreamOptions,
    /// The most tokens to write.
    pub max_tokens: u32,
    /// Steady, factual answers.
    pub temperature: f32,
}

/// `stream_options`.
#[derive(Debug, Serialize)]
pub struct StreamOptions {
    /// Send `usage` with the last chunk.
    pub include_usage: bool,
}

/// A streamed chunk, or a whole (non-streamed) completion: the same reader serves both.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Chunk {
    /// The choices (one is asked for).
    pub choices: Vec<Choice>,
    /// Tokens used, when the server tells.
    pub usage: Option<Usage>,
    /// An error some servers send inside the stream.
    pub error: Option<Value>,
}

/// One choice of a chunk.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Choice {
    /// What this chunk adds (streaming).
    pub delta: Option<Delta>,
    /// The whole message (not streaming).
    pub message: Option<Delta>,
    /// Why the answer ended: `stop`, `length`, `tool_calls`…
    pub finish_reason: Option<String>,
}

/// Text and tool-call fragments.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Delta {
    /// More text.
    pub content: Option<String>,
    /// Tool-call fragments, joined by `index`.
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A fragment of a tool call.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ToolCallDelta {
    /// Which call it belongs to (absent: the first).
    pub index: Option<usize>,
    /// The call's id, in its first fragment.
    pub id: Option<String>,
    /// The function's name and a piece of its arguments.
    pub function: Option<FunctionDelta>,
}

/// A piece of a function call.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FunctionDelta {
    /// The name (in the first fragment).
    pub name: Option<String>,
    /// More of the arguments' JSON text (some servers send it whole, as an object).
    pub arguments: Option<Value>,
}

/// Tokens used.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Sent.
    pub prompt_tokens: u64,
    /// Written.
    pub completion_tokens: u64,
}
