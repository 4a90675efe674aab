//! The answer of a turn: ask the model (offering the MCP tools), relay its text as `chunk`
//! frames, run the tools it calls (`tools.rs`) and ask again with their results, until it
//! answers in text. After `max_tool_hops` rounds it is asked once more without tools, with a
//! notice. The final answer is stored once, with the usage summed over the rounds; a cancelled
//! or broken answer keeps what was said, marked so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ChatService;
use super::events::{Completion, NoticeCode, TurnEvent, TurnSink};
use super::loop_guard::{LOOP_STOPPED_NOTICE, LoopGuard};
use crate::auth::Caller;
use crate::llm::{
    ChatEvent, ChatMessage, ChatRequest, ChatStream, FinishReason, MessageRole, Provider,
    ProviderError, ToolCall, ToolSpec, Usage,
};
use crate::store::{ConversationId, MessageStatus, NewMessage, Role, StoredMessage};
use crate::tokens::Encoding;
use crate::wire::{ErrorCode, WireError};

/// Told to the model when the tool rounds are used up.
const HOP_LIMIT_NOTICE: &str = "The tool-call limit for this request is reached. Answer now \
    with what you have, without calling tools, and say what you could not check.";

/// What one turn's answer needs.
pub struct Turn<'a> {
    pub caller: &'a Caller,
    pub request_id: &'a str,
    /// Where the turn is stored; `None` for an exchange whose history came with the request
    /// (nothing is read or written).
    pub record: Option<Record<'a>>,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub sampling: Sampling,
    /// Tools the client defined (the OpenAI door): offered with the server's, and a call to
    /// one ends the turn with the call returned to the client.
    pub client_tools: &'a [ToolSpec],
    /// `false`: no tool is offered at all (`tool_choice: "none"`).
    pub tools_allowed: bool,
    /// What a tool whose policy is `ask` does in this turn.
    pub asks: Asks,
    pub streaming: bool,
    pub encoding: Encoding,
    pub sink: &'a dyn TurnSink,
    pub cancel: &'a CancellationToken,
    pub started: Instant,
    pub first_token: AtomicBool,
}

/// Who answers a tool's `ask` policy in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asks {
    /// The user, through an `approval_required` frame and `approve` (the WebSocket).
    User,
    /// Nobody can: denied (the OpenAI door by default).
    Deny,
    /// The request allowed them in advance (`X-Approve-Tools: allow` on the OpenAI door).
    Allow,
}

/// The stored conversation of a turn and its committed user message.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    pub conversation: &'a ConversationId,
    pub user: &'a StoredMessage,
}

/// Sampling a request sets for itself (unset: the provider's configured values).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
}

/// One model reply.
pub struct Reply {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    /// Why the model stopped, when it said.
    pub finish: Option<FinishReason>,
    pub end: Result<(), WireError>,
    /// The provider's own error when it broke off (for a failover).
    pub fault: Option<ProviderError>,
}

impl ChatService {
    pub(super) async fn answer(
        &self,
        turn: &Turn<'_>,
        mut messages: Vec<ChatMessage>,
    ) -> Result<(), WireError> {
        let mut tools = if turn.tools_allowed {
            self.offered_tools()
        } else {
            Vec::new()
        };
        if turn.tools_allowed {
            tools.extend(turn.client_tools.iter().cloned());
        }
        let max_hops = self.config.chat.service.max_tool_hops;
        let mut usage: Option<Usage> = None;
        let mut hops = 0;
        let mut guard = LoopGuard::new(self.config.chat.service.loop_guard);
        let mut stopped = false;
        let mut compacted = false;
        // The turn's provider and model; after a failover, the fallback's.
        let mut route = (
            turn.provider.map(String::from),
            turn.model.map(String::from),
        );
        // Providers that broke off mid-answer in this turn.
        let mut broke: Vec<String> = Vec::new();
        loop {
            let offer_tools = !tools.is_empty() && hops < max_hops && !stopped;
            let opened = self
                .ask_model(turn, &route, (&mut messages, &mut tools), offer_tools)
                .await;
            let (provider, stream) = match opened {
                Some(Ok(opened)) => opened,
                // Too long for the model: compacted once, then asked again.
                Some(Err(overflow @ ProviderError::ContextLength { .. })) if !compacted => {
                    compacted = true;
                    messages = self.compact(turn, messages, &overflow).await?;
                    continue;
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Err(WireError::cancelled()),
            };
            let model = route.1.as_deref().unwrap_or(provider.model()).to_string();
            let mut reply = self.relay(turn, stream).await;
            if reply.usage.is_none() {
                let sent = (
                    messages.as_slice(),
                    if offer_tools { tools.as_slice() } else { &[] },
                );
                let estimate =
                    super::usage::estimate(turn.encoding, sent, &reply.text, &reply.tool_calls)
                        .await;
                provider.count_tokens(&estimate);
                reply.usage = Some(estimate);
            }
            if let Some(spent) = &reply.usage {
                turn.caller
                    .spent(spent.prompt_tokens, spent.completion_tokens);
            }
            usage = add_usage(usage, reply.usage);
            if let Some(next) = self.failover(turn, &provider, &reply, &mut broke) {
                route = (Some(next.name().to_string()), None);
                continue;
            }
            if offer_tools && reply.end.is_ok() && Self::calls_client(turn, &reply) {
                return self
                    .return_client_calls(turn, reply, &provider, &model, usage, hops)
                    .await;
            }
            if offer_tools && reply.end.is_ok() && !reply.tool_calls.is_empty() {
                let (results, statuses) = self.tool_round(turn, &reply, &model).await?;
                messages.push(assistant_with_calls(&reply));
                messages.extend(results);
                hops += 1;
                let verdict = guard.record(&reply.tool_calls, &statuses);
                stopped = Self::after_round(turn, verdict, (hops, max_hops), &mut messages);
                continue;
            }
            if !broke.is_empty() {
                broke.push(provider.name().to_string());
            }
            let stored = self
                .store_final(turn, &reply, &model, usage, &broke)
                .await?;
            reply.end?;
            if !turn.streaming {
                turn.sink.emit(TurnEvent::TextDelta(reply.text));
            }
            turn.sink.emit(TurnEvent::Completed(Box::new(Completion {
                conversation: turn.record.map(|r| r.conversation.clone()),
                user_message_id: turn.record.map(|r| r.user.id),
                finish_reason: reply.finish.clone(),
                assistant_message_id: stored.map(|m| m.id),
                usage,
                provider: Some(provider.name().to_string()),
                model: Some(model),
                tool_rounds: Some(hops),
                tool_limit_reached: hops >= max_hops && max_hops > 0 && !tools.is_empty(),
                client_tool_calls: Vec::new(),
                replayed: false,
            })));
            return Ok(());
        }
    }

    /// Stores the final answer, complete or not: a cancelled or broken answer keeps what was
    /// said. An answer that failed before any text stores nothing. `providers`: after a
    /// failover, every provider that took part, in order (recorded with the usage).
    async fn store_final(
        &self,
        turn: &Turn<'_>,
        reply: &Reply,
        model: &str,
        usage: Option<Usage>,
        providers: &[String],
    ) -> Result<Option<StoredMessage>, WireError> {
        let Some(record) = turn.record else {
            return Ok(None);
        };
        if reply.end.is_err() && reply.text.is_empty() {
            return Ok(None);
        }
        let mut assistant =
            NewMessage::new(Role::Assistant, reply.text.clone()).with_request_id(turn.request_id);
        assistant.status = match &reply.end {
            Ok(()) => MessageStatus::Complete,
            Err(e) if e.code == ErrorCode::Cancelled => MessageStatus::Cancelled,
            Err(_) => MessageStatus::Failed,
        };
        assistant.model = Some(model.to_string());
        assistant.usage = usage.map(|u| {
            let mut usage = json!(u);
            if !providers.is_empty() {
                usage["providers"] = json!(providers);
            }
            usage
        });
        assistant.token_count = turn.encoding.count_long(&reply.text).await;
        let mut stored = self
            .store
            .conversations_of(turn.caller.owner())
            .append(record.conversation, vec![assistant])
            .await?;
        Ok(stored.pop())
    }

    fn calls_client(turn: &Turn<'_>, reply: &Reply) -> bool {
        reply
            .tool_calls
            .iter()
            .any(|call| is_client_tool(turn, &call.name))
    }

    /// A reply that calls the client's tools ends the turn with those calls (finish reason
    /// `tool_calls`); the server's calls of the same reply run first (their results do not
    /// reach the client's history, so the model may call them again next time).
    async fn return_client_calls(
        &self,
        turn: &Turn<'_>,
        reply: Reply,
        provider: &crate::llm::Provider,
        model: &str,
        usage: Option<Usage>,
        hops: u32,
    ) -> Result<(), WireError> {
        let (client, server): (Vec<ToolCall>, Vec<ToolCall>) = reply
            .tool_calls
            .iter()
            .cloned()
            .partition(|call| is_client_tool(turn, &call.name));
        if !server.is_empty() {
            let server_reply = Reply {
                text: String::new(),
                tool_calls: server,
                usage: None,
                finish: None,
                end: Ok(()),
                fault: None,
            };
            self.tool_round(turn, &server_reply, model).await?;
        }
        let stored = if reply.text.is_empty() {
            None
        } else {
            self.store_final(turn, &reply, model, usage, &[]).await?
        };
        if !turn.streaming && !reply.text.is_empty() {
            turn.sink.emit(TurnEvent::TextDelta(reply.text));
        }
        turn.sink.emit(TurnEvent::Completed(Box::new(Completion {
            conversation: turn.record.map(|r| r.conversation.clone()),
            user_message_id: turn.record.map(|r| r.user.id),
            finish_reason: Some(FinishReason::ToolCalls),
            assistant_message_id: stored.map(|m| m.id),
            usage,
            provider: Some(provider.name().to_string()),
            model: Some(model.to_string()),
            tool_rounds: Some(hops),
            tool_limit_reached: false,
            client_tool_calls: client,
            replayed: false,
        })));
        Ok(())
    }

    /// A reply its provider broke off (stream cut, garbage or an error mid-stream, silence
    /// past `read_timeout`) goes to the next provider of `llm.fallback`, once per turn: the
    /// reply starts again there, and an `answer_restarted` notice tells the client to discard
    /// what it showed of it. `None`: no failover (the reply stands as it ended).
    fn failover(
        &self,
        turn: &Turn<'_>,
        provider: &crate::llm::Provider,
        reply: &Reply,
        broke: &mut Vec<String>,
    ) -> Option<Arc<crate::llm::Provider>> {
        let fault = reply.fault.as_ref().filter(|fault| fault.is_outage())?;
        if !broke.is_empty() || turn.cancel.is_cancelled() {
            return None;
        }
        let next = self
            .providers
            .failover_for(&[provider.name().to_string()])?;
        tracing::warn!(from = %provider.name(), to = %next.name(), error = %fault,
            "provider broke off mid-answer; the answer starts again on the fallback");
        broke.push(provider.name().to_string());
        let shown = if reply.text.is_empty() {
            ""
        } else {
            "; discard the text shown so far"
        };
        turn.sink.emit(TurnEvent::Notice {
            code: NoticeCode::AnswerRestarted,
            message: format!(
                "provider `{}` broke off mid-answer ({}): the answer starts again on `{}`{shown}",
                provider.name(),
                fault.kind(),
                next.name()
            ),
        });
        Some(next)
    }

    /// After a tool round: the loop guard's `verdict` stops the tool loop, else the hop
    /// limit ends it once reached; each tells the model (and the client) so. Whether the loop
    /// guard stopped it.
    fn after_round(
        turn: &Turn<'_>,
        verdict: Option<String>,
        (hops, max_hops): (u32, u32),
        messages: &mut Vec<ChatMessage>,
    ) -> bool {
        if let Some(reason) = verdict {
            turn.sink.emit(TurnEvent::Notice {
                code: NoticeCode::ToolLoopStopped,
                message: reason,
            });
            messages.push(ChatMessage::new(MessageRole::System, LOOP_STOPPED_NOTICE));
            return true;
        }
        if hops >= max_hops {
            Self::hop_limit_notice(turn, max_hops);
            messages.push(ChatMessage::new(MessageRole::System, HOP_LIMIT_NOTICE));
        }
        false
    }

    fn hop_limit_notice(turn: &Turn<'_>, max_hops: u32) {
        let message = format!(
            "the tool-call limit ({max_hops} rounds) was reached; the model answers without tools"
        );
        turn.sink.emit(TurnEvent::Notice {
            code: NoticeCode::ToolLimitReached,
            message,
        });
    }

    /// Asks the model on the turn's `route` (provider, model) with the turn's messages and,
    /// when `offer_tools`, its tools: lent to the request and handed back after it rather
    /// than copied for every hop. `None` once the turn is cancelled.
    async fn ask_model(
        &self,
        turn: &Turn<'_>,
        route: &(Option<String>, Option<String>),
        (messages, tools): (&mut Vec<ChatMessage>, &mut Vec<ToolSpec>),
        offer_tools: bool,
    ) -> Option<Result<(Arc<Provider>, ChatStream), ProviderError>> {
        let request = ChatRequest {
            messages: std::mem::take(messages),
            tools: if offer_tools {
                std::mem::take(tools)
            } else {
                Vec::new()
            },
            stream: turn.streaming,
            model: route.1.clone(),
            temperature: turn.sampling.temperature,
            max_tokens: turn.sampling.max_tokens,
            top_p: turn.sampling.top_p,
            ..ChatRequest::default()
        };
        let opened = tokio::select! {
            opened = self.providers.chat(route.0.as_deref(), &request) => Some(opened),
            () = turn.cancel.cancelled() => None,
        };
        *messages = request.messages;
        if offer_tools {
            *tools = request.tools;
        }
        opened
    }

    /// Forwards the provider's stream as frames until it ends, fails or is cancelled.
    async fn relay(&self, turn: &Turn<'_>, mut stream: ChatStream) -> Reply {
        let mut reply = Reply {
            text: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish: None,
            end: Ok(()),
            fault: None,
        };
        // One registration for the whole stream, not one per chunk.
        let cancelled = turn.cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let item = tokio::select! {
                biased;
                () = &mut cancelled => {
                    reply.end = Err(WireError::cancelled());
                    return reply;
                }
                item = stream.next() => item,
            };
            match item {
                None => return reply,
                Some(Ok(ChatEvent::Text(text))) => {
                    if !turn.first_token.swap(true, Ordering::Relaxed) {
                        self.stats.ttft.record(turn.started.elapsed());
                    }
                    reply.text.push_str(&text);
                    if turn.streaming {
                        turn.sink.emit(TurnEvent::TextDelta(text));
                    }
                }
                Some(Ok(ChatEvent::ToolCall(call))) => reply.tool_calls.push(call),
                Some(Ok(ChatEvent::Usage(usage))) => reply.usage = Some(usage),
                Some(Ok(ChatEvent::Finish(reason))) => reply.finish = Some(reason),
                Some(Err(error)) => {
                    reply.end = Err(error.clone().into());
                    reply.fault = Some(error);
                    return reply;
                }
            }
        }
    }
}

fn is_client_tool(turn: &Turn<'_>, name: &str) -> bool {
    turn.client_tools.iter().any(|tool| tool.name == name)
}

fn assistant_with_calls(reply: &Reply) -> ChatMessage {
    let mut message = ChatMessage::new(MessageRole::Assistant, reply.text.clone());
    if reply.text.is_empty() {
        message.content = None;
    }
    message.tool_calls.clone_from(&reply.tool_calls);
    message
}

fn add_usage(total: Option<Usage>, more: Option<Usage>) -> Option<Usage> {
    match (total, more) {
        (Some(a), Some(b)) => Some(Usage {
            prompt_tokens: a.prompt_tokens + b.prompt_tokens,
            completion_tokens: a.completion_tokens + b.completion_tokens,
            total_tokens: a.total_tokens + b.total_tokens,
            estimated: a.estimated || b.estimated,
        }),
        (a, b) => a.or(b),
    }
}
