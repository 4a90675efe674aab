//! The socket's requests that are not turns: conversations, history search, models,
//! memories, MCP resources and prompts, compaction. Each calls the chat operation and answers
//! with one `complete` frame (its kind in `type`, its data in `metadata`) or one `error`.
//! Pages are cut to fit one frame: a list ends early with a cursor to the rest, and an item
//! too large is sent cut with `truncated: true` (REST has it whole).

use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fit::{MAX_FRAME_BYTES, shrink_value};
use super::frames::{
    ConversationAction, GetHistory, LibraryAction, ListConversations, MemoryAction, SearchPayload,
    ServerFrame,
};
use crate::auth::Caller;
use crate::chat::ChatService;
use crate::store::{Conversation, ConversationUpdate, Page, StoredMessage};
use crate::wire::{ErrorCode, WireError};

/// The answer to one request: `complete` with `kind` and `metadata`, or `error`.
fn answer(request_id: &str, kind: &'static str, result: Result<Value, WireError>) -> ServerFrame {
    match result {
        Ok(metadata) => ServerFrame::result(request_id, kind, metadata),
        Err(error) => ServerFrame::failed(Some(request_id.into()), &error),
    }
}

fn to_value<T: Serialize>(data: T) -> Result<Value, WireError> {
    serde_json::to_value(data)
        .map_err(|error| WireError::internal(&format!("rendering an answer failed: {error}")))
}

pub async fn conversations(
    chat: &ChatService,
    caller: &Caller,
    request_id: &str,
    action: ConversationAction,
) -> ServerFrame {
    match action {
        ConversationAction::New(new) => {
            let created = chat.create_conversation(caller, new.title, None).await;
            answer(
                request_id,
                "conversation",
                created.map(|c| one_conversation(&c)),
            )
        }
        ConversationAction::List(ListConversations { limit, cursor }) => {
            let page = chat.list_conversations(caller, limit, cursor).await;
            let listed = page.map(|page| {
                let (mut conversations, next_cursor) = newest_first_within_budget(page);
                for conversation in &mut conversations {
                    mark_in_progress(chat, conversation);
                }
                json!({"conversations": conversations, "next_cursor": next_cursor})
            });
            answer(request_id, "conversations", listed)
        }
        ConversationAction::History(GetHistory {
            conversation_id,
            limit,
            cursor,
        }) => {
            let history = match cursor.as_deref().map(parse_history_cursor).transpose() {
                Ok(before) => chat.history(caller, conversation_id, before, limit).await,
                Err(error) => Err(error),
            };
            let page = history.map(|history| {
                let (messages, next_cursor) = latest_within_budget(history.page);
                json!({
                    "conversation_id": history.conversation_id,
                    "messages": messages,
                    "next_cursor": next_cursor,
                    "in_progress": history.in_progress,
                })
            });
            answer(request_id, "history", page)
        }
        ConversationAction::Update(update) => {
            let change = ConversationUpdate {
                title: update.title,
                system_prompt: update.system_prompt,
            };
            let updated = chat
                .update_conversation(caller, update.conversation_id, change)
                .await;
            answer(
                request_id,
                "conversation",
                updated.map(|c| one_conversation(&c)),
            )
        }
        ConversationAction::Delete(delete) => {
            let deleted = chat
                .delete_conversation(caller, delete.conversation_id)
                .await
                .map(|id| json!({"conversation_id": id, "deleted": true}));
            answer(request_id, "deleted", deleted)
        }
    }
}

fn one_conversation(conversation: &Conversation) -> Value {
    json!({"conversation_id": conversation.id, "conversation": conversation})
}

/// Adds `in_progress` (the request ids of its turns running now) to a listed conversation
/// that has any.
fn mark_in_progress(chat: &ChatService, conversation: &mut Value) {
    let Some(id) = conversation["id"].as_str() else {
        return;
    };
    let running = chat.turns_running_in(id);
    if let (false, Some(object)) = (running.is_empty(), conversation.as_object_mut()) {
        object.insert("in_progress".into(), json!(running));
    }
}

fn parse_history_cursor(cursor: &str) -> Result<i64, WireError> {
    cursor.parse().map_err(|_| {
        WireError::new(
            ErrorCode::InvalidRequest,
            format!("invalid cursor `{cursor}`"),
            false,
        )
    })
}

pub async fn search(
    chat: &ChatService,
    caller: &Caller,
    request_id: &str,
    payload: SearchPayload,
) -> ServerFrame {
    let results = chat
        .search_history(caller, payload.query, payload.k, payload.conversation_id)
        .await;
    answer(request_id, "search_results", results.and_then(to_value))
}

pub fn models(chat: &ChatService, request_id: &str) -> ServerFrame {
    answer(request_id, "models", to_value(chat.models()))
}

pub async fn memories(
    chat: &ChatService,
    caller: &Caller,
    request_id: &str,
    action: MemoryAction,
) -> ServerFrame {
    match action {
        MemoryAction::List(list) => {
            let listing = chat
                .memories(caller, list.query, list.limit, list.cursor)
                .await;
            answer(request_id, "memories", listing.and_then(to_value))
        }
        MemoryAction::Delete(delete) => {
            let deleted = chat
                .forget_memory(caller, delete.memory_id)
                .await
                .map(|()| json!({"memory_id": delete.memory_id, "deleted": true}));
            answer(request_id, "deleted", deleted)
        }
    }
}

/// What MCP servers offer besides tools.
pub async fn offers(chat: &ChatService, request_id: &str, action: LibraryAction) -> ServerFrame {
    match action {
        LibraryAction::ListResources(page) => {
            let listing = chat
                .resources(page.cursor.as_deref(), page.limit)
                .map(|l| json!({"resources": l.items, "next_cursor": l.next_cursor}));
            answer(request_id, "resources", listing)
        }
        LibraryAction::ListPrompts(page) => {
            let listing = chat
                .prompts(page.cursor.as_deref(), page.limit)
                .map(|l| json!({"prompts": l.items, "next_cursor": l.next_cursor}));
            answer(request_id, "prompts", listing)
        }
        LibraryAction::ReadResource(read) => {
            let contents = chat.read_resource(read.server.as_deref(), read.uri).await;
            answer(request_id, "resource", contents.and_then(to_value))
        }
        LibraryAction::GetPrompt(get) => {
            let prompt = chat
                .get_prompt(get.server.as_deref(), &get.name, get.arguments)
                .await;
            answer(request_id, "prompt", prompt.and_then(to_value))
        }
    }
}

pub async fn compact(
    chat: &ChatService,
    caller: &Caller,
    request_id: &str,
    conversation_id: String,
    cancel: &CancellationToken,
) -> ServerFrame {
    let compacted = chat
        .compact_conversation(caller, conversation_id, cancel)
        .await;
    answer(request_id, "compacted", compacted.and_then(to_value))
}

/// Bytes of items one page carries at most: with its envelope, a page fits one frame.
const PAGE_BUDGET: usize = MAX_FRAME_BYTES * 3 / 4;

/// A single item larger than this is sent cut, with `truncated: true`.
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
