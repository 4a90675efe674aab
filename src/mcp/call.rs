//! A tool call's outcome as the model and the client see it. Whatever happens — the tool
//! errs, times out, its server is down, the model's arguments are not JSON — the outcome is a
//! result the model reads and the turn goes on. Non-text content becomes a short placeholder:
//! `[image: image/png, 68 bytes base64]`, `[audio: …]`, `[resource: URI]` (an embedded text
//! resource gives its text), `[resource link: URI]`.

use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Map, Value};

/// Characters of a result shown in the client's `tool_execution` frame.
const SUMMARY_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub ok: bool,
    /// Not run: the approval policy or the user said no (`ok` is false too).
    pub denied: bool,
    /// What the model reads.
    pub content: String,
    pub took: Duration,
}

impl ToolOutcome {
    /// A call that failed, with the reason the model, the client and the history read:
    /// credentials in it are hidden as in the logs.
    pub fn failed(message: impl Into<String>, took: Duration) -> Self {
        let message = message.into();
        Self {
            ok: false,
            denied: false,
            content: crate::scrub::credentials(&message).into_owned(),
            took,
        }
    }

    /// A call that was never run, with the reason the model reads.
    pub fn denied(message: impl Into<String>) -> Self {
        Self {
            denied: true,
            ..Self::failed(message, Duration::ZERO)
        }
    }

    /// A one-line excerpt for the client.
    pub fn summary(&self) -> String {
        let line: String = self
            .content
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if line.chars().count() <= SUMMARY_CHARS {
            line
        } else {
            let cut: String = line.chars().take(SUMMARY_CHARS).collect();
            format!("{cut}…")
        }
    }
}

/// Why a request to MCP server `server` failed, in words for the model, the client and the
/// history: never the transport's own text (its URL may carry a secret, its type names mean
/// nothing to a user). The whole error is logged, scrubbed like every log line.
pub fn failure_reason(server: &str, error: &rmcp::ServiceError) -> String {
    use rmcp::ServiceError;
    tracing::warn!(server, %error, "MCP request failed");
    if error.auth_challenge().is_some() {
        return format!(
            "the MCP server `{server}` refused the credentials it was sent (`mcp-platform mcp \
             login {server}` signs in again)"
        );
    }
    match error {
        ServiceError::McpError(data) => format!(
            "the MCP server `{server}` answered with an error: {}",
            crate::scrub::text(&data.message, 300)
        ),
        ServiceError::TransportSend(_) | ServiceError::TransportClosed => {
            format!("the MCP server `{server}` could not be reached")
        }
        ServiceError::Timeout { .. } => format!("the MCP server `{server}` did not answer in time"),
        ServiceError::Cancelled { .. } => "the call was cancelled".into(),
        ServiceError::UnexpectedResponse => {
            format!("the MCP server `{server}` answered with something else than was asked")
        }
        _ => format!("the MCP server `{server}` could not complete the request"),
    }
}

/// The model's arguments as a JSON object (empty text means no arguments).
pub fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(arguments)) => Ok(arguments),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            kind_of(&other)
        )),
        Err(error) => Err(format!("the arguments are not valid JSON: {error}")),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders a result, cut to `max_bytes` with a note saying so.
pub fn render(result: &CallToolResult, max_bytes: usize, took: Duration) -> ToolOutcome {
    let mut parts: Vec<String> = result.content.iter().map(render_block).collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    ToolOutcome {
        ok: !result.is_error.unwrap_or(false),
        denied: false,
        content: truncate(parts.join("\n"), max_bytes),
        took,
    }
}

fn render_block(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!(
            "[image: {}, {} bytes base64]",
            image.mime_type,
            image.data.len()
        ),
        ContentBlock::Audio(audio) => format!(
            "[audio: {}, {} bytes base64]",
            audio.mime_type,
            audio.data.len()
        ),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            ResourceContents::BlobResourceContents { uri, .. } => format!("[resource: {uri}]"),
            _ => "[resource]".to_string(),
        },
        other => {
            let value = serde_json::to_value(other).unwrap_or_default();
            let uri = value.get("uri").and_then(Value::as_str).unwrap_or("?");
            format!("[resource link: {uri}]")
        }
    }
}

/// Cuts `text` to at most `max_bytes` (on a character boundary) and says how much was cut.
pub fn truncate(text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[truncated: the first {end} of {} bytes are shown]",
        &text[..end],
        text.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_render_as_text_with_placeholders_and_a_size_limit() {
        let result = CallToolResult::success(vec![
            ContentBlock::image("aGVsbG8=", "image/png"),
            ContentBlock::text("a red pixel"),
        ]);
        let outcome = render(&result, 1000, Duration::ZERO);
        assert!(outcome.ok);
        assert_eq!(
            outcome.content,
            "[image: image/png, 8 bytes base64]\na red pixel"
        );
        let failed = render(
            &CallToolResult::error(vec![ContentBlock::text("no such file")]),
            1000,
            Duration::ZERO,
        );
        assert!(!failed.ok);
        let cut = truncate("é".repeat(100), 51);
        assert!(cut.starts_with(&"é".repeat(25)) && cut.contains("first 50 of 200 bytes"));
    }

    #[test]
    fn arguments_must_be_a_json_object() {
        assert!(parse_arguments("").expect("empty").is_empty());
        assert_eq!(parse_arguments(r#"{"a": 1}"#).expect("object")["a"], 1);
        assert!(
            parse_arguments("[1]")
                .expect_err("array")
                .contains("an array")
        );
        assert!(
            parse_arguments("{\"a\":")
                .expect_err("cut")
                .contains("not valid JSON")
        );
    }

    #[test]
    fn the_summary_is_one_short_line() {
        let outcome = ToolOutcome::failed(
            format!("line one\nline two {}", "x".repeat(300)),
            Duration::ZERO,
        );
        let summary = outcome.summary();
        assert!(!summary.contains('\n') && summary.chars().count() <= SUMMARY_CHARS + 1);
    }
}
