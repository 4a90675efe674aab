//! Retention: deleting old messages by the configured policy (`retention` in config.yaml).
//! Runs from a background task; each conversation is trimmed in its own short write
//! transaction, so turns' writes interleave with it in the write gate and never wait long.
//!
//! - `token_limit`: per conversation, the newest messages are kept up to `max_tokens`;
//! - `message_count`: per conversation, the newest `max_messages` are kept;
//! - `time_based`: messages older than `max_age` are deleted, and conversations left empty
//!   and idle for as long;
//! - `unlimited`: nothing is deleted.
//!
//! The newest message of a conversation is always kept, and tool results are never left
//! without the assistant message that called the tool.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms};
use crate::config::{RetentionConfig, RetentionPolicy};

/// Conversations examined per read of candidates.
const CANDIDATE_PAGE: i64 = 500;

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub conversations_trimmed: u64,
    pub messages_deleted: u64,
    pub conversations_deleted: u64,
}

#[derive(Default)]
pub(super) struct RetentionStats {
    runs: AtomicU64,
    messages_deleted: AtomicU64,
    conversations_deleted: AtomicU64,
    last: Mutex<Option<LastRun>>,
}

#[derive(Debug, Clone, Serialize)]
struct LastRun {
    at_ms: i64,
    took_ms: u64,
    error: Option<String>,
}

/// `/health` `repository_stats.retention`.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionSnapshot {
    pub runs: u64,
    pub messages_deleted: u64,
    pub conversations_deleted: u64,
    pub last_run: Option<serde_json::Value>,
}

impl RetentionStats {
    pub(super) fn snapshot(&self) -> RetentionSnapshot {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        RetentionSnapshot {
            runs: self.runs.load(Ordering::Relaxed),
            messages_deleted: self.messages_deleted.load(Ordering::Relaxed),
            conversations_deleted: self.conversations_deleted.load(Ordering::Relaxed),
            last_run: last.as_ref().and_then(|l| serde_json::to_value(l).ok()),
        }
    }
}

impl Store {
    /// Applies `policy` to every conversation; returns what was deleted.
    pub async fn apply_retention(
        &self,
        policy: &RetentionConfig,
    ) -> Result<RetentionReport, StoreError> {
        let started = std::time::Instant::now();
        let result = self.retention_pass(policy).await;
        // Messages may be gone (even from a pass that failed half-way).
        self.forget_deleted();
        let stats = &self.inner.retention;
        stats.runs.fetch_add(1, Ordering::Relaxed);
        if let Ok(report) = &result {
            stats
                .messages_deleted
                .fetch_add(report.messages_deleted, Ordering::Relaxed);
            stats
                .conversations_deleted
                .fetch_add(report.conversations_deleted, Ordering::Relaxed);
        }
        *stats.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(LastRun {
            at_ms: now_ms(),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    async fn retention_pass(
        &self,
        config: &RetentionConfig,
    ) -> Result<RetentionReport, StoreError> {
        let rule = match config.policy {
            RetentionPolicy::Unlimited => return Ok(RetentionReport::default()),
            RetentionPolicy::TokenLimit => Rule::Tokens(saturating_i64(config.max_tokens)),
            RetentionPolicy::MessageCount => Rule::Messages(saturating_i64(config.max_messages)),
            RetentionPolicy::TimeBased => {
                let age = i64::try_from(config.max_age.as_millis()).unwrap_or(i64::MAX);
                Rule::OlderThan(now_ms().saturating_sub(age))
            }
        };
        let mut report = RetentionReport::default();
        let mut after = String::new();
        loop {
            let page = self.read(move |conn| rule.candidates(conn, &after)).await?;
            let Some(last) = page.last().cloned() else {
                return Ok(report);
            };
            for id in page {
                let (messages, deleted_conversation) =
                    self.write_large(move |tx| rule.trim(tx, &id)).await?;
                if messages > 0 || deleted_conversation {
                    // Not one turn may be served the deleted messages from memory.
                    self.forget_deleted();
                }
                report.conversations_trimmed += u64::from(messages > 0);
                report.messages_deleted += messages;
                report.conversations_deleted += u64::from(deleted_conversation);
            }
            after = last;
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Tokens(i64),
    Messages(i64),
    /// Unix milliseconds: messages created before are deleted.
    OlderThan(i64),
}

impl Rule {
    /// A page of conversations that may have something to delete, by id after `after`.
    fn candidates(
        self,
        conn: &rusqlite::Connection,
        after: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (sql, bound) = match self {
            Self::Tokens(max) => (
                "SELECT id FROM conversations WHERE token_count > ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                max,
            ),
            Self::Messages(max) => (
                "SELECT id FROM conversations WHERE message_count > ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                max,
            ),
            Self::OlderThan(cutoff) => (
                "SELECT DISTINCT conversation_id FROM messages WHERE created_at < ?1
                     AND conversation_id > ?2 ORDER BY conversation_id LIMIT ?3",
                cutoff,
            ),
        };
        let mut statement = conn.prepare_cached(sql)?;
        let ids = statement
            .query_map(params![bound, after, CANDIDATE_PAGE], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// Trims one conversation in the caller's transaction: (messages deleted, whether the
    /// conversation itself was deleted).
    fn trim(self, tx: &Transaction<'_>, id: &str) -> Result<(u64, bool), StoreError> {
        // The newest message is never deleted.
        let newest: Option<i64> = tx.query_row(
            "SELECT MAX(seq) FROM messages WHERE conversation_id = ?1",
            [id],
            |row| row.get(0),
        )?;
        let Some(newest) = newest else {
            return Ok((0, false));
        };
        let mut deleted = match self {
            Self::Tokens(max) => tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND seq < ?3 AND seq <= (
                     SELECT seq FROM (
                         SELECT seq, SUM(token_count) OVER (ORDER BY seq DESC) AS newer
                         FROM messages WHERE conversation_id = ?1)
                     WHERE newer > ?2 ORDER BY seq DESC LIMIT 1)",
                params![id, max, newest],
            )?,
            Self::Messages(max) => tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND seq < ?3 AND seq <= (
                     SELECT seq FROM messages WHERE conversation_id = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![id, max, newest],
            )?,
            Self::OlderThan(cutoff) => tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND created_at < ?2 AND seq < ?3",
                params![id, cutoff, newest],
            )?,
        };
        // Tool results whose call was deleted go too: a provider refuses them.
        deleted += tx.execute(
            "DELETE FROM messages WHERE conversation_id = ?1 AND role = 'tool' AND seq < COALESCE(
                 (SELECT MIN(seq) FROM messages WHERE conversation_id = ?1 AND role != 'tool'),
                 9223372036854775807)",
            [id],
        )?;
        tx.execute(
            "UPDATE conversations SET
                 message_count = (SELECT COUNT(*) FROM messages WHERE conversation_id = ?1),
                 token_count = (SELECT COALESCE(SUM(token_count), 0) FROM messages
                                WHERE conversation_id = ?1)
             WHERE id = ?1",
            [id],
        )?;
        let mut conversation_deleted = false;
        if let Self::OlderThan(cutoff) = self {
            // Wholly old: its last message is past the age too.
            conversation_deleted = tx.execute(
                "DELETE FROM conversations WHERE id = ?1 AND updated_at < ?2",
                params![id, cutoff],
            )? > 0;
            if conversation_deleted {
                deleted += 1;
            }
        }
        Ok((deleted as u64, conversation_deleted))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::RepositoryConfig;
    use crate::store::{ConversationId, NewMessage, Role};

    fn open() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RepositoryConfig {
            path: dir.path().join("chat.db"),
            ..RepositoryConfig::default()
        };
        (Store::open(&config).expect("store opens"), dir)
    }

    fn message(role: Role, text: &str, tokens: u32) -> NewMessage {
        let mut message = NewMessage::new(role, text);
        message.token_count = tokens;
        if role == Role::Tool {
            message.tool_call_id = Some("call".into());
        }
        message
    }

    async fn contents(store: &Store, id: &ConversationId) -> Vec<String> {
        let history = store.conversations().history(id).await.expect("history");
        history.into_iter().map(|m| m.content).collect()
    }

    fn policy(policy: RetentionPolicy) -> RetentionConfig {
        RetentionConfig {
            policy,
            ..RetentionConfig::default()
        }
    }

    #[tokio::test]
    async fn token_limit_keeps_the_newest_messages_within_the_limit() {
        let (store, _dir) = open();
        let repo = store.conversations();
        let long = repo.create(None).await.expect("create").id;
        let short = repo.create(None).await.expect("create").id;
        let batch = (0..6)
            .map(|i| message(Role::User, &format!("m{i}"), 10))
            .collect();
        repo.append(&long, batch).await.expect("append");
        repo.append(&short, vec![message(Role::User, "only", 10)])
            .await
            .expect("append");
        let config = RetentionConfig {
            max_tokens: 35,
            ..policy(RetentionPolicy::TokenLimit)
        };
        let report = store.apply_retention(&config).await.expect("retention");
        assert_eq!(contents(&store, &long).await, ["m3", "m4", "m5"]);
        assert_eq!(contents(&store, &short).await, ["only"]);
        assert_eq!(
            (report.messages_deleted, report.conversations_trimmed),
            (3, 1)
        );
        let conversation = repo.get(&long).await.expect("get");
        assert_eq!(
            (conversation.message_count, conversation.token_count),
            (3, 30)
        );
        // A second run finds nothing to do; the figures add up.
        let again = store.apply_retention(&config).await.expect("retention");
        assert_eq!(again, RetentionReport::default());
        let stats = store.stats().retention;
        assert_eq!((stats.runs, stats.messages_deleted), (2, 3));
    }

    #[tokio::test]
    async fn message_count_keeps_the_newest_and_never_orphans_tool_results() {
        let (store, _dir) = open();
        let repo = store.conversations();
        let id = repo.create(None).await.expect("create").id;
        let mut call = message(Role::Assistant, "", 1);
        call.tool_calls = Some(
            json!([{"id": "call", "type": "function", "function": {"name": "t", "arguments": "{}"}}]),
        );
        let batch = vec![
            message(Role::User, "q", 1),
            call,
            message(Role::Tool, "r1", 1),
            message(Role::Tool, "r2", 1),
            message(Role::Assistant, "a", 1),
        ];
        repo.append(&id, batch).await.expect("append");
        // Keeping 3 would start at a tool result: its call is gone, so it goes too.
        let config = RetentionConfig {
            max_messages: 3,
            ..policy(RetentionPolicy::MessageCount)
        };
        store.apply_retention(&config).await.expect("retention");
        assert_eq!(contents(&store, &id).await, ["a"]);
    }

    #[tokio::test]
    async fn time_based_deletes_old_messages_and_idle_conversations() {
        let (store, _dir) = open();
        let repo = store.conversations();
        let old = repo.create(None).await.expect("create").id;
        repo.append(&old, vec![message(Role::User, "ancient", 1)])
            .await
            .expect("append");
        let mixed = repo.create(None).await.expect("create").id;
        let batch = vec![
            message(Role::User, "old", 1),
            message(Role::User, "older", 1),
        ];
        repo.append(&mixed, batch).await.expect("append");
        repo.append(&mixed, vec![message(Role::User, "new", 1)])
            .await
            .expect("append");
        // Age everything but the newest message of `mixed` by a day.
        let day = 24 * 3600 * 1000;
        let old_id = old.as_str().to_string();
        store
            .write(move |tx| {
                tx.execute(
                    "UPDATE messages SET created_at = created_at - ?1 WHERE content != 'new'",
                    [day],
                )?;
                tx.execute(
                    "UPDATE conversations SET updated_at = updated_at - ?1 WHERE id = ?2",
                    params![day, old_id],
                )?;

                Ok(())
            })
            .await
            .expect("age");
        let config = RetentionConfig {
            max_age: Duration::from_secs(3600),
            ..policy(RetentionPolicy::TimeBased)
        };
        let report = store.apply_retention(&config).await.expect("retention");
        assert_eq!(contents(&store, &mixed).await, ["new"]);
        assert!(matches!(repo.get(&old).await, Err(StoreError::NotFound(_))));
        assert_eq!(report.conversations_deleted, 1);
        assert_eq!(report.messages_deleted, 3);
    }

    #[tokio::test]
    async fn unlimited_deletes_nothing() {
        let (store, _dir) = open();
        let repo = store.conversations();
        let id = repo.create(None).await.expect("create").id;
        repo.append(&id, vec![message(Role::User, "keep", 1_000_000)])
            .await
            .expect("append");
        let report = store
            .apply_retention(&RetentionConfig::default())
            .await
            .expect("retention");
        assert_eq!(report, RetentionReport::default());
        assert_eq!(contents(&store, &id).await, ["keep"]);
    }
}
