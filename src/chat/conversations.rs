//! The operations on a caller's conversations, for every door: create, list (paged), one,
//! its history (paged), rename or set its system prompt, delete, append messages (imports),
//! and history search. Each takes the [`Caller`] and reaches the store only through the
//! caller's own scope ([`Store::conversations_of`](crate::store::Store::conversations_of)):
//! another's conversation is `not_found`, whatever the door.

use serde::Serialize;

use super::ChatService;
use crate::auth::Caller;
use crate::store::MessageHit;
use crate::store::{
    Conversation, ConversationId, ConversationUpdate, NewMessage, Page, StoredMessage,
};
use crate::tokens::Encoding;
use crate::wire::{ErrorCode, WireError};

/// Page size when the caller names none.
pub const DEFAULT_PAGE: u32 = 50;

/// Search hits when the caller names no `k`.
const DEFAULT_HITS: usize = 10;

/// Messages one append may carry.
pub const MAX_APPEND: usize = 1000;

/// A page of a conversation's history, oldest first, and the turns running in it now.
#[derive(Debug)]
pub struct History {
    pub conversation_id: ConversationId,
    pub page: Page<StoredMessage>,
    /// The request ids of its turns running now.
    pub in_progress: Vec<String>,
}

/// History search's answer: the stored messages nearest the query.
#[derive(Debug, Serialize)]
pub struct SearchResults {
    pub query: String,
    pub hits: Vec<MessageHit>,
}

impl ChatService {
    /// A new conversation. Only an admin may choose its id (imports): ids are global, and
    /// "already exists" would tell a user that another has a conversation under that name.
    pub async fn create_conversation(
        &self,
        caller: &Caller,
        title: Option<String>,
        id: Option<String>,
    ) -> Result<Conversation, WireError> {
        let repo = self.store.conversations_of(caller.owner());
        Ok(match id {
            Some(_) if !caller.is_admin() => {
                return Err(WireError::new(
                    ErrorCode::Forbidden,
                    "only an admin key may choose a conversation's id (imports); leave `id` out",
                    false,
                ));
            }
            Some(id) => {
                repo.create_with_id(ConversationId::try_from(id)?, title)
                    .await?
            }
            None => repo.create(title).await?,
        })
    }

    /// The caller's conversations, most recently active first (an admin's: everyone's).
    pub async fn list_conversations(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> Result<Page<Conversation>, WireError> {
        Ok(self
            .store
            .conversations_of(caller.owner())
            .list(limit.unwrap_or(DEFAULT_PAGE), cursor)
            .await?)
    }

    /// The request ids of the turns running now in the conversation `id`. A door asks only
    /// about conversations an operation gave it.
    pub fn turns_running_in(&self, id: &str) -> Vec<String> {
        self.in_flight.in_conversation(id)
    }

    pub async fn get_conversation(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<Conversation, WireError> {
        let id = ConversationId::try_from(id)?;
        Ok(self.store.conversations_of(caller.owner()).get(&id).await?)
    }

    /// A conversation with all its messages, oldest first.
    pub async fn whole_conversation(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<(Conversation, Vec<StoredMessage>), WireError> {
        let id = ConversationId::try_from(id)?;
        let repo = self.store.conversations_of(caller.owner());
        let conversation = repo.get(&id).await?;
        let messages = repo.history(&id).await?;
        Ok((conversation, messages))
    }

    /// The latest `limit` messages before `before` (a message's `seq`), oldest first.
    pub async fn history(
        &self,
        caller: &Caller,
        id: String,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<History, WireError> {
        let id = ConversationId::try_from(id)?;
        let page = self
            .store
            .conversations_of(caller.owner())
            .history_page(&id, before, limit.unwrap_or(DEFAULT_PAGE))
            .await?;
        let in_progress = self.in_flight.in_conversation(id.as_str());
        Ok(History {
            conversation_id: id,
            page,
            in_progress,
        })
    }

    /// Renames a conversation or sets its own system prompt (an absent field is kept, an
    /// empty one cleared).
    pub async fn update_conversation(
        &self,
        caller: &Caller,
        id: String,
        change: ConversationUpdate,
    ) -> Result<Conversation, WireError> {
        let id = ConversationId::try_from(id)?;
        Ok(self
            .store
            .conversations_of(caller.owner())
            .update(&id, change)
            .await?)
    }

    /// Deletes a conversation with its messages.
    pub async fn delete_conversation(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<ConversationId, WireError> {
        let id = ConversationId::try_from(id)?;
        self.store
            .conversations_of(caller.owner())
            .delete(&id)
            .await?;
        Ok(id)
    }

    /// Appends messages in one transaction; returns once they are committed. Each message's
    /// `token_count` is counted here from its text, whatever the caller said: the context
    /// budget of later turns relies on it.
    pub async fn append_messages(
        &self,
        caller: &Caller,
        id: String,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<StoredMessage>, WireError> {
        if messages.len() > MAX_APPEND {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("at most {MAX_APPEND} messages per request"),
                false,
            ));
        }
        let id = ConversationId::try_from(id)?;
        let messages = self.count_tokens(messages).await?;
        let stored = self
            .store
            .conversations_of(caller.owner())
            .append(&id, messages)
            .await?;
        // Appended messages become searchable soon, as a turn's do.
        self.memory.turn_finished();
        Ok(stored)
    }

    /// Counted with the default model's tokenizer, off the async runtime.
    async fn count_tokens(
        &self,
        mut messages: Vec<NewMessage>,
    ) -> Result<Vec<NewMessage>, WireError> {
        let model = self.providers.default_model(None).unwrap_or("gpt-4o");
        let encoding = Encoding::for_model(model);
        encoding.load().await;
        tokio::task::spawn_blocking(move || {
            for message in &mut messages {
                message.token_count = encoding.count(&message.content);
            }
            messages
        })
        .await
        .map_err(|error| WireError::internal(&format!("counting tokens failed: {error}")))
    }

    /// The stored messages nearest `query` (at most `k`, 10 by default), with snippet and
    /// score; within one conversation of the caller's when `conversation_id` names one.
    pub async fn search_history(
        &self,
        caller: &Caller,
        query: String,
        k: Option<usize>,
        conversation_id: Option<String>,
    ) -> Result<SearchResults, WireError> {
        if let Some(id) = &conversation_id {
            let id = ConversationId::try_from(id.clone())?;
            self.store.conversations_of(caller.owner()).get(&id).await?;
        }
        let k = k.unwrap_or(DEFAULT_HITS);
        let hits = self
            .memory
            .search_history(caller, &query, k, conversation_id)
            .await?;
        Ok(SearchResults { query, hits })
    }
}
