//! `POST /v1/chat/completions` bodies in OpenAI's wire format, read into an [`Exchange`]. What
//! this server cannot honour is refused with a clear `invalid_request`, never ignored silently
//! (fields that only tune the provider's sampling and have no effect here are accepted).

use serde::Deserialize;
use serde_json::Value;

use crate::chat::{Asks, Exchange, Sampling, StoreIn};
use crate::llm::{ChatMessage, MessageRole, ToolCall, ToolSpec};
use crate::wire::{ErrorCode, WireError};

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    // Everything else OpenAI defines (`user`, `seed`, `stop`, penalties, `metadata`…) is
    // accepted and not used.
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InToolCall {
    pub id: String,
    pub function: InFunction,
}

#[derive(Debug, Deserialize)]
pub struct InFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, message, false)
}

impl CompletionRequest {
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// The exchange to run (stored in a conversation when `store_in` says so), or why this
    /// request cannot be served.
    pub fn exchange(&self, store_in: StoreIn) -> Result<Exchange, WireError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("n: only one choice per request is supported"));
        }
        let client_tools = self
            .tools
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, tool)| client_tool(i, tool))
            .collect::<Result<Vec<_>, _>>()?;
        if self
            .tool_choice
            .as_ref()
            .is_some_and(|c| !matches!(c.as_str(), Some("auto" | "none")))
        {
            return Err(invalid(
                "tool_choice: only \"auto\" and \"none\" are supported",
            ));
        }
        if self.model.trim().is_empty() {
            return Err(invalid("model must not be empty"));
        }
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, message)| message.to_chat(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Exchange {
            messages,
            model: self.model.clone(),
            stream: self.stream,
            sampling: Sampling {
                temperature: self.temperature,
                max_tokens: self.max_completion_tokens.or(self.max_tokens),
                top_p: self.top_p,
            },
            store_in,
            client_tools,
            tools_allowed: self.tool_choice.as_ref().and_then(Value::as_str) != Some("none"),
            asks: Asks::Deny,
        })
    }
}

impl InMessage {
    fn to_chat(&self, index: usize) -> Result<ChatMessage, WireError> {
        let role = match self.role.as_str() {
            "system" | "developer" => MessageRole::System,
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            "tool" => MessageRole::Tool,
            other => {
                return Err(invalid(format!(
                    "messages[{index}].role: unknown role `{other}` (system, developer, user, \
                     assistant, tool)"
                )));
            }
        };
        let content = match &self.content {
            None => None,
            Some(Content::Text(text)) => Some(text.clone()),
            Some(Content::Parts(parts)) => Some(text_of(parts, index)?),
        };
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .iter()
            .flatten()
            .map(|call| ToolCall {
                id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
            })
            .collect();
        if content.is_none() && tool_calls.is_empty() {
            return Err(invalid(format!("messages[{index}].content is required")));
        }
        if role == MessageRole::Tool && self.tool_call_id.is_none() {
            return Err(invalid(format!(
                "messages[{index}].tool_call_id is required for a tool message"
            )));
        }
        Ok(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id: self.tool_call_id.clone(),
        })
    }
}

/// A tool the client defines: `{"type": "function", "function": {"name", "description"?,
/// "parameters"?}}`.
fn client_tool(index: usize, tool: &Value) -> Result<ToolSpec, WireError> {
    let function = tool
        .get("function")
        .filter(|_| tool.get("type").and_then(Value::as_str) == Some("function"))
        .ok_or_else(|| {
            invalid(format!(
                "tools[{index}]: only `function` tools are supported"
            ))
        })?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(invalid(format!(
            "tools[{index}].function.name must be 1 to 64 letters, digits, `_` or `-`"
        )));
    }
    Ok(ToolSpec {
        name: name.to_string(),
        description: function
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        parameters: std::sync::Arc::new(
            function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        ),
    })
}

/// The text parts of a content array, joined; any other kind is refused (text only here).
fn text_of(parts: &[Part], index: usize) -> Result<String, WireError> {
    let mut text = String::new();
    for part in parts {
        match (part.kind.as_str(), &part.text) {
            ("text", Some(piece)) => text.push_str(piece),
            (kind, _) => {
                return Err(invalid(format!(
                    "messages[{index}].content: parts of type `{kind}` are not supported; send text"
                )));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> CompletionRequest {
        serde_json::from_value(body).expect("parses")
    }

    #[test]
    fn messages_read_with_text_parts_and_tool_calls() {
        let exchange = request(json!({
            "model": "m", "stream": true, "max_completion_tokens": 9, "user": "ignored",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ]}))
        .exchange(StoreIn::Nothing)
        .expect("valid");
        assert_eq!(exchange.messages.len(), 4);
        assert_eq!(exchange.messages[0].role, MessageRole::System);
        assert_eq!(exchange.messages[1].content.as_deref(), Some("hi there"));
        assert_eq!(exchange.messages[2].tool_calls[0].name, "t");
        assert_eq!(exchange.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(exchange.sampling.max_tokens, Some(9));
        assert!(exchange.stream);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_clearly() {
        let refused = |body: Value| {
            request(body)
                .exchange(StoreIn::Nothing)
                .expect_err("refused")
                .message
        };
        let user = json!([{"role": "user", "content": "hi"}]);
        assert!(refused(json!({"model": "m", "messages": user, "n": 2})).contains("n:"));
        assert!(
            refused(json!({"model": "m", "messages": user, "tools": [{"type": "function"}]}))
                .contains("tools[0]")
        );
        assert!(
            refused(json!({"model": "m", "messages": user, "tools": [{"type": "web_search"}]}))
                .contains("only `function`")
        );
        assert!(
            refused(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}))
                .contains("image_url")
        );
        assert!(
            refused(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))
                .contains("wizard")
        );
        assert!(
            refused(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}))
                .contains("tool_call_id")
        );
    }
}
