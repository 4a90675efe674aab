//! What a client can pick and what the model kept: `list_models` (the providers and their
//! models, for a model picker) and `list_memories` / `delete_memory` (the memories stored with
//! `memory_store`). Each answers with one `complete` frame, or one `error`.

use serde::Serialize;
use serde_json::json;

use super::frames::{ListMemories, MemoryAction};
use super::{ChatService, ServerFrame};
use crate::auth::Caller;
use crate::memory::MemoryError;
use crate::wire::WireError;

/// Memories per page when the client names no `limit`.
const DEFAULT_MEMORIES: u32 = 50;

/// A provider as a model picker shows it.
#[derive(Debug, Serialize)]
struct ProviderModels<'a> {
    name: &'a str,
    /// The model used when a request names none.
    default_model: &'a str,
    /// The models it offers (the default first).
    models: Vec<&'a str>,
    /// Any model name is accepted (`models: "*"`), beyond those listed.
    any_model: bool,
    /// A request can be sent: its key is set, or it needs none.
    configured: bool,
    /// The environment variable its key comes from, to say what to set when it is not.
    key_variable: &'a str,
}

impl ChatService {
    /// `list_models`: every provider, the active one named as `default_provider`.
    pub fn models(&self, request_id: &str) -> ServerFrame {
        let providers: Vec<ProviderModels<'_>> = self
            .providers
            .all()
            .map(|provider| {
                let (models, any_model) = provider.model_names();
                ProviderModels {
                    name: provider.name(),
                    default_model: provider.model(),
                    models,
                    any_model,
                    configured: provider.configured(),
                    key_variable: provider.key_variable(),
                }
            })
            .collect();
        let metadata = json!({
            "default_provider": self.providers.active(),
            "providers": providers,
            "found_locally": self.providers.found_locally(),
        });
        ServerFrame::result(request_id, "models", metadata)
    }

    /// `list_memories` and `delete_memory`, on the caller's own memories.
    pub async fn memory_action(
        &self,
        caller: &Caller,
        request_id: &str,
        action: MemoryAction,
    ) -> ServerFrame {
        let answer = match action {
            MemoryAction::List(list) => self
                .list_memories(caller, list)
                .await
                .map(|metadata| ServerFrame::result(request_id, "memories", metadata)),
            MemoryAction::Delete(delete) => self
                .memory
                .forget(caller.id(), delete.memory_id)
                .await
                .map(|()| {
                    let metadata = json!({"memory_id": delete.memory_id, "deleted": true});
                    ServerFrame::result(request_id, "deleted", metadata)
                }),
        };
        answer.unwrap_or_else(|error| {
            ServerFrame::failed(Some(request_id.into()), &WireError::from(error))
        })
    }

    /// Newest first, paged by id; or with a `query`, the nearest memories (one page).
    async fn list_memories(
        &self,
        caller: &Caller,
        list: ListMemories,
    ) -> Result<serde_json::Value, MemoryError> {
        let limit = list.limit.unwrap_or(DEFAULT_MEMORIES);
        if let Some(query) = list.query.filter(|q| !q.trim().is_empty()) {
            if list.cursor.is_some() {
                return Err(MemoryError::Invalid(
                    "a memory search has one page: send no cursor with a query".into(),
                ));
            }
            let k = usize::try_from(limit).unwrap_or(usize::MAX);
            let k = k.clamp(1, self.memory.config().max_k);
            let hits = self
                .memory
                .recall(caller, &query, k, Vec::new(), None)
                .await?;
            return Ok(json!({"query": query, "memories": hits, "next_cursor": null}));
        }
        let before = match list.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                MemoryError::Invalid(format!("`{cursor}` is not a cursor this server gave"))
            })?),
        };
        let page = self
            .store
            .memories_of(caller.id())
            .list(limit, before)
            .await?;
        Ok(json!({"memories": page.items, "next_cursor": page.next_cursor}))
    }
}
