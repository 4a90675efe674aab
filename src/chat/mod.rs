//! Chat: the engine every door calls. A turn from the user's message to the stored answer
//! (context from the store, a provider's answer, tool rounds, the answer stored), told as
//! [`TurnEvent`]s to the door's [`TurnSink`]; and the typed operations on what a caller owns
//! (conversations, history, search, memories, compaction) or may use (models, MCP resources
//! and prompts). Every operation takes the [`Caller`](crate::auth::Caller) and checks it once;
//! none knows which door asked, nor its format.

mod answer;
mod attachments;
mod compaction;
mod context;
mod conversations;
mod elicitation;
mod events;
mod exchange;
mod in_flight;
mod loop_guard;
mod memories;
mod models;
mod offers;
mod questions;
mod sampling;
mod tools;
mod turn;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::config::Config;
use crate::llm::Providers;
use crate::mcp::McpHost;
use crate::memory::MemoryService;
use crate::stats::{Histogram, LatencySummary};
use crate::store::Store;
pub use answer::{Asks, Sampling};
pub use events::{Completion, ToolStatus, TurnEvent, TurnSink};
pub use exchange::{Exchange, StoreIn};
use in_flight::InFlight;
pub use questions::{Answer, AnswerError, Decision};
pub use turn::TurnRequest;

/// Runs turns; shared by every socket.
pub struct ChatService {
    store: Store,
    providers: Arc<Providers>,
    mcp: Arc<McpHost>,
    memory: Arc<MemoryService>,
    config: Arc<Config>,
    stats: TurnStats,
    in_flight: InFlight,
    /// Tool calls waiting for the user's `approve`.
    approvals: questions::Approvals,
    /// Servers' questions for the user (`elicitation/create`), waiting for `elicit`.
    elicitations: Arc<questions::Questions<crate::mcp::ElicitAnswer>>,
}

#[derive(Default)]
struct TurnStats {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// Answered from storage: the request id was already answered.
    replayed: AtomicU64,
    /// MCP tool calls run for turns.
    tool_calls: AtomicU64,
    /// From the chat frame to the first text chunk sent.
    ttft: Histogram,
    /// From the chat frame to `complete`.
    latency: Histogram,
}

/// The turn part of `/health` `websocket_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct TurnSnapshot {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub replayed: u64,
    pub tool_calls: u64,
    /// Tool calls waiting for the user's approval now.
    pub approvals_waiting: usize,
    /// Servers' questions waiting for the user's answer now.
    pub elicitations_waiting: usize,
    pub ttft_ms: LatencySummary,
    pub turn_latency_ms: LatencySummary,
}

impl ChatService {
    pub fn new(
        store: Store,
        providers: Arc<Providers>,
        mcp: Arc<McpHost>,
        memory: Arc<MemoryService>,
        config: Arc<Config>,
    ) -> Self {
        Self {
            store,
            providers,
            mcp,
            memory,
            config,
            stats: TurnStats::default(),
            in_flight: InFlight::default(),
            approvals: questions::Approvals::default(),
            elicitations: Arc::new(questions::Questions::new("elic_")),
        }
    }

    /// The client's answer to an `elicitation` of its turn `request_id`.
    pub fn answer_elicitation(
        &self,
        caller: &crate::auth::Caller,
        request_id: &str,
        elicitation_id: &str,
        answer: crate::mcp::ElicitAnswer,
    ) -> Result<(), AnswerError> {
        self.elicitations
            .answer(caller.id().0, request_id, elicitation_id, answer)
    }

    /// The client's answer to an `approval_required` of its turn `request_id`.
    pub fn answer_approval(
        &self,
        caller: &crate::auth::Caller,
        request_id: &str,
        approval_id: &str,
        answer: Answer,
    ) -> Result<(), AnswerError> {
        self.approvals
            .questions
            .answer(caller.id().0, request_id, approval_id, answer)
    }

    /// Grows with every turn started or ended and every tool call, from either door: a
    /// measure of activity.
    pub fn turn_events(&self) -> u64 {
        let stats = &self.stats;
        [
            &stats.started,
            &stats.completed,
            &stats.failed,
            &stats.cancelled,
            &stats.tool_calls,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .fold(0, u64::wrapping_add)
    }

    pub fn snapshot(&self) -> TurnSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TurnSnapshot {
            started: load(&self.stats.started),
            completed: load(&self.stats.completed),
            failed: load(&self.stats.failed),
            cancelled: load(&self.stats.cancelled),
            replayed: load(&self.stats.replayed),
            tool_calls: load(&self.stats.tool_calls),
            approvals_waiting: self.approvals.questions.waiting(),
            elicitations_waiting: self.elicitations.waiting(),
            ttft_ms: self.stats.ttft.summary(),
            turn_latency_ms: self.stats.latency.summary(),
        }
    }
}
