//! What a turn tells its door, typed: the engine emits [`TurnEvent`]s to a [`TurnSink`]; each
//! door (the WebSocket, the OpenAI-compatible API) renders them in its own wire format. A
//! replayed answer produces the same events as a live one.
//!
//! Order: `Accepted` first (the user message is committed), then any number of `TextDelta`,
//! `ToolCallStarted`, `ApprovalRequired`, `Elicitation`, `QuestionClosed`, `ToolCallProgress`,
//! `ToolCallSampled`, `ToolCallFinished` and `Notice`, and last exactly one of `Completed` or
//! `Failed`. A turn refused before its message is stored emits `Failed` alone.

use std::time::Duration;

use crate::llm::{FinishReason, ToolCall, Usage};
use crate::store::ConversationId;
use crate::wire::WireError;

#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    Accepted {
        conversation: ConversationId,
        user_message_id: i64,
        /// The request was answered before: what follows comes from storage.
        replayed: bool,
    },
    /// A piece of the answer, in order.
    TextDelta(String),
    ToolCallStarted {
        call_id: String,
        tool: String,
        /// The MCP server that has the tool (`memory` for the built-in tools); `None` for a
        /// tool no server has (the model made it up).
        server: Option<String>,
        /// As the model wrote them (JSON, or not).
        arguments: String,
    },
    /// A call waits for the user's `approve` (its server's policy is `ask`).
    ApprovalRequired {
        approval_id: String,
        call_id: String,
        tool: String,
        server: String,
        /// As the model wrote them.
        arguments: String,
    },
    /// A running call's progress, as its server reports it.
    ToolCallProgress {
        call_id: String,
        tool: String,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    /// A running call's server asked our model (`sampling/createMessage`), and it answered.
    ToolCallSampled {
        call_id: String,
        tool: String,
        model: String,
        usage: Option<Usage>,
    },
    /// A server asks the user (`elicitation/create`); the client answers with `elicit`.
    Elicitation {
        elicitation_id: String,
        call_id: String,
        server: String,
        message: String,
        /// The requested schema: an object of primitive properties.
        schema: serde_json::Value,
    },
    ToolCallFinished {
        call_id: String,
        tool: String,
        status: ToolStatus,
        /// A one-line summary of the result.
        summary: String,
        took: Duration,
    },
    Notice {
        code: NoticeCode,
        message: String,
    },
    /// A question of the turn (an approval or an elicitation) is no longer open: no answer
    /// came in time. A client closes its dialog.
    QuestionClosed {
        question_id: String,
        message: String,
    },
    Completed(Box<Completion>),
    Failed(WireError),
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    Ok,
    /// The tool failed, timed out, or could not be called; the model reads why.
    Error,
    /// Never sent to its server: the policy (`deny`), the user, or no answer in time.
    Denied,
}

impl ToolStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Denied => "denied",
        }
    }
}

/// Something to show that is neither answer text nor a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeCode {
    /// `chat.service.max_tool_hops` rounds were used: the model answers without tools.
    ToolLimitReached,
    /// The tool loop went in circles (`chat.service.loop_guard`): the model answers without
    /// tools.
    ToolLoopStopped,
    /// The provider said the prompt was too long: the history before the message is
    /// summarised and the turn goes on.
    ContextCompacted,
    /// The provider broke off mid-answer and the answer starts again on a fallback provider:
    /// the client discards what it showed of it.
    AnswerRestarted,
}

impl NoticeCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ToolLimitReached => "tool_limit_reached",
            Self::ToolLoopStopped => "tool_loop_stopped",
            Self::ContextCompacted => "context_compacted",
            Self::AnswerRestarted => "answer_restarted",
        }
    }
}

/// A turn's end, its answer stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `None` for an exchange that is not stored.
    pub conversation: Option<ConversationId>,
    pub user_message_id: Option<i64>,
    /// Why the model stopped its last reply, when it said.
    pub finish_reason: Option<FinishReason>,
    /// `None` when nothing was stored (an answer without text).
    pub assistant_message_id: Option<i64>,
    /// Summed over the turn's model calls, when the provider reported it.
    pub usage: Option<Usage>,
    /// The provider that answered; `None` for a replay (not stored).
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Model ↔ tools rounds; `None` for a replay.
    pub tool_rounds: Option<u32>,
    pub tool_limit_reached: bool,
    /// Calls of tools the client defined, for the client to run (finish reason `tool_calls`).
    pub client_tool_calls: Vec<ToolCall>,
    pub replayed: bool,
}

/// Where a turn's events go. Emitting never waits: a door buffers (bounded) or drops.
pub trait TurnSink: Send + Sync {
    fn emit(&self, event: TurnEvent);
}
