//! The WebSocket protocol's frames (docs/protocol.md). Inbound text is parsed in two steps,
//! so that every kind of bad input gets its own clear error: JSON at all, an object, an
//! `action`, a known action, then the action's typed fields.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::payloads::{
    ApprovePayload, AttachPayload, CompactPayload, ConversationAction, ElicitPayload,
    LibraryAction, MemoryAction, SearchPayload,
};
use crate::chat::TurnRequest;
use crate::wire::ErrorCode;

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Chat {
        request_id: String,
        payload: TurnRequest,
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
        payload: CompactPayload,
    },
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

fn chat_payload(object: &Map<String, Value>) -> Result<TurnRequest, String> {
    let payload = object
        .get("payload")
        .cloned()
        .ok_or("`chat` needs a payload with text")?;
    let payload: TurnRequest = serde_json::from_value(payload).map_err(|e| {
        format!(
            "invalid payload: {}",
            crate::wire::client_terms(&e.to_string())
        )
    })?;
    payload.check()?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::super::outbound::ServerFrame;
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
