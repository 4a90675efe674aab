//! The WebSocket door's rendering of a turn's events as frames (docs/protocol.md, "Server
//! frames"). This is the one place turn frames are made; live and replayed turns go through it
//! alike.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

use super::frames::ServerFrame;
use super::outbox::Outbox;
use crate::chat::{Completion, TurnEvent, TurnSink};
use crate::llm::Usage;
use crate::store::ConversationId;

/// The longest text one `chunk` frame carries, in bytes: a longer delta (a non-streamed
/// answer) goes as several, each its own `seq`, so that no frame is ever split on the way out
/// (JSON escaping grows text at most six times: well under the 1 MiB frame limit).
const MAX_CHUNK_TEXT: usize = 128 << 10;

/// A turn on a socket: its events become frames in the socket's outbox, numbered by `seq`.
pub struct SocketTurn {
    out: Outbox,
    request_id: String,
    /// The `seq` of the last frame sent.
    seq: AtomicU64,
}

impl SocketTurn {
    pub fn new(out: Outbox, request_id: String) -> Self {
        Self {
            out,
            request_id,
            seq: AtomicU64::new(0),
        }
    }

    fn send(&self, mut frame: ServerFrame) {
        frame.seq = Some(self.seq.fetch_add(1, Ordering::Relaxed) + 1);
        self.out.send(&frame);
    }
}

impl TurnSink for SocketTurn {
    fn emit(&self, event: TurnEvent) {
        frames(&self.request_id, event, |frame| self.send(frame));
    }
}

/// The frames of one event, in order, to `each`: one, or a long text delta in
/// [`MAX_CHUNK_TEXT`] pieces. (A callback rather than a `Vec`: one event per streamed chunk.)
pub(super) fn frames(request_id: &str, event: TurnEvent, mut each: impl FnMut(ServerFrame)) {
    match event {
        TurnEvent::TextDelta(text) if text.len() > MAX_CHUNK_TEXT => {
            for piece in pieces(&text, MAX_CHUNK_TEXT) {
                each(ServerFrame::text(request_id, piece.to_string()));
            }
        }
        event => each(frame(request_id, event)),
    }
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

/// `processing` metadata of the first frame.
#[derive(Serialize)]
struct Accepted<'a> {
    conversation_id: &'a ConversationId,
    user_message_id: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

/// `complete` metadata.
#[derive(Serialize)]
struct Complete<'a> {
    conversation_id: Option<&'a ConversationId>,
    usage: Option<Usage>,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    tool_rounds: Option<u32>,
    tool_limit_reached: bool,
    message_ids: MessageIds,
    replayed: bool,
}

#[derive(Serialize)]
struct MessageIds {
    user: Option<i64>,
    assistant: Option<i64>,
}

/// `tool_execution` metadata.
#[derive(Serialize)]
struct ToolCall<'a> {
    tool: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    call_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
}

pub fn frame(request_id: &str, event: TurnEvent) -> ServerFrame {
    match event {
        TurnEvent::Accepted {
            conversation,
            user_message_id,
            replayed,
        } => ServerFrame::processing(
            request_id,
            metadata(&Accepted {
                conversation_id: &conversation,
                user_message_id,
                replayed,
            }),
        ),
        TurnEvent::TextDelta(text) => ServerFrame::text(request_id, text),
        TurnEvent::ToolCallStarted {
            call_id,
            tool,
            server,
            arguments,
        } => {
            let parsed = serde_json::from_str(&arguments)
                .unwrap_or_else(|_| Value::String(arguments.clone()));
            let meta = metadata(&ToolCall {
                tool: &tool,
                server: server.as_deref(),
                call_id: &call_id,
                status: "running",
                arguments: Some(parsed),
                duration_ms: None,
            });
            ServerFrame::tool_execution(request_id, arguments, meta)
        }
        TurnEvent::ToolCallFinished {
            call_id,
            tool,
            status,
            summary,
            took,
        } => {
            let took_ms = took.as_secs_f64() * 1000.0;
            let meta = metadata(&ToolCall {
                tool: &tool,
                server: None,
                call_id: &call_id,
                status: status.as_str(),
                arguments: None,
                duration_ms: Some((took_ms * 10.0).round() / 10.0),
            });
            ServerFrame::tool_execution(request_id, summary, meta)
        }
        TurnEvent::Notice { code, message } => {
            ServerFrame::notice(request_id, code.as_str(), message)
        }
        TurnEvent::QuestionClosed {
            question_id,
            message,
        } => ServerFrame::question_notice(
            request_id,
            "question_closed",
            &question_id,
            false,
            message,
        ),
        TurnEvent::Completed(completion) => {
            ServerFrame::complete(request_id, metadata(&complete(&completion)))
        }
        TurnEvent::Failed(error) => ServerFrame::failed(Some(request_id.into()), &error),
        step @ (TurnEvent::ApprovalRequired { .. }
        | TurnEvent::ToolCallProgress { .. }
        | TurnEvent::ToolCallSampled { .. }
        | TurnEvent::Elicitation { .. }) => step_frame(request_id, step),
    }
}

/// A step inside a tool call: a question for the user, progress, a request to our model.
fn step_frame(request_id: &str, event: TurnEvent) -> ServerFrame {
    match event {
        TurnEvent::ApprovalRequired {
            approval_id,
            call_id,
            tool,
            server,
            arguments,
        } => {
            let parsed = serde_json::from_str(&arguments).unwrap_or(Value::String(arguments));
            let meta = serde_json::json!({
                "approval_id": approval_id, "server": server, "tool": tool,
                "call_id": call_id, "arguments": parsed,
            });
            ServerFrame::question(request_id, "approval_required", meta)
        }
        TurnEvent::ToolCallProgress {
            call_id,
            tool,
            progress,
            total,
            message,
        } => {
            let meta = serde_json::json!({
                "tool": tool, "call_id": call_id, "status": "progress",
                "progress": progress, "total": total, "message": message,
            });
            ServerFrame::tool_execution(request_id, message.clone().unwrap_or_default(), meta)
        }
        TurnEvent::ToolCallSampled {
            call_id,
            tool,
            model,
            usage,
        } => {
            let meta = serde_json::json!({
                "tool": tool, "call_id": call_id, "status": "sampling",
                "model": model, "usage": usage,
            });
            ServerFrame::tool_execution(request_id, format!("the server asked {model}"), meta)
        }
        TurnEvent::Elicitation {
            elicitation_id,
            call_id,
            server,
            message,
            schema,
        } => {
            let meta = serde_json::json!({
                "elicitation_id": elicitation_id, "server": server, "call_id": call_id,
                "message": message, "schema": schema,
            });
            ServerFrame::question(request_id, "elicitation", meta)
        }
        other => frame(request_id, other),
    }
}

fn complete(done: &Completion) -> Complete<'_> {
    Complete {
        conversation_id: done.conversation.as_ref(),
        usage: done.usage,
        provider: done.provider.as_deref(),
        model: done.model.as_deref(),
        tool_rounds: done.tool_rounds,
        tool_limit_reached: done.tool_limit_reached,
        message_ids: MessageIds {
            user: done.user_message_id,
            assistant: done.assistant_message_id,
        },
        replayed: done.replayed,
    }
}

/// Serializing these plain structs cannot fail.
fn metadata(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id() -> ConversationId {
        ConversationId::try_from("c1".to_string()).expect("id")
    }

    fn done(replayed: bool) -> TurnEvent {
        TurnEvent::Completed(Box::new(Completion {
            conversation: Some(id()),
            user_message_id: Some(1),
            finish_reason: None,
            assistant_message_id: Some(2),
            usage: None,
            provider: (!replayed).then(|| "mock".to_string()),
            model: Some("m".into()),
            tool_rounds: (!replayed).then_some(0),
            tool_limit_reached: false,
            client_tool_calls: Vec::new(),
            replayed,
        }))
    }

    #[test]
    fn long_text_is_cut_at_character_boundaries() {
        let text = "é".repeat(10);
        let cut = pieces(&text, 5);
        assert!(cut.iter().all(|p| p.len() <= 5 && !p.is_empty()), "{cut:?}");
        assert_eq!(cut.concat(), text);
        assert_eq!(pieces("", 5), Vec::<&str>::new());
    }

    #[test]
    fn live_and_replayed_completions_have_the_same_fields() {
        let keys = |event| {
            let frame = serde_json::to_value(frame("r", event)).expect("json");
            let mut keys: Vec<String> = frame["chunk"]["metadata"]
                .as_object()
                .expect("metadata")
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(done(false)), keys(done(true)));
        let live = serde_json::to_value(frame("r", done(false))).expect("json");
        assert_eq!(live["status"], "complete");
        assert_eq!(live["chunk"]["metadata"]["message_ids"]["assistant"], 2);
        assert_eq!(live["chunk"]["metadata"]["provider"], "mock");
    }

    #[test]
    fn tool_calls_render_as_tool_execution_frames() {
        let started = serde_json::to_value(frame(
            "r",
            TurnEvent::ToolCallStarted {
                call_id: "c".into(),
                tool: "t".into(),
                server: Some("s".into()),
                arguments: r#"{"x":1}"#.into(),
            },
        ))
        .expect("json");
        assert_eq!(started["chunk"]["type"], "tool_execution");
        assert_eq!(started["chunk"]["metadata"]["status"], "running");
        assert_eq!(started["chunk"]["metadata"]["arguments"]["x"], 1);
        let finished = serde_json::to_value(frame(
            "r",
            TurnEvent::ToolCallFinished {
                call_id: "c".into(),
                tool: "t".into(),
                status: crate::chat::ToolStatus::Error,
                summary: "boom".into(),
                took: Duration::from_micros(1234),
            },
        ))
        .expect("json");
        assert_eq!(finished["chunk"]["metadata"]["status"], "error");
        assert_eq!(finished["chunk"]["metadata"]["duration_ms"], 1.2);
        assert_eq!(finished["chunk"]["data"], "boom");
    }
}
