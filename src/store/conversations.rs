//! The conversations repository: conversations and their messages.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::history_window::HistoryWindow;
use super::model::{
    Conversation, ConversationId, ConversationUpdate, NewMessage, Page, StoredMessage,
};
use super::principals::Owner;
use super::prompt_cache::PromptEntry;
use super::{Store, StoreError, history_cache, now_ms};

/// Largest page a listing returns, whatever the caller asks.
pub const MAX_PAGE: u32 = 200;

/// Conversations and messages as one owner sees them: another owner's conversation is
/// `NotFound`, exactly like one that does not exist.
pub struct Conversations {
    store: Store,
    owner: Owner,
}

/// Conversation columns with the owner's name (`FROM conversations c JOIN principals p`).
const CONVERSATION_COLUMNS: &str = "c.id, c.title, c.created_at, c.updated_at, c.message_count, c.token_count, p.name, \
     c.system_prompt";
const CONVERSATION_FROM: &str = "conversations c JOIN principals p ON p.id = c.owner_id";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, tool_calls, tool_call_id, \
     request_id, status, token_count, model, usage, created_at, attachments";

impl Conversations {
    pub(super) fn new(store: Store, owner: Owner) -> Self {
        Self { store, owner }
    }

    pub async fn create(&self, title: Option<String>) -> Result<Conversation, StoreError> {
        let (history_epoch, prompt_epoch) = (
            self.store.history_cache().epoch(),
            self.store.prompt_cache().epoch(),
        );
        let created = self
            .create_with_id(ConversationId::generate(), title)
            .await?;
        // No messages yet and no prompt of its own: its first turns need not read them. (Not
        // for a caller-chosen id: an import would fill the cache with conversations nobody
        // chats in.)
        self.store
            .history_cache()
            .fill(&created.id, Vec::new(), 1, true, history_epoch);
        let entry = PromptEntry {
            owner: self.owner.id.0,
            prompt: None,
        };
        self.store
            .prompt_cache()
            .fill(&created.id, entry, prompt_epoch);
        Ok(created)
    }

    /// Creates a conversation under a caller-chosen id (imports, clients that name their own).
    pub async fn create_with_id(
        &self,
        id: ConversationId,
        title: Option<String>,
    ) -> Result<Conversation, StoreError> {
        super::model::check_title(title.as_deref())?;
        let owner = self.owner.id.0;
        self.store
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached(
                    "INSERT INTO conversations (id, title, created_at, updated_at, owner_id) VALUES (?1, ?2, ?3, ?3, ?4)",
                )?
                .execute(params![id.as_str(), title, now, owner])
                .map_err(|e| match &e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        StoreError::AlreadyExists("conversation")
                    }
                    _ => e.into(),
                })?;
                let owner = tx
                    .prepare_cached("SELECT name FROM principals WHERE id = ?1")?
                    .query_row([owner], |row| row.get(0))?;
                Ok(Conversation { id, title, created_at: now, updated_at: now, message_count: 0, token_count: 0, owner, system_prompt: None })
            })
            .await
    }

    pub async fn get(&self, id: &ConversationId) -> Result<Conversation, StoreError> {
        let (id, owner) = (id.clone(), self.owner.filter());
        self.store
            .read(move |conn| {
                find_conversation(conn, &id, owner)?.ok_or(StoreError::NotFound("conversation"))
            })
            .await
    }

    /// Most recently active first. `cursor` is the `next_cursor` of the previous page.
    pub async fn list(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<Page<Conversation>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let after = cursor
            .as_deref()
            .map(parse_conversation_cursor)
            .transpose()?;
        let owner = self.owner.filter();
        self.store
            .read(move |conn| {
                let (updated_at, id) = after.unwrap_or((i64::MAX, String::new()));
                let rows = i64::from(limit) + 1;
                // Two statements, so that each keeps its own plan (owner index or activity).
                let mut items = if let Some(owner) = owner {
                    conn.prepare_cached(&format!(
                        "SELECT {CONVERSATION_COLUMNS} FROM {CONVERSATION_FROM}
                         WHERE c.owner_id = ?4 AND (c.updated_at, c.id) < (?1, ?2)
                         ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3"
                    ))?
                    .query_map(params![updated_at, id, rows, owner], conversation_from_row)?
                    .collect::<Result<Vec<_>, _>>()?
                } else {
                    conn.prepare_cached(&format!(
                        "SELECT {CONVERSATION_COLUMNS} FROM {CONVERSATION_FROM}
                         WHERE (c.updated_at, c.id) < (?1, ?2)
                         ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3"
                    ))?
                    .query_map(params![updated_at, id, rows], conversation_from_row)?
                    .collect::<Result<Vec<_>, _>>()?
                };
                let next_cursor = if items.len() > limit as usize {
                    items.truncate(limit as usize);
                    items.last().map(Conversation::page_cursor)
                } else {
                    None
                };
                Ok(Page { items, next_cursor })
            })
            .await
    }

    /// Renames the conversation or sets its system prompt (see [`ConversationUpdate`]); the
    /// conversation's activity time is unchanged, so renaming does not reorder a listing.
    pub async fn update(
        &self,
        id: &ConversationId,
        update: ConversationUpdate,
    ) -> Result<Conversation, StoreError> {
        let title = update.title.map(|t| t.trim().to_string());
        let prompt = update.system_prompt;
        super::model::check_title(title.as_deref())?;
        super::model::check_system_prompt(prompt.as_deref())?;
        let _changed = self.store.prompt_cache().changed_on_drop(id);
        let (id, owner) = (id.clone(), self.owner.filter());
        self.store
            .write(move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE conversations SET
                           title = CASE WHEN ?3 IS NULL THEN title ELSE nullif(?3, '') END,
                           system_prompt = CASE WHEN ?4 IS NULL THEN system_prompt
                                                ELSE nullif(trim(?4), '') END
                         WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
                    )?
                    .execute(params![id.as_str(), owner, title, prompt])?;
                if changed == 0 {
                    return Err(StoreError::NotFound("conversation"));
                }
                find_conversation(tx, &id, owner)?.ok_or(StoreError::NotFound("conversation"))
            })
            .await
    }

    /// The conversation's own system prompt (`None`: the configured one); served from memory
    /// for a conversation seen recently.
    pub async fn system_prompt(&self, id: &ConversationId) -> Result<Option<String>, StoreError> {
        let entry = self.prompt_entry(id).await?;
        if !self.owner.sees(entry.owner) {
            return Err(StoreError::NotFound("conversation"));
        }
        Ok(entry.prompt.map(|p| p.to_string()))
    }

    /// The conversation's owner and prompt, from the cache or else the database.
    async fn prompt_entry(&self, id: &ConversationId) -> Result<PromptEntry, StoreError> {
        let cache = self.store.prompt_cache();
        if let Some(entry) = cache.get(id) {
            return Ok(entry);
        }
        let epoch = cache.epoch();
        let key = id.clone();
        let entry = self
            .store
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT owner_id, system_prompt FROM conversations WHERE id = ?1",
                )?
                .query_row(params![key.as_str()], |row| {
                    Ok(PromptEntry {
                        owner: row.get(0)?,
                        prompt: row.get::<_, Option<String>>(1)?.map(Arc::from),
                    })
                })
                .optional()?
                .ok_or(StoreError::NotFound("conversation"))
            })
            .await?;
        cache.fill(id, entry.clone(), epoch);
        Ok(entry)
    }

    /// Deletes the conversation and all its messages.
    pub async fn delete(&self, id: &ConversationId) -> Result<(), StoreError> {
        let (id, owner) = (id.clone(), self.owner.filter());
        let _forget = self.store.forget_deleted_on_drop();
        self.store
            .write_large(move |tx| {
                let deleted = tx.execute(
                    "DELETE FROM conversations WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
                    params![id.as_str(), owner],
                )?;
                match deleted {
                    0 => Err(StoreError::NotFound("conversation")),
                    _ => Ok(()),
                }
            })
            .await
    }

    /// Appends `messages` in one transaction, in the given order, after the conversation's
    /// last message. A user message whose `request_id` is already stored fails the whole
    /// batch with [`StoreError::DuplicateRequest`].
    pub async fn append(
        &self,
        id: &ConversationId,
        mut messages: Vec<NewMessage>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        for message in &mut messages {
            message.normalize()?;
            message.check()?;
        }
        if messages.is_empty() {
            self.get(id).await?;
            return Ok(Vec::new());
        }
        let (conversation, owner) = (id.clone(), self.owner.filter());
        let epoch = self.store.history_cache().epoch();
        let stored = self
            .store
            .write(move |tx| insert_messages(tx, &conversation, owner, messages))
            .await?;
        self.store.history_cache().appended(id, &stored, epoch);
        Ok(stored)
    }

    /// Every message of the conversation, in order.
    pub async fn history(&self, id: &ConversationId) -> Result<Vec<StoredMessage>, StoreError> {
        let (id, owner) = (id.clone(), self.owner.filter());
        self.store
            .read(move |conn| {
                require_conversation(conn, &id, owner)?;
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq"
                ))?;
                collect_messages(statement.query(params![id.as_str()])?)
            })
            .await
    }

    /// The `limit` latest messages before `before_seq` (or the latest), returned in order;
    /// `next_cursor` is the `before_seq` of the older page.
    pub async fn history_page(
        &self,
        id: &ConversationId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredMessage>, StoreError> {
        let (id, owner) = (id.clone(), self.owner.filter());
        let limit = limit.clamp(1, MAX_PAGE);
        self.store
            .read(move |conn| {
                require_conversation(conn, &id, owner)?;
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2
                     ORDER BY seq DESC LIMIT ?3"
                ))?;
                let rows = statement.query(params![
                    id.as_str(),
                    before_seq.unwrap_or(i64::MAX),
                    i64::from(limit) + 1
                ])?;
                let mut items = collect_messages(rows)?;
                let more = items.len() > limit as usize;
                items.truncate(limit as usize);
                items.reverse();
                let next_cursor = more
                    .then(|| items.first().map(|m| m.seq.to_string()))
                    .flatten();
                Ok(Page { items, next_cursor })
            })
            .await
    }

    /// The latest messages before `before_seq`, in order, reading back until their stored
    /// token counts pass `token_limit` (the message that passes it included) or `max_rows`
    /// are read: the candidates for a context window, read without loading the whole
    /// conversation.
    pub async fn recent(
        &self,
        id: &ConversationId,
        before_seq: i64,
        token_limit: u32,
        max_rows: u32,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        let cache = self.store.history_cache();
        if let Some(cached) = cache.recent(id, before_seq, token_limit, max_rows) {
            return Ok(cached);
        }
        let epoch = cache.epoch();
        let owned = id.clone();
        let (items, whole, newer) = self
            .store
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2
                     ORDER BY seq DESC LIMIT ?3"
                ))?;
                let mut rows = statement.query(params![owned.as_str(), before_seq, max_rows])?;
                let mut window = HistoryWindow::new(token_limit, max_rows);
                while window.wants_more() {
                    let Some(row) = rows.next()? else { break };
                    window.push(Arc::new(message_from_row(row)?));
                }
                let (items, whole) = window.finish();
                // The messages from `before_seq` on (usually the turn's own), so that the tail
                // kept in memory reaches the conversation's end and later appends extend it.
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq >= ?2
                     ORDER BY seq LIMIT ?3"
                ))?;
                let beyond = i64::try_from(history_cache::MAX_ROWS + 1).unwrap_or(i64::MAX);
                let newer = collect_messages(statement.query(params![
                    owned.as_str(),
                    before_seq,
                    beyond
                ])?)?;
                Ok((items, whole, newer))
            })
            .await?;
        // More newer messages than a tail holds (an old request answered again): keep nothing.
        if newer.len() <= history_cache::MAX_ROWS {
            let next_seq = newer.last().map_or(before_seq, |m| m.seq + 1);
            let tail = items
                .iter()
                .cloned()
                .chain(newer.into_iter().map(Arc::new))
                .collect();
            cache.fill(id, tail, next_seq, whole, epoch);
        }
        Ok(items)
    }

    /// The messages a request produced (its user message first), empty if it never arrived.
    pub async fn find_by_request(
        &self,
        id: &ConversationId,
        request_id: &str,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (id, request_id) = (id.clone(), request_id.to_string());
        let owner = self.owner.filter();
        self.store
            .read(move |conn| {
                require_conversation(conn, &id, owner)?;
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND request_id = ?2
                     ORDER BY seq"
                ))?;
                collect_messages(statement.query(params![id.as_str(), request_id])?)
            })
            .await
    }
}

fn insert_messages(
    tx: &rusqlite::Transaction<'_>,
    id: &ConversationId,
    owner: Option<i64>,
    messages: Vec<NewMessage>,
) -> Result<Vec<StoredMessage>, StoreError> {
    let now = now_ms();
    let count = i64::try_from(messages.len()).unwrap_or(i64::MAX);
    let tokens: i64 = messages.iter().map(|m| i64::from(m.token_count)).sum();
    // Two plain statements rather than `UPDATE … RETURNING` and `INSERT … RETURNING`: SQLite
    // gathers RETURNING rows in a temporary b-tree it opens and frees every time.
    let updated = tx
        .prepare_cached(
            "UPDATE conversations SET next_seq = next_seq + ?2, message_count = message_count + ?2,
                 token_count = token_count + ?3, updated_at = ?4
             WHERE id = ?1 AND (?5 IS NULL OR owner_id = ?5)",
        )?
        .execute(params![id.as_str(), count, tokens, now, owner])?;
    if updated == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    let next_seq: i64 = tx
        .prepare_cached("SELECT next_seq FROM conversations WHERE id = ?1")?
        .query_row([id.as_str()], |row| row.get(0))?;
    let first_seq = next_seq - count;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, role, content, tool_calls, tool_call_id,
             request_id, status, token_count, model, usage, created_at, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut stored = Vec::with_capacity(messages.len());
    for (seq, m) in (first_seq..).zip(messages) {
        let tool_calls = m.tool_calls.as_ref().map(serde_json::Value::to_string);
        let usage = m.usage.as_ref().map(serde_json::Value::to_string);
        let attachments = if m.attachments.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&m.attachments).map_err(|e| {
                StoreError::InvalidInput(format!("attachments cannot be stored: {e}"))
            })?)
        };
        insert
            .execute(params![
                id.as_str(),
                seq,
                m.role.as_str(),
                m.content,
                tool_calls,
                m.tool_call_id,
                m.request_id,
                m.status.as_str(),
                m.token_count,
                m.model,
                usage,
                now,
                attachments
            ])
            .map_err(|e| duplicate_request(e, m.request_id.as_deref()))?;
        let row_id = tx.last_insert_rowid();
        stored.push(StoredMessage {
            id: row_id,
            conversation_id: id.clone(),
            seq,
            role: m.role,
            content: m.content,
            tool_calls: m.tool_calls,
            tool_call_id: m.tool_call_id,
            request_id: m.request_id,
            status: m.status,
            token_count: i64::from(m.token_count),
            model: m.model,
            usage: m.usage,
            created_at: now,
            attachments: m.attachments,
        });
    }
    Ok(stored)
}

/// The only unique key an append can break is `messages_by_request` (seq comes from the
/// conversation's counter), so a unique violation means the request was already stored.
fn duplicate_request(error: rusqlite::Error, request_id: Option<&str>) -> StoreError {
    match (&error, request_id) {
        (rusqlite::Error::SqliteFailure(e, _), Some(request_id))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::DuplicateRequest {
                request_id: request_id.to_string(),
            }
        }
        _ => error.into(),
    }
}

fn parse_conversation_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let invalid = || StoreError::InvalidInput(format!("invalid cursor `{cursor}`"));
    let (updated_at, id) = cursor.split_once(':').ok_or_else(invalid)?;
    Ok((updated_at.parse().map_err(|_| invalid())?, id.to_string()))
}

fn find_conversation(
    conn: &Connection,
    id: &ConversationId,
    owner: Option<i64>,
) -> Result<Option<Conversation>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM {CONVERSATION_FROM}
         WHERE c.id = ?1 AND (?2 IS NULL OR c.owner_id = ?2)"
    ))?;
    Ok(statement
        .query_row(params![id.as_str(), owner], conversation_from_row)
        .optional()?)
}

fn require_conversation(
    conn: &Connection,
    id: &ConversationId,
    owner: Option<i64>,
) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached(
            "SELECT 1 FROM conversations WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
        )?
        .query_row(params![id.as_str(), owner], |_| Ok(()))
        .optional()?;
    exists.ok_or(StoreError::NotFound("conversation"))
}

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: ConversationId::try_from(row.get::<_, String>(0)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        title: row.get(1)?,
        created_at: row.get(2)?,
        updated_at: row.get(3)?,
        message_count: row.get(4)?,
        token_count: row.get(5)?,
        owner: row.get(6)?,
        system_prompt: row.get(7)?,
    })
}

fn collect_messages(mut rows: rusqlite::Rows<'_>) -> Result<Vec<StoredMessage>, StoreError> {
    let mut messages = Vec::new();
    while let Some(row) = rows.next()? {
        messages.push(message_from_row(row)?);
    }
    Ok(messages)
}

fn message_from_row(row: &Row<'_>) -> Result<StoredMessage, StoreError> {
    let json = |index: usize| -> Result<Option<serde_json::Value>, StoreError> {
        row.get::<_, Option<String>>(index)?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("message JSON: {e}")))
            })
            .transpose()
    };
    Ok(StoredMessage {
        id: row.get(0)?,
        conversation_id: ConversationId::try_from(row.get::<_, String>(1)?)?,
        seq: row.get(2)?,
        role: row.get::<_, String>(3)?.parse()?,
        content: row.get(4)?,
        tool_calls: json(5)?,
        tool_call_id: row.get(6)?,
        request_id: row.get(7)?,
        status: row.get::<_, String>(8)?.parse()?,
        token_count: row.get(9)?,
        model: row.get(10)?,
        usage: json(11)?,
        created_at: row.get(12)?,
        attachments: match row.get::<_, Option<String>>(13)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("message attachments: {e}")))?,
            None => Vec::new(),
        },
    })
}
