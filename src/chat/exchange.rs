//! An exchange: a turn whose history comes with the request (the OpenAI-compatible door) and
//! that nothing stores. The same engine as a chat turn: routing, quotas, limits, fallback,
//! server-side tools and their rounds, the turn deadline, typed events to the door.

use std::sync::atomic::AtomicBool;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ChatService;
use super::answer::{Record, Sampling, Turn};
use super::events::{TurnEvent, TurnSink};
use crate::auth::Caller;
use crate::llm::{ChatMessage, MessageRole, ToolSpec};
use crate::store::{ConversationId, NewMessage, Role, StoredMessage};
use crate::tokens::Encoding;
use crate::wire::{ErrorCode, WireError};

/// What an exchange asks.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The conversation so far, as the client sends it (system messages included).
    pub messages: Vec<ChatMessage>,
    /// As the client names it (`PROVIDER/MODEL` or a model of the active provider).
    pub model: String,
    pub stream: bool,
    pub sampling: Sampling,
    pub store_in: StoreIn,
    /// Tools the client defines (OpenAI's `tools`); their calls are returned to it.
    pub client_tools: Vec<ToolSpec>,
    /// `false` for `tool_choice: "none"`: no tool is offered.
    pub tools_allowed: bool,
    /// What a tool whose policy is `ask` does: no one can be asked here.
    pub asks: super::Asks,
}

/// Whether an exchange is stored (its last user message and the answer), so that it appears in
/// history and search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreIn {
    Nothing,
    NewConversation,
    Conversation(String),
}

impl ChatService {
    /// Runs an exchange to its end, telling `sink` what happens (its last event is `Completed`
    /// or `Failed`). `cancel` stops it.
    pub async fn run_exchange(
        &self,
        caller: &Caller,
        id: &str,
        exchange: Exchange,
        sink: &dyn TurnSink,
        cancel: &CancellationToken,
    ) {
        self.drive(
            caller,
            (sink, cancel),
            ("request", ""),
            async |cancel, started| {
                self.exchange(caller, id, exchange, sink, cancel, started)
                    .await
            },
        )
        .await;
    }

    async fn exchange(
        &self,
        caller: &Caller,
        id: &str,
        exchange: Exchange,
        sink: &dyn TurnSink,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<(), WireError> {
        if let Some(clash) = exchange
            .client_tools
            .iter()
            .find(|tool| self.offered_tools().iter().any(|own| own.name == tool.name))
        {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "tools: `{}` is also a tool of this server (GET the catalogue in /health \
                     mcp_stats); rename yours",
                    clash.name
                ),
                false,
            ));
        }
        if exchange.messages.is_empty() {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "messages must hold at least one message",
                false,
            ));
        }
        // A model no provider offers, or a quota used up: no provider is called.
        let (provider, model) = self.providers.route(&exchange.model)?;
        let provider = provider.to_string();
        let _quota = caller.admit_turn()?;
        let encoding = Encoding::for_model(&model);
        encoding.load().await;
        let target = match &exchange.store_in {
            StoreIn::Nothing => None,
            StoreIn::NewConversation => Some(None),
            StoreIn::Conversation(id) => Some(Some(id.clone())),
        };
        let stored = match target {
            Some(target) => Some(
                self.store_exchange(caller, id, target, &exchange.messages, encoding)
                    .await?,
            ),
            None => None,
        };
        if let Some((conversation, user)) = &stored {
            sink.emit(TurnEvent::Accepted {
                conversation: conversation.clone(),
                user_message_id: user.id,
                replayed: false,
            });
        }
        let record = stored
            .as_ref()
            .map(|(conversation, user)| Record { conversation, user });
        let mut messages = exchange.messages;
        let system = &self.config.chat.service.system_prompt;
        if !system.is_empty() && !messages.iter().any(is_system) {
            messages.insert(0, ChatMessage::new(crate::llm::MessageRole::System, system));
        }
        let turn = Turn {
            caller,
            request_id: id,
            record,
            provider: Some(&provider),
            model: Some(&model),
            sampling: exchange.sampling,
            client_tools: &exchange.client_tools,
            tools_allowed: exchange.tools_allowed,
            asks: exchange.asks,
            streaming: exchange.stream,
            encoding,
            sink,
            cancel,
            started,
            first_token: AtomicBool::new(false),
        };
        self.answer(&turn, messages).await
    }
}

impl ChatService {
    /// Stores the exchange's last message, the user's, in the conversation `target` (a new
    /// one for `None`): the earlier messages are the client's copy of what is stored already.
    async fn store_exchange(
        &self,
        caller: &Caller,
        id: &str,
        target: Option<String>,
        messages: &[ChatMessage],
        encoding: Encoding,
    ) -> Result<(ConversationId, StoredMessage), WireError> {
        let text = match messages.last() {
            Some(last) if last.role == MessageRole::User => {
                last.content.clone().unwrap_or_default()
            }
            _ => {
                return Err(WireError::new(
                    ErrorCode::InvalidRequest,
                    "to store an exchange (X-Conversation-Id), its last message must be the user's",
                    false,
                ));
            }
        };
        let repo = self.store.conversations_of(caller.owner());
        let conversation = match target {
            Some(id) => ConversationId::try_from(id)?,
            None => repo.create(None).await?.id,
        };
        let mut user = NewMessage::new(Role::User, text).with_request_id(id);
        user.token_count = encoding.count(user.content.as_str());
        let stored = repo
            .append(&conversation, vec![user])
            .await?
            .pop()
            .ok_or_else(|| WireError::internal("the store returned no message for an append"))?;
        Ok((conversation, stored))
    }
}

fn is_system(message: &ChatMessage) -> bool {
    message.role == crate::llm::MessageRole::System
}
