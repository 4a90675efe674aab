//! The window a turn's history is chosen with, newest first within a token limit and a row
//! limit: shared by the database read (`conversations`) and the in-memory tails
//! (`history_cache`), so that they cannot disagree.

use std::sync::Arc;

use super::StoredMessage;

/// The messages a context window can use, given newest first: taken until their stored token
/// counts pass `token_limit` (the message that passes it included) or `max_rows` are taken.
/// The database read and the in-memory history both select with it, so they cannot disagree.
pub(super) struct HistoryWindow {
    items: Vec<Arc<StoredMessage>>,
    tokens: i64,
    token_limit: i64,
    max_rows: usize,
}

impl HistoryWindow {
    pub(super) fn new(token_limit: u32, max_rows: u32) -> Self {
        Self {
            items: Vec::new(),
            tokens: 0,
            token_limit: i64::from(token_limit),
            max_rows: max_rows as usize,
        }
    }

    /// False once a limit is reached.
    pub(super) fn wants_more(&self) -> bool {
        self.items.len() < self.max_rows && self.tokens <= self.token_limit
    }

    pub(super) fn push(&mut self, message: Arc<StoredMessage>) {
        self.tokens += message.token_count;
        self.items.push(message);
    }

    /// The messages oldest first, and whether no limit was reached (every message offered was
    /// taken, so nothing older was left out).
    pub(super) fn finish(self) -> (Vec<Arc<StoredMessage>>, bool) {
        let unlimited = self.wants_more();
        let mut items = self.items;
        items.reverse();
        (items, unlimited)
    }
}
