//! What the server writes: `{"request_id", "status", "chunk", "seq"?}`, one constructor per
//! kind of frame.

use serde::Serialize;
use serde_json::{Map, Value};

use super::inbound::FrameError;
use crate::wire::{ErrorCode, WireError};

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
