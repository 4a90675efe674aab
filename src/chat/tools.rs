//! A tool round: the model's tool calls of one reply run in parallel through the MCP host,
//! each shown to the client as a `tool_execution` frame when it starts and when it ends
//! (ok / error, duration, a short summary). The assistant's calls and their results are
//! stored together in one transaction, so a resumed conversation replays them to the provider
//! as a whole. A cancelled turn cancels its running calls; what they returned is stored.

use std::sync::atomic::Ordering;

use futures::future::join_all;
use serde_json::json;

use super::ChatService;
use super::answer::{Asks, Reply, Turn};
use super::elicitation::TurnCall;
use super::events::{ToolStatus, TurnEvent};
use super::questions::{Decision, Scope};
use crate::config::Approval;
use crate::llm::ToolSpec;
use crate::llm::text_tools;
use crate::llm::{ChatMessage, MessageRole, ToolCall};
use crate::mcp::ToolOutcome;
use crate::memory::tools as memory_tools;
use crate::store::{NewMessage, Role};
use crate::wire::WireError;

impl ChatService {
    /// The tools offered to the model: the built-in memory tools (when on), then the MCP
    /// catalogue (whose names never collide with them: the host reserves them).
    pub(super) fn offered_tools(&self) -> Vec<ToolSpec> {
        let mut specs = if self.memory.config().tools {
            memory_tools::specs(self.memory.config().max_k)
        } else {
            Vec::new()
        };
        specs.extend(self.mcp.catalogue().specs());
        specs
    }

    /// The server that has the tool `name`: `memory` for the built-in tools.
    fn server_of(&self, name: &str) -> Option<String> {
        if self.memory.config().tools && memory_tools::NAMES.contains(&name) {
            return Some("memory".into());
        }
        self.mcp
            .catalogue()
            .get(name)
            .map(|tool| tool.server.clone())
    }

    /// One call, to the built-in tool or the MCP server that has it, once its approval
    /// policy lets it run.
    async fn call_tool(&self, turn: &Turn<'_>, call: &ToolCall) -> ToolOutcome {
        if call.name == text_tools::MALFORMED_CALL {
            let message = text_tools::malformed_message(&call.arguments);
            return ToolOutcome::failed(message, std::time::Duration::ZERO);
        }
        if !(self.memory.config().tools && memory_tools::NAMES.contains(&call.name.as_str())) {
            let handler = TurnCall::new(self, turn, &call.id, &call.name);
            // The server and tool are decided once: a catalogue that changes while the user
            // decides never sends an approved call elsewhere.
            let Some((server, tool, policy)) = self.mcp.approval(&call.name) else {
                return self
                    .mcp
                    .call_with(&call.name, &call.arguments, turn.cancel, &handler)
                    .await;
            };
            if let Err(denied) = self.approved(turn, call, &server, &tool, policy).await {
                return denied;
            }
            return self
                .mcp
                .call_on(&server, &tool, &call.arguments, turn.cancel, &handler)
                .await;
        }
        let conversation = turn.record.map(|r| r.conversation.as_str());
        let started = std::time::Instant::now();
        tokio::select! {
            outcome = memory_tools::call(&self.memory, turn.caller, &call.name, &call.arguments, conversation) => outcome,
            () = turn.cancel.cancelled() => ToolOutcome::failed("the call was cancelled", started.elapsed()),
        }
    }

    /// Runs the calls of `reply`, stores them with their results, and returns the results
    /// as the messages the model reads next, with how each call ended.
    pub(super) async fn tool_round(
        &self,
        turn: &Turn<'_>,
        reply: &Reply,
        model: &str,
    ) -> Result<(Vec<ChatMessage>, Vec<ToolStatus>), WireError> {
        for call in &reply.tool_calls {
            turn.sink.emit(TurnEvent::ToolCallStarted {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                server: self.server_of(&call.name),
                arguments: call.arguments.clone(),
            });
        }
        // Past the cap a call is not run: its result says so, and the model reads it.
        let cap = self.config.chat.service.max_tool_calls_per_reply;
        let outcomes = join_all(
            reply
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, call)| async move {
                    if i < cap {
                        self.call_tool(turn, call).await
                    } else {
                        ToolOutcome::failed(
                            format!(
                                "not run: at most {cap} tool calls per reply \
                         (chat.service.max_tool_calls_per_reply); call fewer at once"
                            ),
                            std::time::Duration::ZERO,
                        )
                    }
                }),
        )
        .await;
        self.stats
            .tool_calls
            .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
        let statuses: Vec<ToolStatus> = outcomes
            .iter()
            .map(|outcome| {
                if outcome.denied {
                    ToolStatus::Denied
                } else if outcome.ok {
                    ToolStatus::Ok
                } else {
                    ToolStatus::Error
                }
            })
            .collect();
        for ((call, outcome), status) in reply.tool_calls.iter().zip(&outcomes).zip(&statuses) {
            turn.sink.emit(TurnEvent::ToolCallFinished {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                status: *status,
                summary: outcome.summary(),
                took: outcome.took,
            });
        }
        self.store_round(turn, reply, &outcomes, model).await?;
        if turn.cancel.is_cancelled() {
            return Err(WireError::cancelled());
        }
        let messages = reply
            .tool_calls
            .iter()
            .zip(outcomes)
            .map(|(call, outcome)| {
                let mut message = ChatMessage::new(MessageRole::Tool, outcome.content);
                message.tool_call_id = Some(call.id.clone());
                message
            })
            .collect();
        Ok((messages, statuses))
    }

    async fn store_round(
        &self,
        turn: &Turn<'_>,
        reply: &Reply,
        outcomes: &[ToolOutcome],
        model: &str,
    ) -> Result<(), WireError> {
        let Some(record) = turn.record else {
            return Ok(());
        };
        let mut assistant =
            NewMessage::new(Role::Assistant, reply.text.clone()).with_request_id(turn.request_id);
        assistant.tool_calls = Some(json!(reply.tool_calls));
        assistant.model = Some(model.to_string());
        assistant.usage = reply.usage.map(|u| json!(u));
        assistant.token_count = turn.encoding.count(&reply.text)
            + turn
                .encoding
                .count(&serde_json::to_string(&reply.tool_calls).unwrap_or_default());
        let mut batch = vec![assistant];
        for (call, outcome) in reply.tool_calls.iter().zip(outcomes) {
            let mut result = NewMessage::new(Role::Tool, outcome.content.clone())
                .with_request_id(turn.request_id);
            result.tool_call_id = Some(call.id.clone());
            result.token_count = turn.encoding.count(&outcome.content);
            batch.push(result);
        }
        self.store
            .conversations_of(turn.caller.owner())
            .append(record.conversation, batch)
            .await?;
        Ok(())
    }
}

/// Approval (`approval: auto | ask | deny` of a server's entry).
impl ChatService {
    /// Whether `call` may run: at once (`auto`), never (`deny`), or as the user decides
    /// (`ask`). `Err` is the outcome the model reads instead of a result.
    async fn approved(
        &self,
        turn: &Turn<'_>,
        call: &ToolCall,
        server: &str,
        tool: &str,
        policy: Approval,
    ) -> Result<(), ToolOutcome> {
        match policy {
            Approval::Auto => Ok(()),
            Approval::Deny => Err(ToolOutcome::denied(format!(
                "calls of `{tool}` are not allowed here (the approval policy of server \
                 `{server}` is deny); it was not run, do not call it again"
            ))),
            Approval::Ask => {
                self.ask(turn, call, server.to_string(), tool.to_string())
                    .await
            }
        }
    }

    async fn ask(
        &self,
        turn: &Turn<'_>,
        call: &ToolCall,
        server: String,
        tool: String,
    ) -> Result<(), ToolOutcome> {
        let declined = |tool: &str| {
            ToolOutcome::denied(format!(
                "the user declined this call of `{tool}`; it was not run. Do not call it \
                 again unless the user asks for it"
            ))
        };
        match turn.asks {
            Asks::Allow => return Ok(()),
            Asks::Deny => {
                return Err(ToolOutcome::denied(format!(
                    "`{tool}` needs the user's approval, which this request cannot give; it \
                     was not run"
                )));
            }
            Asks::User => {}
        }
        let scope = turn.record.map(|r| Scope {
            conversation: r.conversation.as_str().to_string(),
            server: server.clone(),
            tool: tool.clone(),
        });
        if let Some(decision) = scope.as_ref().and_then(|s| self.approvals.remembered(s)) {
            return match decision {
                Decision::Allow => Ok(()),
                Decision::Deny => Err(declined(&tool)),
            };
        }
        let mut waiting = self
            .approvals
            .questions
            .open(turn.caller.id().0, turn.request_id, None);
        turn.sink.emit(TurnEvent::ApprovalRequired {
            approval_id: waiting.id.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            server,
            arguments: call.arguments.clone(),
        });
        let limit = self.config.mcp.approval_timeout;
        let answer = tokio::select! {
            answer = &mut waiting.answer => answer.ok(),
            () = tokio::time::sleep(limit) => {
                let message = format!(
                    "no one approved this call of `{tool}` within {}; it was not run",
                    humantime::format_duration(limit)
                );
                turn.sink.emit(TurnEvent::QuestionClosed {
                    question_id: waiting.id.clone(),
                    message: message.clone(),
                });
                return Err(ToolOutcome::denied(message));
            }
            () = turn.cancel.cancelled() => {
                return Err(ToolOutcome::denied("the turn was cancelled before the call was approved"));
            }
        };
        let Some(answer) = answer else {
            return Err(declined(&tool));
        };
        if answer.remember
            && let Some(scope) = scope
        {
            self.approvals.remember(scope, answer.decision);
        }
        match answer.decision {
            Decision::Allow => Ok(()),
            Decision::Deny => Err(declined(&tool)),
        }
    }
}
