//! The memories the model stored with `memory_store`, for their owner: listed newest first
//! (paged by id) or nearest a query, and deleted one by one.

use serde::Serialize;

use super::ChatService;
use crate::auth::Caller;
use crate::memory::MemoryError;
use crate::store::{Memory, MemoryHit, Page};
use crate::wire::WireError;

/// Memories per page when the caller names no `limit`.
const DEFAULT_MEMORIES: u32 = 50;

/// A listing of memories: a page, or the nearest to a query (one page, no cursor).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MemoryListing {
    Nearest {
        query: String,
        memories: Vec<MemoryHit>,
        next_cursor: Option<String>,
    },
    Page {
        memories: Vec<Memory>,
        next_cursor: Option<String>,
    },
}

impl ChatService {
    /// Newest first, paged by id (`cursor`: a `next_cursor` this server gave); or with a
    /// non-blank `query`, the nearest memories (one page).
    pub async fn memories(
        &self,
        caller: &Caller,
        query: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> Result<MemoryListing, WireError> {
        let limit = limit.unwrap_or(DEFAULT_MEMORIES);
        if let Some(query) = query.filter(|q| !q.trim().is_empty()) {
            if cursor.is_some() {
                return Err(MemoryError::Invalid(
                    "a memory search has one page: send no cursor with a query".into(),
                )
                .into());
            }
            let k = usize::try_from(limit).unwrap_or(usize::MAX);
            let k = k.clamp(1, self.memory.config().max_k);
            let memories = self
                .memory
                .recall(caller, &query, k, Vec::new(), None)
                .await?;
            return Ok(MemoryListing::Nearest {
                query,
                memories,
                next_cursor: None,
            });
        }
        let page = self.memory_page(caller, limit, cursor.as_deref()).await?;
        Ok(MemoryListing::Page {
            memories: page.items,
            next_cursor: page.next_cursor,
        })
    }

    /// The caller's memories newest first, `limit` of them before `cursor` (a `next_cursor`
    /// this server gave).
    pub async fn memory_page(
        &self,
        caller: &Caller,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Memory>, WireError> {
        let before = match cursor {
            None => None,
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                MemoryError::Invalid(format!("`{cursor}` is not a cursor this server gave"))
            })?),
        };
        Ok(self
            .store
            .memories_of(caller.id())
            .list(limit, before)
            .await?)
    }

    /// Deletes one of the caller's memories; another's is `not_found`.
    pub async fn forget_memory(&self, caller: &Caller, memory_id: i64) -> Result<(), WireError> {
        Ok(self.memory.forget(caller.id(), memory_id).await?)
    }
}
