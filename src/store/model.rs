//! The store's domain types: what callers pass in and get back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// A conversation id: generated as a UUID v7 (time-ordered), accepted from clients when it is
/// 1–128 characters of letters, digits, `-`, `_`, `.` or `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

impl ConversationId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ConversationId {
    type Error = StoreError;

    fn try_from(value: String) -> Result<Self, StoreError> {
        let valid = (1..=128).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if valid {
            Ok(Self(value))
        } else {
            Err(StoreError::InvalidInput(
                "conversation_id must be 1-128 characters of letters, digits, - _ . :".into(),
            ))
        }
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> Self {
        id.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub title: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: i64,
    pub token_count: i64,
    /// The name of the principal (API key, or `local`) it belongs to.
    pub owner: String,
    /// Its own system prompt; `None` uses `chat.service.system_prompt`.
    pub system_prompt: Option<String>,
}

impl Conversation {
    /// The `cursor` that lists the conversations after this one (less recently active).
    pub fn page_cursor(&self) -> String {
        format!("{}:{}", self.updated_at, self.id)
    }
}

/// Text forms shared by the enums stored as TEXT.
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(text: &str) -> Result<Self, StoreError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt(format!(
                        concat!("unknown ", stringify!($name), " `{}`"), other
                    ))),
                }
            }
        }
    };
}

text_enum!(Role { System = "system", User = "user", Assistant = "assistant", Tool = "tool" });
text_enum!(MessageStatus { Complete = "complete", Cancelled = "cancelled", Failed = "failed" });

/// Longest `request_id`, `tool_call_id` or `model`, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
const MAX_USAGE_LEN: usize = 4096;
const MAX_TOOL_CALLS_LEN: usize = 1 << 20;

/// Refuses a title longer than [`MAX_TITLE_CHARS`].
pub fn check_title(title: Option<&str>) -> Result<(), StoreError> {
    if title.is_some_and(|t| t.chars().count() > MAX_TITLE_CHARS) {
        return Err(StoreError::InvalidInput(format!(
            "a title has at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(())
}

/// A conversation's own system prompt is at most this many characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 32_768;

pub fn check_system_prompt(prompt: Option<&str>) -> Result<(), StoreError> {
    if prompt.is_some_and(|p| p.chars().count() > MAX_SYSTEM_PROMPT_CHARS) {
        return Err(StoreError::InvalidInput(format!(
            "a system prompt has at most {MAX_SYSTEM_PROMPT_CHARS} characters"
        )));
    }
    Ok(())
}

/// What `update` changes of a conversation: `None` keeps a field; an empty (blank) string
/// clears it (no title; the configured system prompt).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationUpdate {
    pub title: Option<String>,
    pub system_prompt: Option<String>,
}

/// A message to append. `seq`, `id` and `created_at` are assigned by the store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    #[serde(default)]
    pub tool_calls: Option<serde_json::Value>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default = "complete")]
    pub status: MessageStatus,
    #[serde(default)]
    pub token_count: u32,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<serde_json::Value>,
    /// MCP resources attached to a user message, as read when it was sent.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// An MCP resource attached to a user message: what was read when it was sent (its text, or
/// for binary contents its size), sent to the model with the message on every later turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub uri: String,
    /// The MCP server it was read from.
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The text as read (cut at the host's limit); `None` for binary contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Bytes of the contents as read (of the text, or of the decoded binary).
    #[serde(default)]
    pub bytes: usize,
    /// The text was longer and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Attachments of one message: at most this many, of at most `MAX_ATTACHMENTS_LEN` in all.
pub const MAX_ATTACHMENTS: usize = 16;
const MAX_ATTACHMENTS_LEN: usize = 4 << 20;

impl Attachment {
    /// How the model reads it: an `<attachment>` element after the message's text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let quoted = |text: &str| text.replace('&', "&amp;").replace('"', "&quot;");
        let _ = write!(
            out,
            "<attachment uri=\"{}\" server=\"{}\"",
            quoted(&self.uri),
            quoted(&self.server)
        );
        if let Some(mime) = &self.mime_type {
            let _ = write!(out, " mime_type=\"{}\"", quoted(mime));
        }
        match &self.text {
            Some(text) => {
                if self.truncated {
                    out.push_str(" truncated=\"true\"");
                }
                let _ = write!(out, ">\n{text}\n</attachment>");
            }
            None => {
                let _ = write!(
                    out,
                    " bytes=\"{}\">[binary contents, not shown]</attachment>",
                    self.bytes
                );
            }
        }
    }
}

/// A user message as the model reads it: its text, then its attachments.
pub fn with_attachments(text: &str, attachments: &[Attachment]) -> String {
    let mut out = String::from(text);
    for attachment in attachments {
        out.push_str("\n\n");
        attachment.render(&mut out);
    }
    out
}

/// Tool calls in the one shape stored and served: OpenAI's nested `[{"id", "type":
/// "function", "function": {"name", "arguments"}}]`. The flat `{"id", "name", "arguments"}`
/// that versions before 0.9 stored (and their exports hold) is converted; arguments given as a
/// JSON object become its text. Anything else is refused, naming the call at fault.
pub fn nested_tool_calls(calls: &serde_json::Value) -> Result<serde_json::Value, StoreError> {
    let Some(calls) = calls.as_array() else {
        return Err(StoreError::InvalidInput(
            "tool_calls must be an array".into(),
        ));
    };
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            nested_call(call).ok_or_else(|| {
                StoreError::InvalidInput(format!(
                    "tool_calls[{index}] must be {{\"id\", \"type\": \"function\", \
                     \"function\": {{\"name\", \"arguments\"}}}} with string values"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(serde_json::Value::Array)
}

fn nested_call(call: &serde_json::Value) -> Option<serde_json::Value> {
    let id = call.get("id")?.as_str().filter(|id| !id.is_empty())?;
    if call.get("type").is_some_and(|kind| kind != "function") {
        return None;
    }
    let function = call.get("function").unwrap_or(call);
    let name = function.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let arguments = match function.get("arguments") {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(object @ serde_json::Value::Object(_)) => object.to_string(),
        Some(_) => return None,
    };
    Some(serde_json::json!({
        "id": id, "type": "function", "function": {"name": name, "arguments": arguments}
    }))
}

fn complete() -> MessageStatus {
    MessageStatus::Complete
}

impl NewMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
            request_id: None,
            status: MessageStatus::Complete,
            token_count: 0,
            model: None,
            usage: None,
            attachments: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Puts `tool_calls` in the one shape stored (see [`nested_tool_calls`]); refuses calls
    /// that have neither shape.
    pub(super) fn normalize(&mut self) -> Result<(), StoreError> {
        if let Some(calls) = self.tool_calls.as_mut().filter(|c| c.is_array()) {
            *calls = nested_tool_calls(calls)?;
        }
        Ok(())
    }

    pub(super) fn check(&self) -> Result<(), StoreError> {
        let invalid = |m: &str| Err(StoreError::InvalidInput(m.into()));
        let too_long = |value: &Option<String>| {
            value
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > MAX_NAME_LEN)
        };
        if too_long(&self.request_id) || too_long(&self.tool_call_id) || too_long(&self.model) {
            return invalid("request_id, tool_call_id and model must be 1-256 bytes");
        }
        let json_len =
            |value: &Option<serde_json::Value>| value.as_ref().map_or(0, |v| v.to_string().len());
        if json_len(&self.usage) > MAX_USAGE_LEN {
            return invalid("usage must be a JSON value of at most 4096 bytes");
        }
        if json_len(&self.tool_calls) > MAX_TOOL_CALLS_LEN {
            return invalid("tool_calls must be a JSON array of at most 1 MiB");
        }
        self.check_attachments()?;
        match self.role {
            Role::Tool if self.tool_call_id.is_none() => {
                invalid("a tool message needs tool_call_id")
            }
            Role::Tool => Ok(()),
            _ if self.tool_call_id.is_some() => invalid("only tool messages carry tool_call_id"),
            Role::Assistant => match &self.tool_calls {
                Some(calls) if !calls.is_array() => invalid("tool_calls must be an array"),
                _ => Ok(()),
            },
            _ if self.tool_calls.is_some() => invalid("only assistant messages carry tool_calls"),
            _ => Ok(()),
        }
    }

    fn check_attachments(&self) -> Result<(), StoreError> {
        let invalid = |m: &str| Err(StoreError::InvalidInput(m.into()));
        if self.attachments.is_empty() {
            return Ok(());
        }
        if self.role != Role::User {
            return invalid("only user messages carry attachments");
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return invalid("a message carries at most 16 attachments");
        }
        let len: usize = self
            .attachments
            .iter()
            .map(|a| a.uri.len() + a.server.len() + a.text.as_ref().map_or(0, String::len))
            .sum();
        if len > MAX_ATTACHMENTS_LEN {
            return invalid("a message's attachments hold at most 4 MiB of text");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    pub id: i64,
    pub conversation_id: ConversationId,
    /// Position in the conversation: increasing, assigned at commit, no gaps from one append.
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub tool_calls: Option<serde_json::Value>,
    pub tool_call_id: Option<String>,
    pub request_id: Option<String>,
    pub status: MessageStatus,
    pub token_count: i64,
    pub model: Option<String>,
    pub usage: Option<serde_json::Value>,
    pub created_at: i64,
    /// MCP resources attached to a user message (see [`Attachment`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl StoredMessage {
    /// The content as the model reads it: with its attachments, if any.
    pub fn sent_content(&self) -> std::borrow::Cow<'_, str> {
        if self.attachments.is_empty() {
            std::borrow::Cow::Borrowed(&self.content)
        } else {
            std::borrow::Cow::Owned(with_attachments(&self.content, &self.attachments))
        }
    }
}

/// One page of a listing, with the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_reads_as_an_element_with_quoted_attributes() {
        let attachment = Attachment {
            uri: "note://a\"b&c".into(),
            server: "notes".into(),
            mime_type: None,
            text: Some("body".into()),
            bytes: 4,
            truncated: true,
        };
        assert_eq!(
            with_attachments("see", std::slice::from_ref(&attachment)),
            "see\n\n<attachment uri=\"note://a&quot;b&amp;c\" server=\"notes\" truncated=\"true\">\nbody\n</attachment>"
        );
        assert_eq!(with_attachments("see", &[]), "see");
    }
}
