//! One chat turn: store the user message (acknowledged only after commit), build the context,
//! stream the provider's answer as frames, store the answer once with its usage, complete.
//! A cancelled or failed turn stores what was answered so far, marked so.

use std::sync::atomic::Ordering;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ChatPayload, ChatService, ServerFrame};
use crate::llm::{ChatEvent, ChatMessage, ChatRequest, MessageRole, ProviderError, Usage};
use crate::store::{
    Conversation, ConversationId, MessageStatus, NewMessage, Role, StoreError, StoredMessage,
};

/// Messages of history sent to the model at most, until the token budget lands.
const HISTORY_LIMIT: usize = 50;

/// Why a turn ended without `complete`: becomes its error frame.
struct TurnError {
    code: &'static str,
    message: String,
    retryable: bool,
}

impl From<StoreError> for TurnError {
    fn from(error: StoreError) -> Self {
        let message = if error.code() == "internal" {
            tracing::error!(%error, "turn failed in the store");
            "internal error; the server log has the details".to_string()
        } else {
            error.to_string()
        };
        Self {
            code: error.code(),
            message,
            retryable: error.retryable(),
        }
    }
}

impl From<ProviderError> for TurnError {
    fn from(error: ProviderError) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            retryable: error.retryable(),
        }
    }
}

fn cancelled() -> TurnError {
    TurnError {
        code: "cancelled",
        message: "the turn was cancelled".into(),
        retryable: false,
    }
}

/// Where a turn's frames go; a closed outbox (the client left) is not an error.
pub type Outbox = mpsc::Sender<ServerFrame>;

impl ChatService {
    /// Runs a turn to its end, sending its frames to `out`. `cancel` stops the provider
    /// request; what was answered is still stored.
    #[tracing::instrument(skip_all, fields(request_id = %request_id))]
    pub async fn run_turn(
        &self,
        request_id: &str,
        payload: ChatPayload,
        out: &Outbox,
        cancel: &CancellationToken,
    ) {
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match self.turn(request_id, payload, out, cancel, started).await {
            Ok(()) => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                self.stats.latency.record(started.elapsed());
            }
            Err(error) => {
                let counter = if error.code == "cancelled" {
                    &self.stats.cancelled
                } else {
                    &self.stats.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let frame = ServerFrame::error(
                    Some(request_id.into()),
                    error.code,
                    error.message,
                    error.retryable,
                );
                let _ = out.send(frame).await;
            }
        }
    }

    async fn turn(
        &self,
        request_id: &str,
        payload: ChatPayload,
        out: &Outbox,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<(), TurnError> {
        let repo = self.store.conversations();
        let conversation = self.conversation(payload.conversation_id.clone()).await?;
        let user = NewMessage::new(Role::User, payload.text.clone()).with_request_id(request_id);
        let user = repo.append(&conversation.id, vec![user]).await.map_err(|error| match error {
            StoreError::DuplicateRequest { .. } => TurnError {
                code: "duplicate_request",
                message: format!(
                    "request `{request_id}` was already sent in this conversation; replaying its stored \
                     answer is not implemented yet, so use a new request_id"
                ),
                retryable: false,
            },
            other => other.into(),
        })?;
        let user_id = user.first().map(|m| m.id);
        let meta = json!({"conversation_id": conversation.id, "user_message_id": user_id});
        let _ = out.send(ServerFrame::processing(request_id, meta)).await;

        let history = repo.history(&conversation.id).await?;
        let streaming = payload
            .streaming
            .unwrap_or(self.config.chat.service.streaming.enabled);
        let request = ChatRequest {
            messages: self.context(&history),
            stream: streaming,
            model: payload.model.clone(),
            ..ChatRequest::default()
        };
        let opened = tokio::select! {
            opened = self.providers.chat(payload.provider.as_deref(), request) => opened?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let (provider, stream) = opened;
        let answer = self
            .relay(request_id, stream, streaming, out, cancel, started)
            .await;
        let status = match &answer.end {
            Ok(()) => MessageStatus::Complete,
            Err(e) if e.code == "cancelled" => MessageStatus::Cancelled,
            Err(_) => MessageStatus::Failed,
        };
        let mut assistant =
            NewMessage::new(Role::Assistant, answer.text.clone()).with_request_id(request_id);
        assistant.status = status;
        assistant.model = Some(
            payload
                .model
                .clone()
                .unwrap_or_else(|| provider.model().to_string()),
        );
        assistant.usage = answer.usage.map(|u| json!(u));
        // Stored once, complete or not: a cancelled or broken answer keeps what was said.
        let stored = if answer.end.is_ok() || !answer.text.is_empty() {
            repo.append(&conversation.id, vec![assistant]).await?
        } else {
            Vec::new()
        };
        answer.end?;
        if !streaming {
            let _ = out.send(ServerFrame::text(request_id, answer.text)).await;
        }
        let metadata = json!({
            "conversation_id": conversation.id,
            "usage": answer.usage,
            "provider": provider.name(),
            "message_ids": {"user": user_id, "assistant": stored.first().map(|m| m.id)},
        });
        let _ = out.send(ServerFrame::complete(request_id, metadata)).await;
        Ok(())
    }

    async fn conversation(&self, id: Option<String>) -> Result<Conversation, TurnError> {
        let repo = self.store.conversations();
        match id {
            Some(id) => Ok(repo.get(&ConversationId::try_from(id)?).await?),
            None => Ok(repo.create(None).await?),
        }
    }

    /// The system prompt and the latest history, oldest first. Interim: a message count,
    /// until the token budget (tiktoken) lands.
    fn context(&self, history: &[StoredMessage]) -> Vec<ChatMessage> {
        let system = &self.config.chat.service.system_prompt;
        let with_content: Vec<&StoredMessage> =
            history.iter().filter(|m| !m.content.is_empty()).collect();
        let recent = with_content[with_content.len().saturating_sub(HISTORY_LIMIT)..].iter();
        let mut messages: Vec<ChatMessage> = Vec::with_capacity(HISTORY_LIMIT + 1);
        if !system.trim().is_empty() {
            messages.push(ChatMessage::new(MessageRole::System, system.clone()));
        }
        messages.extend(recent.filter_map(|m| {
            let role = match m.role {
                Role::User => MessageRole::User,
                Role::Assistant => MessageRole::Assistant,
                Role::System => MessageRole::System,
                // Tool results come with the MCP host; none are stored yet.
                Role::Tool => return None,
            };
            Some(ChatMessage::new(role, m.content.clone()))
        }));
        messages
    }

    /// Forwards the provider's stream as frames until it ends, fails or is cancelled.
    async fn relay(
        &self,
        request_id: &str,
        mut stream: crate::llm::ChatStream,
        streaming: bool,
        out: &Outbox,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Answer {
        let mut answer = Answer {
            text: String::new(),
            usage: None,
            end: Ok(()),
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = cancel.cancelled() => {
                    answer.end = Err(cancelled());
                    return answer;
                }
            };
            match item {
                None => return answer,
                Some(Ok(ChatEvent::Text(text))) => {
                    if answer.text.is_empty() {
                        self.stats.ttft.record(started.elapsed());
                    }
                    answer.text.push_str(&text);
                    if streaming {
                        let _ = out.send(ServerFrame::text(request_id, text)).await;
                    }
                }
                Some(Ok(ChatEvent::Usage(usage))) => answer.usage = Some(usage),
                // No tools are offered until the MCP host lands; a finish needs no frame.
                Some(Ok(ChatEvent::ToolCall(_) | ChatEvent::Finish(_))) => {}
                Some(Err(error)) => {
                    answer.end = Err(error.into());
                    return answer;
                }
            }
        }
    }
}

struct Answer {
    text: String,
    usage: Option<Usage>,
    end: Result<(), TurnError>,
}
