//! The OpenAI door's rendering of a turn's events: `chat.completion` objects, and
//! `chat.completion.chunk` server-sent events ending with `data: [DONE]`. Tool activity rides
//! in an extra `mcp_platform` field that the official SDKs ignore.

use serde::Serialize;
use serde_json::{Value, json};

use crate::chat::{Completion, ToolStatus, TurnEvent};
use crate::llm::{FinishReason, Usage};
use crate::wire::WireError;

/// What every object of one response shares.
pub struct Envelope {
    pub id: String,
    pub created: u64,
    pub model: String,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mcp_platform: Option<Value>,
}

#[derive(Serialize)]
struct ChunkChoice {
    index: u32,
    delta: Value,
    finish_reason: Option<&'static str>,
    logprobs: Option<()>,
}

pub fn finish_reason(reason: Option<&FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "length",
        // Only when the client's own tools were called (the server's are answered already).
        Some(FinishReason::ToolCalls) => "tool_calls",
        Some(FinishReason::ContentFilter) => "content_filter",
        // Tool calls were the server's own and have been answered: the answer is whole.
        _ => "stop",
    }
}

/// Tool activity and notices, for clients that want them (`mcp_platform` extension).
pub fn activity(event: &TurnEvent) -> Option<Value> {
    match event {
        TurnEvent::ToolCallStarted {
            call_id,
            tool,
            server,
            arguments,
        } => Some(
            json!({"event": "tool_call_started", "call_id": call_id, "tool": tool,
                         "server": server, "arguments": arguments}),
        ),
        TurnEvent::ToolCallFinished {
            call_id,
            tool,
            status,
            summary,
            took,
        } => Some(
            json!({"event": "tool_call_finished", "call_id": call_id, "tool": tool,
                         "ok": *status == ToolStatus::Ok, "status": status.as_str(),
                         "summary": summary,
                         "duration_ms": (took.as_secs_f64() * 10_000.0).round() / 10.0}),
        ),
        TurnEvent::Notice { code, message } => {
            Some(json!({"event": "notice", "code": code.as_str(), "message": message}))
        }
        TurnEvent::ToolCallSampled {
            call_id,
            tool,
            model,
            usage,
        } => Some(
            json!({"event": "tool_call_sampling", "call_id": call_id, "tool": tool,
                         "model": model, "usage": usage}),
        ),
        TurnEvent::ToolCallProgress {
            call_id,
            tool,
            progress,
            total,
            message,
        } => Some(
            json!({"event": "tool_call_progress", "call_id": call_id, "tool": tool,
                         "progress": progress, "total": total, "message": message}),
        ),
        _ => None,
    }
}

impl Envelope {
    fn chunk(&self, delta: Value, finish: Option<&'static str>, extra: Option<Value>) -> String {
        Self::sse(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: None,
            }],
            usage: None,
            mcp_platform: extra,
        })
    }

    fn sse(value: &impl Serialize) -> String {
        format!(
            "data: {}\n\n",
            serde_json::to_string(value).unwrap_or_default()
        )
    }

    /// The first chunk: the assistant's role.
    pub fn opening(&self) -> String {
        self.chunk(json!({"role": "assistant", "content": ""}), None, None)
    }

    /// The server-sent events of one turn event (none for events clients need not see).
    pub fn stream_event(&self, event: TurnEvent, include_usage: bool) -> String {
        if let Some(extra) = activity(&event) {
            return self.chunk(json!({}), None, Some(extra));
        }
        match event {
            TurnEvent::TextDelta(text) => self.chunk(json!({"content": text}), None, None),
            TurnEvent::Completed(done) => self.closing(&done, include_usage),
            TurnEvent::Failed(error) => Self::sse(&error_body(&error)),
            _ => String::new(),
        }
    }

    fn closing(&self, done: &Completion, include_usage: bool) -> String {
        let mut out = String::new();
        if !done.client_tool_calls.is_empty() {
            let calls = client_calls(done, true);
            out.push_str(&self.chunk(json!({"tool_calls": calls}), None, None));
        }
        out += &self.chunk(
            json!({}),
            Some(finish_reason(done.finish_reason.as_ref())),
            None,
        );
        if include_usage {
            out.push_str(&Self::sse(&Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(done.usage.unwrap_or_default()),
                mcp_platform: None,
            }));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }

    /// A whole `chat.completion`.
    pub fn completion(&self, text: &str, done: &Completion, activity: &[Value]) -> Value {
        let mut body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message(text, done),
                "finish_reason": finish_reason(done.finish_reason.as_ref()),
                "logprobs": null,
            }],
            "usage": done.usage.unwrap_or_default(),
        });
        if !activity.is_empty() {
            body["mcp_platform"] = json!({"activity": activity});
        }
        body
    }
}

/// The assistant message of a whole answer: text, and the client's tool calls if any.
fn message(text: &str, done: &Completion) -> Value {
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !done.client_tool_calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = client_calls(done, false);
    }
    message
}

/// `tool_calls` in OpenAI's form (streamed deltas carry an `index`).
fn client_calls(done: &Completion, indexed: bool) -> Value {
    done.client_tool_calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let mut value = json!({"id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": call.arguments}});
            if indexed {
                value["index"] = json!(i);
            }
            value
        })
        .collect()
}

/// OpenAI's error object, `{"error": {"message", "type", "code", "param"}}`.
pub fn error_body(error: &WireError) -> Value {
    json!({"error": {
        "message": error.message,
        "type": error.code.category(),
        "code": error.code.as_str(),
        "param": null,
    }})
}
