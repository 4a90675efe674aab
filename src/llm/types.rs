//! What callers send to a provider and what comes back, independent of the wire format.

use serde::{Deserialize, Serialize};

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: MessageRole,
    /// `None` only for an assistant message that is all tool calls.
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    Tool,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments, already in the provider's accepted form; shared, since
    /// the same schemas are offered on every turn.
    pub parameters: std::sync::Arc<serde_json::Value>,
}

/// A completed tool call: its arguments are the whole JSON text the model produced.
///
/// In JSON it has OpenAI's nested shape, `{"id", "type": "function", "function": {"name",
/// "arguments"}}`, wherever it goes: to a provider, into the store, to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "NestedCall", from = "NestedCall")]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// [`ToolCall`] as it is written in JSON.
#[derive(Serialize, Deserialize)]
struct NestedCall {
    id: String,
    #[serde(rename = "type", default = "function_kind")]
    kind: String,
    function: NestedFunction,
}

#[derive(Serialize, Deserialize)]
struct NestedFunction {
    name: String,
    arguments: String,
}

fn function_kind() -> String {
    "function".into()
}

impl From<ToolCall> for NestedCall {
    fn from(call: ToolCall) -> Self {
        Self {
            id: call.id,
            kind: function_kind(),
            function: NestedFunction {
                name: call.name,
                arguments: call.arguments,
            },
        }
    }
}

impl From<NestedCall> for ToolCall {
    fn from(call: NestedCall) -> Self {
        Self {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        }
    }
}

/// A request to a provider. Unset sampling fields take the provider's configured values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name": …}}`.
    pub tool_choice: Option<serde_json::Value>,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    pub stream: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Counted by us, not reported by the provider (an engine that sends no usage in a
    /// stream, or an answer cut off before its usage): our tokenizer's estimate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

impl FinishReason {
    pub fn parse(text: &str) -> Self {
        match text {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_string()),
        }
    }
}

/// An answer as it arrives. Dropping it cancels the request.
pub type ChatStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ChatEvent, super::ProviderError>> + Send>>;

/// What a provider's answer is made of, in order: text deltas, then completed tool calls,
/// usage, and a finish reason last.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Text(String),
    ToolCall(ToolCall),
    Usage(Usage),
    Finish(FinishReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_is_written_and_read_in_openais_nested_shape() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "echo".into(),
            arguments: "{\"text\": \"x\"}".into(),
        };
        let json = serde_json::to_value(&call).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"id": "call_1", "type": "function",
                               "function": {"name": "echo", "arguments": "{\"text\": \"x\"}"}})
        );
        assert_eq!(
            serde_json::from_value::<ToolCall>(json).expect("reads"),
            call
        );
    }
}
