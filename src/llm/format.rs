//! The OpenAI-compatible format: the request body, the non-streaming response, and how an
//! HTTP status becomes a [`ProviderError`].

use std::time::SystemTime;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::assemble::{ErrorObject, excerpt};
use super::error::ProviderError;
use super::retry::parse_retry_after;
use super::types::{
    ChatEvent, ChatMessage, ChatRequest, FinishReason, MessageRole, ToolCall, Usage,
};
use crate::config::ProviderConfig;

#[derive(Serialize, Clone)]
pub struct Body<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a serde_json::Value>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
}

#[derive(Serialize, Clone)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize, Clone)]
struct Message<'a> {
    role: MessageRole,
    /// Serialized as `null` for an assistant message that is only tool calls.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize, Deserialize, Clone)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    function: WireFunction<'a>,
}

#[derive(Serialize, Deserialize, Clone)]
struct WireFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize, Clone)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ToolFunction<'a>,
}

#[derive(Serialize, Clone)]
struct ToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a serde_json::Value,
}

impl<'a> Body<'a> {
    /// The request as sent: sampling from the request, else from the provider's config.
    pub fn new(config: &'a ProviderConfig, request: &'a ChatRequest) -> Self {
        Self {
            model: request.model.as_deref().unwrap_or(&config.model),
            messages: request.messages.iter().map(message).collect(),
            tools: request
                .tools
                .iter()
                .map(|t| Tool {
                    kind: "function",
                    function: ToolFunction {
                        name: &t.name,
                        description: &t.description,
                        parameters: &t.parameters,
                    },
                })
                .collect(),
            tool_choice: request
                .tool_choice
                .as_ref()
                .filter(|_| !request.tools.is_empty()),
            stream: request.stream,
            stream_options: request.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            temperature: request.temperature.or(config.temperature),
            max_tokens: request.max_tokens.or(config.max_tokens),
            top_p: request.top_p.or(config.top_p),
        }
    }

    pub fn model(&self) -> &str {
        self.model
    }

    /// The same request, answered whole rather than streamed.
    pub fn unstreamed(&self) -> Self {
        Self {
            stream: false,
            stream_options: None,
            ..self.clone()
        }
    }
}

fn message(m: &ChatMessage) -> Message<'_> {
    Message {
        role: m.role,
        content: m.content.as_deref(),
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| WireCall {
                id: &c.id,
                kind: "function",
                function: WireFunction {
                    name: &c.name,
                    arguments: &c.arguments,
                },
            })
            .collect(),
        tool_call_id: m.tool_call_id.as_deref(),
    }
}

/// A non-streaming `chat.completions` response.
#[derive(Deserialize)]
pub struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: CompletionMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<OwnedCall>>,
}

#[derive(Deserialize)]
struct OwnedCall {
    id: String,
    function: OwnedFunction,
}

#[derive(Deserialize)]
struct OwnedFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

impl Completion {
    /// The same events a stream would have produced.
    pub fn into_events(self) -> Result<Vec<ChatEvent>, String> {
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or("the response has no choices")?;
        let mut events = Vec::new();
        if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
            events.push(ChatEvent::Text(text));
        }
        for call in choice.message.tool_calls.unwrap_or_default() {
            let arguments = if call.function.arguments.trim().is_empty() {
                "{}".into()
            } else {
                call.function.arguments
            };
            events.push(ChatEvent::ToolCall(ToolCall {
                id: call.id,
                name: call.function.name,
                arguments,
            }));
        }
        if let Some(usage) = self.usage {
            events.push(ChatEvent::Usage(usage));
        }
        let reason = choice
            .finish_reason
            .as_deref()
            .map_or(FinishReason::Stop, FinishReason::parse);
        events.push(ChatEvent::Finish(reason));
        Ok(events)
    }
}

/// What a non-success status means. `body` is the response text (an error object or not).
pub fn status_error(
    provider: &str,
    config: &ProviderConfig,
    model: &str,
    status: StatusCode,
    retry_after: Option<&str>,
    body: &str,
) -> ProviderError {
    let provider = provider.to_string();
    let parsed = serde_json::from_str::<ErrorBody>(body).ok();
    let overflow = parsed
        .as_ref()
        .is_some_and(|b| b.error.is_context_overflow());
    let window = parsed.as_ref().and_then(|b| b.error.context_window());
    let message = parsed.and_then(|b| b.error.message).unwrap_or_else(|| {
        if body.trim().is_empty() {
            status.to_string()
        } else {
            excerpt(body.trim())
        }
    });
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, SystemTime::now()));
    match status.as_u16() {
        400 | 413 if overflow => ProviderError::ContextLength {
            provider,
            message,
            window,
        },
        401 | 403 => ProviderError::Auth {
            provider,
            env_var: config
                .api_key_env
                .clone()
                .unwrap_or_else(|| "(no api_key_env set)".into()),
            status: status.as_u16(),
        },
        404 => ProviderError::ModelNotFound {
            provider,
            model: model.to_string(),
        },
        429 => ProviderError::ProviderRateLimited {
            provider,
            retry_after,
        },
        408 | 500..=599 => ProviderError::Server {
            provider,
            status: status.as_u16(),
            message,
        },
        _ => ProviderError::InvalidRequest { provider, message },
    }
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// An `/embeddings` response: one vector per input, put back in input order.
pub fn embeddings(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, String> {
    let parsed: EmbeddingResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not an embeddings response ({e}): {}",
            excerpt(&String::from_utf8_lossy(body))
        )
    })?;
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in parsed.data {
        let slot = vectors
            .get_mut(item.index)
            .ok_or_else(|| format!("embedding index {} out of range", item.index))?;
        *slot = Some(item.embedding);
    }
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("no embedding for input {i}")))
        .collect()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::ToolSpec;

    #[test]
    fn the_body_carries_tools_usage_and_config_defaults() {
        let config = ProviderConfig::preset("openai");
        let mut assistant = ChatMessage::new(MessageRole::Assistant, "");
        assistant.content = None;
        assistant.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "echo".into(),
            arguments: "{}".into(),
        }];
        let mut tool = ChatMessage::new(MessageRole::Tool, "echoed");
        tool.tool_call_id = Some("c1".into());
        let request = ChatRequest {
            messages: vec![ChatMessage::new(MessageRole::User, "hi"), assistant, tool],
            tools: vec![ToolSpec {
                name: "echo".into(),
                description: "Echo".into(),
                parameters: serde_json::json!({"type": "object"}).into(),
            }],
            tool_choice: Some(serde_json::json!("auto")),
            stream: true,
            temperature: Some(0.1),
            ..ChatRequest::default()
        };
        let body = serde_json::to_value(Body::new(&config, &request)).expect("serializes");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!((body["temperature"].as_f64().expect("temperature") - 0.1).abs() < 1e-6);
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(body["messages"][1]["content"], serde_json::Value::Null);
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["function"]["name"],
            "echo"
        );
        assert_eq!(body["messages"][2]["tool_call_id"], "c1");
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tool_choice"], "auto");
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let config = ProviderConfig::preset("groq");
        let err = |status: u16, body: &str| {
            status_error(
                "groq",
                &config,
                "m",
                StatusCode::from_u16(status).expect("status"),
                Some("2"),
                body,
            )
        };
        assert!(
            matches!(err(401, ""), ProviderError::Auth { ref env_var, .. } if env_var == "GROQ_API_KEY")
        );
        assert!(matches!(err(404, ""), ProviderError::ModelNotFound { .. }));
        assert!(
            matches!(err(429, ""), ProviderError::ProviderRateLimited { retry_after: Some(d), .. } if d.as_secs() == 2)
        );
        assert!(matches!(
            err(503, ""),
            ProviderError::Server { status: 503, .. }
        ));
        let bad = err(
            400,
            r#"{"error": {"message": "messages must not be empty"}}"#,
        );
        assert!(
            bad.to_string().contains("messages must not be empty"),
            "{bad}"
        );
        assert!(!bad.retryable());
        assert!(matches!(bad, ProviderError::InvalidRequest { .. }));
        // Too long for the model, as each provider says it.
        for body in [
            r#"{"error": {"message": "Please reduce the length of the messages or completion.", "type": "invalid_request_error", "code": "context_length_exceeded"}}"#,
            r#"{"error": {"code": 400, "message": "This endpoint's maximum context length is 128000 tokens. However, you requested about 130000 tokens."}}"#,
            r#"{"error": {"code": 400, "type": "exceed_context_size_error", "message": "the request exceeds the available context size, try increasing it"}}"#,
        ] {
            let overflow = err(400, body);
            assert!(
                matches!(overflow, ProviderError::ContextLength { .. }),
                "{body}: {overflow:?}"
            );
            assert_eq!(overflow.code(), crate::wire::ErrorCode::ContextTooLarge);
            assert!(!overflow.retryable() && !overflow.allows_fallback());
        }
        // A rate limit by size (Groq's 413 "Request too large … tokens per minute") is not.
        let tpm = err(
            413,
            r#"{"error": {"message": "Request too large for model on tokens per minute (TPM)", "code": "rate_limit_exceeded"}}"#,
        );
        assert!(!matches!(tpm, ProviderError::ContextLength { .. }));
    }
}
