//! The conversation actions of the protocol: create, list (paged), history (paged), delete.
//! Each answers with one `complete` frame whose `metadata` carries the data, or one `error`.

use serde_json::json;

use super::frames::{ConversationAction, GetHistory, ListConversations, SearchPayload};
use super::{ChatService, ServerFrame};
use crate::auth::Caller;
use crate::memory::MemoryError;
use crate::store::{ConversationId, StoreError};

/// Search hits when the client names no `k`.
const DEFAULT_HITS: usize = 10;

/// Page size when the client names none.
const DEFAULT_PAGE: u32 = 50;

impl ChatService {
    pub async fn conversation_action(
        &self,
        caller: &Caller,
        request_id: &str,
        action: ConversationAction,
    ) -> ServerFrame {
        match self.run_action(caller, request_id, action).await {
            Ok(frame) => frame,
            Err(error) => {
                let message = if error.code() == "internal" {
                    tracing::error!(%error, "conversation action failed in the store");
                    "internal error; the server log has the details".to_string()
                } else {
                    error.to_string()
                };
                ServerFrame::error(
                    Some(request_id.into()),
                    error.code(),
                    message,
                    error.retryable(),
                )
            }
        }
    }

    async fn run_action(
        &self,
        caller: &Caller,
        request_id: &str,
        action: ConversationAction,
    ) -> Result<ServerFrame, StoreError> {
        let repo = self.store.conversations_of(caller.owner());
        Ok(match action {
            ConversationAction::New(new) => {
                let conversation = repo.create(new.title).await?;
                let metadata =
                    json!({"conversation_id": conversation.id, "conversation": conversation});
                ServerFrame::result(request_id, "conversation", metadata)
            }
            ConversationAction::List(ListConversations { limit, cursor }) => {
                let page = repo.list(limit.unwrap_or(DEFAULT_PAGE), cursor).await?;
                let metadata =
                    json!({"conversations": page.items, "next_cursor": page.next_cursor});
                ServerFrame::result(request_id, "conversations", metadata)
            }
            ConversationAction::History(GetHistory {
                conversation_id,
                limit,
                cursor,
            }) => {
                let id = ConversationId::try_from(conversation_id)?;
                let before = cursor.as_deref().map(parse_history_cursor).transpose()?;
                let page = repo
                    .history_page(&id, before, limit.unwrap_or(DEFAULT_PAGE))
                    .await?;
                let metadata = json!({
                    "conversation_id": id,
                    "messages": page.items,
                    "next_cursor": page.next_cursor,
                });
                ServerFrame::result(request_id, "history", metadata)
            }
            ConversationAction::Delete(delete) => {
                let id = ConversationId::try_from(delete.conversation_id)?;
                repo.delete(&id).await?;
                let metadata = json!({"conversation_id": id, "deleted": true});
                ServerFrame::result(request_id, "deleted", metadata)
            }
        })
    }
}

fn parse_history_cursor(cursor: &str) -> Result<i64, StoreError> {
    cursor
        .parse()
        .map_err(|_| StoreError::InvalidInput(format!("invalid cursor `{cursor}`")))
}

impl ChatService {
    /// History search: the stored messages nearest the query, with snippet and score.
    pub async fn search(
        &self,
        caller: &Caller,
        request_id: &str,
        payload: SearchPayload,
    ) -> ServerFrame {
        match self.run_search(caller, payload).await {
            Ok(metadata) => ServerFrame::result(request_id, "search_results", metadata),
            Err(error) => {
                let message = if error.code() == "internal" {
                    tracing::error!(%error, "search failed");
                    "internal error; the server log has the details".to_string()
                } else {
                    error.to_string()
                };
                ServerFrame::error(
                    Some(request_id.into()),
                    error.code(),
                    message,
                    error.retryable(),
                )
            }
        }
    }

    async fn run_search(
        &self,
        caller: &Caller,
        payload: SearchPayload,
    ) -> Result<serde_json::Value, MemoryError> {
        if let Some(id) = &payload.conversation_id {
            let id = ConversationId::try_from(id.clone())?;
            self.store.conversations_of(caller.owner()).get(&id).await?;
        }
        let k = payload.k.unwrap_or(DEFAULT_HITS);
        let hits = self
            .memory
            .search_history(caller.id(), &payload.query, k, payload.conversation_id)
            .await?;
        Ok(json!({"query": payload.query, "hits": hits}))
    }
}
