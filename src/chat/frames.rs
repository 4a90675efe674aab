//! The WebSocket protocol's frames (docs/protocol.md). Inbound text is parsed in two steps,
//! so that every kind of bad input gets its own clear error: JSON at all, an object, an
//! `action`, a known action, then the action's typed fields.

use super::library::LibraryAction;
use crate::wire::{ErrorCode, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Chat {
        request_id: String,
        payload: ChatPayload,
    },
    Cancel {
        request_id: String,
    },
    Ping {
        request_id: Option<String>,
    },
    /// History search.
    Search {
        request_id: String,
        payload: SearchPayload,
    },
    /// `new_conversation`, `list_conversations`, `get_history`, `update_conversation`,
    /// `delete_conversation`.
    Conversations {
        request_id: String,
        action: ConversationAction,
    },
    /// `approve`: the user's decision on a tool call of the turn `request_id`.
    Approve {
        request_id: String,
        payload: ApprovePayload,
    },
    /// `elicit`: the user's answer to a server's question in the turn `request_id`.
    Elicit {
        request_id: String,
        payload: ElicitPayload,
    },
    /// `list_models`: the providers and the models each offers.
    Models {
        request_id: String,
    },
    /// `list_memories`, `delete_memory`: what the model stored with `memory_store`.
    Memories {
        request_id: String,
        action: MemoryAction,
    },
    /// `list_resources`, `read_resource`, `list_prompts`, `get_prompt`: what MCP servers offer
    /// besides tools.
    Library {
        request_id: String,
        action: LibraryAction,
    },
    /// `attach`: follow a turn of this key from another socket (or again), from `after_seq`.
    Attach {
        request_id: String,
        payload: AttachPayload,
    },
    /// `compact`: summarise a conversation's history into a stored summary.
    Compact {
        request_id: String,
        payload: super::compaction::CompactPayload,
    },
}

/// The conversation actions, with their typed payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationAction {
    New(NewConversation),
    List(ListConversations),
    History(GetHistory),
    Update(UpdateConversation),
    Delete(DeleteConversation),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayload {
    pub approval_id: String,
    pub decision: super::Decision,
    /// `"conversation"`: the same decision for this tool for the rest of the conversation.
    #[serde(default)]
    pub remember: Option<Remember>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElicitPayload {
    pub elicitation_id: String,
    pub action: ElicitAction,
    /// The answer, for `accept`: an object that fits the requested schema.
    #[serde(default)]
    pub content: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElicitAction {
    Accept,
    Decline,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Remember {
    Conversation,
}

/// The memory actions, with their typed payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryAction {
    List(ListMemories),
    Delete(DeleteMemory),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMemories {
    /// Newest first when absent; else the memories nearest the query, best first.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMemory {
    pub memory_id: i64,
}

/// Renames a conversation or sets its own system prompt; an absent field is kept, an empty
/// one cleared.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    pub conversation_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetHistory {
    pub conversation_id: String,
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous (newer) page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPayload {
    pub query: String,
    /// Defaults to 10; at most `memory.max_k`.
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteConversation {
    pub conversation_id: String,
}

/// `attach`: the turn's conversation, and the last `seq` the client has (0: none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachPayload {
    pub conversation_id: String,
    #[serde(default)]
    pub after_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatPayload {
    pub text: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Defaults to `chat.service.streaming.enabled`.
    #[serde(default)]
    pub streaming: Option<bool>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// MCP resources to attach: read from their servers, sent to the model with the text and
    /// stored with the message.
    #[serde(default)]
    pub attachments: Vec<super::attachments::AttachmentRef>,
}

/// Why a frame was refused: a stable code and a message, echoing the `request_id` if any.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub request_id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

const ACTIONS: &str = "chat, cancel, ping, new_conversation, list_conversations, get_history, \
                       update_conversation, delete_conversation, search, list_models, \
                       list_memories, delete_memory, approve, elicit, list_resources, \
                       read_resource, list_prompts, get_prompt, compact, attach";

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let refuse = |request_id: Option<String>, code, message: String| FrameError {
            request_id,
            code,
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| {
            refuse(
                None,
                ErrorCode::InvalidRequest,
                format!(
                    "the frame is not valid JSON: {}",
                    crate::wire::client_terms(&e.to_string())
                ),
            )
        })?;
        let Value::Object(object) = value else {
            return Err(refuse(
                None,
                ErrorCode::InvalidRequest,
                "a frame must be a JSON object".into(),
            ));
        };
        let request_id = match object.get("request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => Some(id.clone()),
            Some(_) => {
                return Err(refuse(
                    None,
                    ErrorCode::InvalidRequest,
                    "request_id must be a string of 1-256 characters".into(),
                ));
            }
        };
        let action = match object.get("action") {
            Some(Value::String(action)) => action.as_str(),
            Some(_) => {
                return Err(refuse(
                    request_id,
                    ErrorCode::InvalidRequest,
                    "action must be a string".into(),
                ));
            }
            None => {
                return Err(refuse(
                    request_id,
                    ErrorCode::InvalidRequest,
                    format!("the frame has no action (one of {ACTIONS})"),
                ));
            }
        };
        Self::for_action(action, request_id, &object)
    }

    /// The typed frame of a known `action`, its payload checked.
    fn for_action(
        action: &str,
        request_id: Option<String>,
        object: &Map<String, Value>,
    ) -> Result<Self, FrameError> {
        let refuse = |request_id: Option<String>, code, message: String| FrameError {
            request_id,
            code,
            message,
        };
        let required = |id: Option<String>| {
            id.ok_or_else(|| {
                refuse(
                    None,
                    ErrorCode::InvalidRequest,
                    format!("`{action}` needs a request_id"),
                )
            })
        };
        match action {
            "chat" => {
                let payload = chat_payload(object)
                    .map_err(|m| refuse(request_id.clone(), ErrorCode::InvalidRequest, m))?;
                Ok(Self::Chat {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "cancel" => Ok(Self::Cancel {
                request_id: required(request_id)?,
            }),
            "ping" => Ok(Self::Ping { request_id }),
            "search" => {
                let payload = typed(action, object, request_id.as_deref())?;
                Ok(Self::Search {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "approve" => {
                let payload = typed(action, object, request_id.as_deref())?;
                Ok(Self::Approve {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "elicit" => {
                let payload = typed(action, object, request_id.as_deref())?;
                Ok(Self::Elicit {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "attach" => {
                let payload = typed(action, object, request_id.as_deref())?;
                Ok(Self::Attach {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "compact" => {
                let payload = typed(action, object, request_id.as_deref())?;
                Ok(Self::Compact {
                    request_id: required(request_id)?,
                    payload,
                })
            }
            "list_models" => Ok(Self::Models {
                request_id: required(request_id)?,
            }),
            "list_memories" | "delete_memory" => {
                let action = memory_action(action, object)
                    .map_err(|m| refuse(request_id.clone(), ErrorCode::InvalidRequest, m))?;
                Ok(Self::Memories {
                    request_id: required(request_id)?,
                    action,
                })
            }
            "list_resources" | "read_resource" | "list_prompts" | "get_prompt" => {
                let action = library_action(action, object)
                    .map_err(|m| refuse(request_id.clone(), ErrorCode::InvalidRequest, m))?;
                Ok(Self::Library {
                    request_id: required(request_id)?,
                    action,
                })
            }
            "new_conversation"
            | "list_conversations"
            | "get_history"
            | "update_conversation"
            | "delete_conversation" => {
                let action = conversation_action(action, object)
                    .map_err(|m| refuse(request_id.clone(), ErrorCode::InvalidRequest, m))?;
                Ok(Self::Conversations {
                    request_id: required(request_id)?,
                    action,
                })
            }
            other => Err(refuse(
                request_id,
                ErrorCode::UnknownAction,
                format!("unknown action `{other}` (one of {ACTIONS})"),
            )),
        }
    }
}

fn conversation_action(
    action: &str,
    object: &Map<String, Value>,
) -> Result<ConversationAction, String> {
    Ok(match action {
        "new_conversation" => ConversationAction::New(optional_payload(object)?),
        "list_conversations" => ConversationAction::List(optional_payload(object)?),
        "get_history" => ConversationAction::History(required_payload(action, object)?),
        "update_conversation" => ConversationAction::Update(required_payload(action, object)?),
        _ => ConversationAction::Delete(required_payload(action, object)?),
    })
}

fn memory_action(action: &str, object: &Map<String, Value>) -> Result<MemoryAction, String> {
    Ok(match action {
        "list_memories" => MemoryAction::List(optional_payload(object)?),
        _ => MemoryAction::Delete(required_payload(action, object)?),
    })
}

fn library_action(action: &str, object: &Map<String, Value>) -> Result<LibraryAction, String> {
    Ok(match action {
        "list_resources" => LibraryAction::ListResources(optional_payload(object)?),
        "list_prompts" => LibraryAction::ListPrompts(optional_payload(object)?),
        "read_resource" => LibraryAction::ReadResource(required_payload(action, object)?),
        _ => LibraryAction::GetPrompt(required_payload(action, object)?),
    })
}

fn optional_payload<T: DeserializeOwned + Default>(
    object: &Map<String, Value>,
) -> Result<T, String> {
    match object.get("payload") {
        None | Some(Value::Null) => Ok(T::default()),
        Some(payload) => T::deserialize(payload).map_err(|e| {
            format!(
                "invalid payload: {}",
                crate::wire::client_terms(&e.to_string())
            )
        }),
    }
}

/// What the payload of an action that needs one must hold, for the error when it is missing.
/// The payload `action` requires, typed; refused with the frame's request id.
fn typed<T: DeserializeOwned>(
    action: &str,
    object: &Map<String, Value>,
    request_id: Option<&str>,
) -> Result<T, FrameError> {
    required_payload(action, object).map_err(|message| FrameError {
        request_id: request_id.map(String::from),
        code: ErrorCode::InvalidRequest,
        message,
    })
}

fn required_fields(action: &str) -> &'static str {
    match action {
        "search" => "query",
        "approve" => "approval_id and decision",
        "elicit" => "elicitation_id and action",
        "delete_memory" => "memory_id",
        "read_resource" => "uri",
        "get_prompt" => "name",
        _ => "conversation_id",
    }
}

fn required_payload<T: DeserializeOwned>(
    action: &str,
    object: &Map<String, Value>,
) -> Result<T, String> {
    let payload = object.get("payload").ok_or_else(|| {
        format!(
            "`{action}` needs a payload with {}",
            required_fields(action)
        )
    })?;
    T::deserialize(payload).map_err(|e| {
        format!(
            "invalid payload: {}",
            crate::wire::client_terms(&e.to_string())
        )
    })
}

fn chat_payload(object: &Map<String, Value>) -> Result<ChatPayload, String> {
    let payload = object
        .get("payload")
        .cloned()
        .ok_or("`chat` needs a payload with text")?;
    let payload: ChatPayload = serde_json::from_value(payload).map_err(|e| {
        format!(
            "invalid payload: {}",
            crate::wire::client_terms(&e.to_string())
        )
    })?;
    if payload.text.trim().is_empty() {
        return Err("payload.text is empty".into());
    }
    super::attachments::check_refs(&payload.attachments)?;
    Ok(payload)
}

/// A server frame: `{"request_id", "status", "chunk"}`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFrame {
    pub request_id: Option<String>,
    pub status: &'static str,
    pub chunk: Chunk,
    /// The frame's place in its turn (1, 2, 3 …); `None` for frames of no turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Chunk {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Seconds after which a retry may succeed (`quota_exceeded`, `rate_limited`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ServerFrame {
    pub fn processing(request_id: &str, metadata: Value) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "processing",
            seq: None,
            chunk: Chunk {
                metadata: Some(metadata),
                ..Chunk::default()
            },
        }
    }

    pub fn text(request_id: &str, data: String) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "chunk",
            seq: None,
            chunk: Chunk {
                kind: Some("text"),
                data: Some(data),
                metadata: Some(Value::Object(Map::new())),
                ..Chunk::default()
            },
        }
    }

    pub fn complete(request_id: &str, metadata: Value) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "complete",
            seq: None,
            chunk: Chunk {
                metadata: Some(metadata),
                ..Chunk::default()
            },
        }
    }

    /// The answer to a conversation action: `complete`, its kind in `type`, its data in
    /// `metadata`.
    pub fn result(request_id: &str, kind: &'static str, metadata: Value) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "complete",
            seq: None,
            chunk: Chunk {
                kind: Some(kind),
                metadata: Some(metadata),
                ..Chunk::default()
            },
        }
    }

    /// A tool call starting or finished: `processing`, type `tool_execution`.
    pub fn tool_execution(request_id: &str, data: String, metadata: Value) -> Self {
        Self::processing_kind(request_id, "tool_execution", data, metadata)
    }

    /// A question to the user in a turn: `approval_required`.
    pub fn question(request_id: &str, kind: &'static str, metadata: Value) -> Self {
        Self::processing_kind(request_id, kind, String::new(), metadata)
    }

    fn processing_kind(
        request_id: &str,
        kind: &'static str,
        data: String,
        metadata: Value,
    ) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "processing",
            seq: None,
            chunk: Chunk {
                kind: Some(kind),
                data: Some(data),
                metadata: Some(metadata),
                ..Chunk::default()
            },
        }
    }

    /// Something the client should show that is neither text nor a tool call.
    pub fn notice(request_id: &str, code: &'static str, message: String) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "processing",
            seq: None,
            chunk: Chunk {
                kind: Some("notice"),
                data: Some(message),
                metadata: Some(serde_json::json!({"code": code})),
                ..Chunk::default()
            },
        }
    }

    /// A notice about one of the turn's questions (`approval_id` or `elicitation_id`):
    /// `open` says whether it still waits for an answer.
    pub fn question_notice(
        request_id: &str,
        code: &'static str,
        question_id: &str,
        open: bool,
        message: String,
    ) -> Self {
        Self {
            request_id: Some(request_id.into()),
            status: "processing",
            seq: None,
            chunk: Chunk {
                kind: Some("notice"),
                data: Some(message),
                metadata: Some(serde_json::json!({
                    "code": code, "question_id": question_id, "open": open,
                })),
                ..Chunk::default()
            },
        }
    }

    pub fn pong(request_id: Option<String>) -> Self {
        Self {
            request_id,
            status: "pong",
            seq: None,
            chunk: Chunk::default(),
        }
    }

    pub fn error(
        request_id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
        retryable: bool,
    ) -> Self {
        Self {
            request_id,
            status: "error",
            seq: None,
            chunk: Chunk {
                error: Some(message.into()),
                code: Some(code.as_str()),
                retryable: Some(retryable),
                ..Chunk::default()
            },
        }
    }

    /// An error frame that says when a retry may succeed.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.chunk.retry_after = seconds;
        self
    }

    /// A request's failure, as its last frame.
    pub fn failed(request_id: Option<String>, error: &WireError) -> Self {
        Self::error(
            request_id,
            error.code,
            error.message.clone(),
            error.retryable,
        )
        .with_retry_after(error.retry_after)
    }

    pub fn refused(error: FrameError) -> Self {
        Self::error(error.request_id, error.code, error.message, false)
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"status\":\"error\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        ClientFrame::parse(text).expect_err("refused").code
    }

    #[test]
    fn a_chat_frame_parses_with_its_payload() {
        let frame = ClientFrame::parse(
            r#"{"action":"chat","request_id":"r1","payload":{"text":"hi","streaming":false}}"#,
        );
        let Ok(ClientFrame::Chat {
            request_id,
            payload,
        }) = frame
        else {
            panic!("{frame:?}")
        };
        assert_eq!(
            (
                request_id.as_str(),
                payload.text.as_str(),
                payload.streaming
            ),
            ("r1", "hi", Some(false))
        );
    }

    #[test]
    fn every_kind_of_bad_frame_has_a_code() {
        assert_eq!(code_of("{nope"), ErrorCode::InvalidRequest);
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidRequest);
        assert_eq!(code_of(r#"{"request_id":"r"}"#), ErrorCode::InvalidRequest);
        assert_eq!(
            code_of(r#"{"action":"dance","request_id":"r"}"#),
            ErrorCode::UnknownAction
        );
        assert_eq!(code_of(r#"{"action":7}"#), ErrorCode::InvalidRequest);
        assert_eq!(
            code_of(r#"{"action":"chat","payload":{"text":"hi"}}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"action":"chat","request_id":"r","payload":{"text":"  "}}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code_of(r#"{"action":"chat","request_id":"r","payload":{"text":5}}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(code_of(r#"{"action":"cancel"}"#), ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_refusal_echoes_the_request_id_when_there_is_one() {
        let error =
            ClientFrame::parse(r#"{"action":"dance","request_id":"r9"}"#).expect_err("refused");
        assert_eq!(error.request_id.as_deref(), Some("r9"));
        let frame: Value =
            serde_json::from_str(&ServerFrame::refused(error).to_json()).expect("json");
        assert_eq!(frame["status"], "error");
        assert_eq!(frame["request_id"], "r9");
        assert_eq!(frame["chunk"]["retryable"], false);
    }
}
