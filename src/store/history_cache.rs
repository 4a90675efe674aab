//! The latest messages of recently active conversations, kept in memory so that a chat turn
//! does not read its history back from SQLite (that read was the largest share of a turn's CPU).
//!
//! An entry is a conversation's tail: its messages up to `next_seq - 1`, with no gap, and
//! `whole` when nothing older exists. Messages never change once stored; they are only appended
//! (which extends an entry whose `next_seq` is the first new seq, and drops any other) or deleted
//! (a deleted conversation, retention), which bumps an epoch that makes every older entry stale.
//! An entry filled from a read carries the epoch seen before the read started, so a read that
//! raced a deletion is never served. Memory is bounded by the entries' bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;

use super::history_window::HistoryWindow;
use super::{ConversationId, StoredMessage};
use crate::stats::CacheSnapshot;

/// Conversations expected in the cache, for its initial sizing.
const EXPECTED_ENTRIES: usize = 4096;
/// Messages kept per conversation at most; a turn that needs more reads them from the database.
pub const MAX_ROWS: usize = 512;
/// Weight of a message besides its text: the struct, its `Arc`, its ids and its `usage` map
/// (heap profiles put a cached message at about 500 bytes besides its text).
const MESSAGE_OVERHEAD: u64 = 512;

#[derive(Debug)]
struct Tail {
    messages: Vec<Arc<StoredMessage>>,
    next_seq: i64,
    whole: bool,
    epoch: u64,
    bytes: u64,
}

impl Tail {
    fn new(messages: Vec<Arc<StoredMessage>>, next_seq: i64, whole: bool, epoch: u64) -> Self {
        let mut tail = Self {
            messages,
            next_seq,
            whole,
            epoch,
            bytes: 0,
        };
        if tail.messages.len() > MAX_ROWS {
            tail.messages.drain(..tail.messages.len() - MAX_ROWS);
            tail.whole = false;
        }
        tail.bytes = tail.messages.iter().map(|m| weight(m)).sum();
        tail
    }
}

fn weight(message: &StoredMessage) -> u64 {
    let text = message.content.len()
        + message
            .tool_calls
            .as_ref()
            .map_or(0, |calls| calls.to_string().len());
    text as u64 + MESSAGE_OVERHEAD
}

#[derive(Clone)]
struct TailWeight;

impl Weighter<String, Arc<Tail>> for TailWeight {
    fn weight(&self, _key: &String, tail: &Arc<Tail>) -> u64 {
        tail.bytes.max(1)
    }
}

pub struct HistoryCache {
    tails: quick_cache::sync::Cache<String, Arc<Tail>, TailWeight>,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl HistoryCache {
    /// A cache of at most `capacity_bytes` of messages, across conversations.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            tails: quick_cache::sync::Cache::with_weighter(
                EXPECTED_ENTRIES,
                capacity_bytes,
                TailWeight,
            ),
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The epoch to pass to [`HistoryCache::fill`]: read it before reading the database.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Messages were deleted: nothing cached before now may be served.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.clear();
    }

    /// Forgets every entry (to give the memory back; nothing was deleted, so the epoch stays).
    pub fn clear(&self) {
        self.tails.clear();
    }

    /// What [`super::Conversations::recent`] would read, if the cache holds all of it.
    pub fn recent(
        &self,
        id: &ConversationId,
        before_seq: i64,
        token_limit: u32,
        max_rows: u32,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        let served = self.serve(id, before_seq, token_limit, max_rows);
        let counter = if served.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        served
    }

    fn serve(
        &self,
        id: &ConversationId,
        before_seq: i64,
        token_limit: u32,
        max_rows: u32,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        let tail = self.tails.get(id.as_str())?;
        // The tail may already hold the turn's own message (appended before its history is
        // read): it serves the messages before `before_seq` as long as it reaches that far.
        if tail.epoch != self.epoch() || tail.next_seq < before_seq {
            return None;
        }
        let mut window = HistoryWindow::new(token_limit, max_rows);
        let mut older = tail
            .messages
            .iter()
            .rev()
            .skip_while(|m| m.seq >= before_seq);
        while window.wants_more() {
            let Some(message) = older.next() else { break };
            window.push(Arc::clone(message));
        }
        let (items, unlimited) = window.finish();
        // Taking every held message without reaching a limit answers only for a whole tail.
        (!unlimited || tail.whole).then_some(items)
    }

    /// Keeps what a read of the database returned: the messages before `next_seq`, all of the
    /// conversation's if `whole`.
    pub fn fill(
        &self,
        id: &ConversationId,
        messages: Vec<Arc<StoredMessage>>,
        next_seq: i64,
        whole: bool,
        epoch: u64,
    ) {
        let contiguous = messages
            .windows(2)
            .all(|pair| pair[1].seq == pair[0].seq + 1)
            && messages.last().is_none_or(|m| m.seq + 1 == next_seq);
        if !contiguous || epoch != self.epoch() {
            return;
        }
        let tail = Tail::new(messages, next_seq, whole, epoch);
        self.tails.insert(id.as_str().to_string(), Arc::new(tail));
    }

    /// `appended` were committed (in seq order) by a write that started at `epoch`: extends the
    /// conversation's tail if it ends right before them, else forgets it. A write that raced a
    /// deletion (the conversation deleted and created again under the same id) extends nothing.
    pub fn appended(&self, id: &ConversationId, appended: &[StoredMessage], epoch: u64) {
        let (Some(first), Some(last)) = (appended.first(), appended.last()) else {
            return;
        };
        let Some(tail) = self.tails.get(id.as_str()) else {
            return;
        };
        let current = self.epoch();
        if tail.next_seq != first.seq || tail.epoch != current || epoch != current {
            self.tails.remove(id.as_str());
            return;
        }
        let mut messages = tail.messages.clone();
        messages.extend(appended.iter().cloned().map(Arc::new));
        let grown = Tail::new(messages, last.seq + 1, tail.whole, tail.epoch);
        self.tails.insert(id.as_str().to_string(), Arc::new(grown));
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.tails.len(),
            capacity: EXPECTED_ENTRIES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageStatus, Role};

    fn cached(seq: i64, tokens: i64) -> Arc<StoredMessage> {
        Arc::new(message(seq, tokens))
    }

    fn message(seq: i64, tokens: i64) -> StoredMessage {
        StoredMessage {
            id: seq + 100,
            conversation_id: ConversationId::try_from("c".to_string()).expect("id"),
            seq,
            role: Role::User,
            content: format!("m{seq}"),
            tool_calls: None,
            tool_call_id: None,
            request_id: None,
            status: MessageStatus::Complete,
            token_count: tokens,
            model: None,
            usage: None,
            created_at: 0,
            attachments: Vec::new(),
        }
    }

    fn id() -> ConversationId {
        ConversationId::try_from("c".to_string()).expect("id")
    }

    fn seqs(messages: &[Arc<StoredMessage>]) -> Vec<i64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_filled_tail_serves_the_same_rows_as_the_database_would() {
        let cache = HistoryCache::new(32 << 20);
        let rows: Vec<_> = (0..4).map(|s| cached(s, 10)).collect();
        cache.fill(&id(), rows, 4, true, cache.epoch());
        // The newest rows until their tokens pass the limit, the one passing it included.
        assert_eq!(seqs(&cache.recent(&id(), 4, 15, 100).expect("hit")), [2, 3]);
        assert_eq!(
            seqs(&cache.recent(&id(), 4, 1000, 100).expect("hit")),
            [0, 1, 2, 3]
        );
        assert_eq!(
            seqs(&cache.recent(&id(), 4, 1000, 3).expect("hit")),
            [1, 2, 3]
        );
        // An earlier position is served from the same tail; a later one is not known.
        assert_eq!(
            seqs(&cache.recent(&id(), 3, 1000, 100).expect("hit")),
            [0, 1, 2]
        );
        assert!(cache.recent(&id(), 5, 1000, 100).is_none());
    }

    #[test]
    fn a_partial_tail_does_not_serve_more_than_it_holds() {
        let cache = HistoryCache::new(32 << 20);
        let rows: Vec<_> = (5..8).map(|s| cached(s, 10)).collect();
        cache.fill(&id(), rows, 8, false, cache.epoch());
        assert_eq!(
            seqs(&cache.recent(&id(), 8, 25, 100).expect("hit")),
            [5, 6, 7]
        );
        assert!(
            cache.recent(&id(), 8, 1000, 100).is_none(),
            "older rows exist"
        );
    }

    #[test]
    fn appends_extend_a_tail_only_when_they_follow_it() {
        let cache = HistoryCache::new(32 << 20);
        cache.fill(&id(), vec![cached(0, 1)], 1, true, cache.epoch());
        cache.appended(&id(), &[message(1, 1), message(2, 1)], cache.epoch());
        assert_eq!(
            seqs(&cache.recent(&id(), 3, 100, 100).expect("hit")),
            [0, 1, 2]
        );
        // A gap (another writer's append was not seen): the tail is dropped.
        cache.appended(&id(), &[message(5, 1)], cache.epoch());
        assert!(cache.recent(&id(), 6, 100, 100).is_none());
        assert!(cache.recent(&id(), 2, 100, 100).is_none());
    }

    #[test]
    fn an_append_that_raced_a_deletion_extends_nothing() {
        let cache = HistoryCache::new(32 << 20);
        let before = cache.epoch();
        cache.invalidate();
        // The conversation was created again and its first message cached...
        cache.fill(&id(), vec![cached(0, 1)], 1, true, cache.epoch());
        // ...when the old conversation's append, started before the deletion, reports seq 1.
        cache.appended(&id(), &[message(1, 1)], before);
        assert!(cache.recent(&id(), 2, 100, 100).is_none());
    }

    #[test]
    fn a_deletion_makes_older_tails_and_racing_reads_stale() {
        let cache = HistoryCache::new(32 << 20);
        let before = cache.epoch();
        cache.fill(&id(), vec![cached(0, 1)], 1, true, before);
        cache.invalidate();
        assert!(cache.recent(&id(), 1, 100, 100).is_none());
        // A read that started before the deletion is not kept.
        cache.fill(&id(), vec![cached(0, 1)], 1, true, before);
        assert!(cache.recent(&id(), 1, 100, 100).is_none());
        let snapshot = cache.snapshot();
        assert_eq!((snapshot.hits, snapshot.misses), (0, 2));
    }

    #[test]
    fn a_long_conversation_keeps_its_newest_rows_only() {
        let cache = HistoryCache::new(32 << 20);
        let count = i64::try_from(MAX_ROWS).expect("small") + 10;
        let rows: Vec<_> = (0..count).map(|s| cached(s, 1)).collect();
        let next = count;
        cache.fill(&id(), rows, next, true, cache.epoch());
        let served = cache
            .recent(&id(), next, 5, 100)
            .expect("the newest rows are held");
        assert_eq!(served.len(), 6);
        assert!(cache.recent(&id(), next, 10_000, 10_000).is_none());
    }
}
