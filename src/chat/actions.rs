//! The conversation actions of the protocol: create, list (paged), history (paged), update
//! (title, system prompt), delete.
//! Each answers with one `complete` frame whose `metadata` carries the data, or one `error`.

use serde::Serialize;
use serde_json::{Value, json};

use super::fit::{MAX_FRAME_BYTES, shrink_value};
use super::frames::{ConversationAction, GetHistory, ListConversations, SearchPayload};
use super::{ChatService, ServerFrame};
use crate::auth::Caller;
use crate::memory::MemoryError;
use crate::store::{
    Conversation, ConversationId, ConversationUpdate, Page, StoreError, StoredMessage,
};
use crate::wire::WireError;

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
            Err(error) => ServerFrame::failed(Some(request_id.into()), &WireError::from(error)),
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
                let (mut conversations, next_cursor) = newest_first_within_budget(page);
                for conversation in &mut conversations {
                    self.mark_in_progress(conversation);
                }
                let metadata = json!({"conversations": conversations, "next_cursor": next_cursor});
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
                let (messages, next_cursor) = latest_within_budget(page);
                let metadata = json!({
                    "conversation_id": id,
                    "messages": messages,
                    "next_cursor": next_cursor,
                    "in_progress": self.in_flight.in_conversation(id.as_str()),
                });
                ServerFrame::result(request_id, "history", metadata)
            }
            ConversationAction::Update(update) => {
                let id = ConversationId::try_from(update.conversation_id)?;
                let change = ConversationUpdate {
                    title: update.title,
                    system_prompt: update.system_prompt,
                };
                let conversation = repo.update(&id, change).await?;
                let metadata =
                    json!({"conversation_id": conversation.id, "conversation": conversation});
                ServerFrame::result(request_id, "conversation", metadata)
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

impl ChatService {
    /// Adds `in_progress` (the request ids of its turns running now) to a listed conversation
    /// that has any.
    fn mark_in_progress(&self, conversation: &mut Value) {
        let Some(id) = conversation["id"].as_str() else {
            return;
        };
        let running = self.in_flight.in_conversation(id);
        if let (false, Some(object)) = (running.is_empty(), conversation.as_object_mut()) {
            object.insert("in_progress".into(), json!(running));
        }
    }
}

/// Bytes of items one page carries at most: with its envelope, a page fits one frame.
const PAGE_BUDGET: usize = MAX_FRAME_BYTES * 3 / 4;

/// A single item larger than this is sent cut, with `truncated: true` (REST has it whole).
const ITEM_BUDGET: usize = MAX_FRAME_BYTES / 2;

/// An item as JSON, cut to [`ITEM_BUDGET`] if it is larger, and its size.
fn fitted<T: Serialize>(item: &T) -> (Value, usize) {
    let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
    if shrink_value(&mut value, ITEM_BUDGET)
        && let Some(object) = value.as_object_mut()
    {
        object.insert("truncated".into(), Value::Bool(true));
    }
    let size = value.to_string().len();
    (value, size)
}

/// A list page (newest first) cut to [`PAGE_BUDGET`]: it ends early, with a cursor to the
/// rest, rather than make a frame too large.
fn newest_first_within_budget(page: Page<Conversation>) -> (Vec<Value>, Option<String>) {
    let mut kept = Vec::with_capacity(page.items.len());
    let mut used = 0;
    for conversation in &page.items {
        let (value, size) = fitted(conversation);
        if !kept.is_empty() && used + size > PAGE_BUDGET {
            let cursor = page.items[kept.len() - 1].page_cursor();
            return (kept, Some(cursor));
        }
        used += size;
        kept.push(value);
    }
    (kept, page.next_cursor)
}

/// A history page (oldest first) cut to [`PAGE_BUDGET`], keeping its latest messages: the
/// cursor then points before the oldest one kept.
fn latest_within_budget(page: Page<StoredMessage>) -> (Vec<Value>, Option<String>) {
    let mut kept = Vec::with_capacity(page.items.len());
    let mut used = 0;
    for message in page.items.iter().rev() {
        let (value, size) = fitted(message);
        if !kept.is_empty() && used + size > PAGE_BUDGET {
            kept.reverse();
            let oldest = page.items.len() - kept.len();
            return (kept, Some(page.items[oldest].seq.to_string()));
        }
        used += size;
        kept.push(value);
    }
    kept.reverse();
    (kept, page.next_cursor)
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
            Err(error) => ServerFrame::failed(Some(request_id.into()), &WireError::from(error)),
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
            .search_history(caller, &payload.query, k, payload.conversation_id)
            .await?;
        Ok(json!({"query": payload.query, "hits": hits}))
    }
}
