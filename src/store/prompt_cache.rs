//! Each recently active conversation's owner and own system prompt, kept in memory so that a
//! chat turn does not read them from SQLite (with the history served from
//! [`super::history_cache`], that read was a turn's only one).
//!
//! An entry changes only by [`super::Conversations::update`] (which drops it) or with its
//! conversation's deletion (which drops them all). An entry filled from a read carries the
//! epoch seen before the read started, and is not stored if either happened meanwhile, so a
//! read that raced a change is never served afterwards. Memory is bounded by the prompts'
//! bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;

use super::ConversationId;

/// Conversations expected in the cache, for its initial sizing.
const EXPECTED_ENTRIES: usize = 4096;
/// Weight of an entry besides its prompt's text.
const ENTRY_OVERHEAD: u64 = 128;

/// A conversation's owner and own system prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptEntry {
    pub owner: i64,
    pub prompt: Option<Arc<str>>,
}

#[derive(Clone)]
struct PromptWeight;

impl Weighter<String, PromptEntry> for PromptWeight {
    fn weight(&self, _key: &String, entry: &PromptEntry) -> u64 {
        entry.prompt.as_ref().map_or(0, |p| p.len() as u64) + ENTRY_OVERHEAD
    }
}

pub struct PromptCache {
    entries: quick_cache::sync::Cache<String, PromptEntry, PromptWeight>,
    epoch: AtomicU64,
}

impl PromptCache {
    /// A cache of at most `capacity_bytes` of prompts.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                EXPECTED_ENTRIES,
                capacity_bytes.max(ENTRY_OVERHEAD),
                PromptWeight,
            ),
            epoch: AtomicU64::new(0),
        }
    }

    /// The epoch to pass to [`PromptCache::fill`]: read it before reading the database.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn get(&self, id: &ConversationId) -> Option<PromptEntry> {
        self.entries.get(id.as_str())
    }

    /// Stores what a read that started at `epoch` found, unless something changed since.
    pub fn fill(&self, id: &ConversationId, entry: PromptEntry, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        self.entries.insert(id.as_str().to_owned(), entry);
        // A change that landed between the check and the insert bumped the epoch after
        // the insert or dropped the entry; if after, drop what may be stale.
        if self.epoch() != epoch {
            self.entries.remove(id.as_str());
        }
    }

    /// The conversation's prompt changed (call once the change is committed).
    pub fn changed(&self, id: &ConversationId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(id.as_str());
    }

    /// Conversations were deleted, or the server went quiet: nothing cached before now is
    /// served (reads in flight do not fill either).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Drops when dropped: hold it across a change of the prompt.
    pub fn changed_on_drop<'a>(&'a self, id: &ConversationId) -> ChangedOnDrop<'a> {
        ChangedOnDrop(self, id.clone())
    }
}

pub struct ChangedOnDrop<'a>(&'a PromptCache, ConversationId);

impl Drop for ChangedOnDrop<'_> {
    fn drop(&mut self) {
        self.0.changed(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ConversationId {
        ConversationId::try_from("c1".to_owned()).expect("id")
    }

    fn entry(prompt: &str) -> PromptEntry {
        PromptEntry {
            owner: 1,
            prompt: Some(prompt.into()),
        }
    }

    #[test]
    fn a_filled_entry_is_served_until_its_conversation_changes() {
        let cache = PromptCache::new(1 << 20);
        assert_eq!(cache.get(&id()), None);
        cache.fill(&id(), entry("be brief"), cache.epoch());
        assert_eq!(cache.get(&id()), Some(entry("be brief")));
        cache.changed(&id());
        assert_eq!(cache.get(&id()), None);
        cache.fill(&id(), entry("be kind"), cache.epoch());
        cache.clear();
        assert_eq!(cache.get(&id()), None);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = PromptCache::new(1 << 20);
        let before = cache.epoch();
        cache.changed(&id());
        cache.fill(&id(), entry("old"), before);
        assert_eq!(cache.get(&id()), None);
        let before = cache.epoch();
        cache.clear();
        cache.fill(&id(), entry("old"), before);
        assert_eq!(cache.get(&id()), None);
    }
}
