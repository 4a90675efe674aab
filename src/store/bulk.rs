//! Rows in and out for `mcp-platform export` and `import` (the file format and its checks are
//! in `crate::transfer`): whole conversations with their messages, and memories, keeping their
//! ids (conversations), order (`seq`) and times. An import never overwrites: a conversation
//! whose id exists, or a memory whose owner already has the same text, is skipped.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::memories::insert_memory;
use super::model::{Attachment, ConversationId, MessageStatus, NewMessage, Role};
use super::principals::PrincipalId;
use super::vectors::to_blob;
use super::{Store, StoreError};

/// A conversation with its messages, as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationRecord {
    pub id: ConversationId,
    /// The name of the key (principal) it belongs to.
    pub owner: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub messages: Vec<MessageRecord>,
}

/// One message of a conversation, as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRecord {
    /// Position in the conversation: increasing.
    pub seq: i64,
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default = "complete")]
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<serde_json::Value>,
    #[serde(default)]
    pub token_count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    pub created_at: i64,
}

fn complete() -> MessageStatus {
    MessageStatus::Complete
}

/// A memory, as exported (its vector is made again by the importing server's embedder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRecord {
    pub owner: String,
    pub text: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    pub created_at: i64,
}

impl MessageRecord {
    fn as_new(&self) -> NewMessage {
        NewMessage {
            role: self.role,
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
            request_id: self.request_id.clone(),
            status: self.status,
            token_count: self.token_count,
            model: self.model.clone(),
            usage: self.usage.clone(),
            attachments: self.attachments.clone(),
        }
    }
}

impl ConversationRecord {
    /// What the store would refuse, said before anything is written.
    pub fn check(&self) -> Result<(), StoreError> {
        super::model::check_title(self.title.as_deref())?;
        super::model::check_system_prompt(self.system_prompt.as_deref())?;
        let mut last = 0;
        for message in &self.messages {
            if message.seq <= last {
                return Err(StoreError::InvalidInput(format!(
                    "message seq {} comes after seq {last}: seqs must increase",
                    message.seq
                )));
            }
            last = message.seq;
            message.as_new().check().map_err(|error| {
                StoreError::InvalidInput(format!("message seq {}: {error}", message.seq))
            })?;
        }
        Ok(())
    }
}

impl MemoryRecord {
    pub fn check(&self) -> Result<(), StoreError> {
        if self.text.trim().is_empty() {
            return Err(StoreError::InvalidInput(
                "the memory's text is empty".into(),
            ));
        }
        super::memories::clean_tags(self.tags.clone()).map(|_| ())
    }
}

const MESSAGE_COLUMNS: &str = "seq, role, content, tool_calls, tool_call_id, request_id, status, \
    model, usage, token_count, attachments, created_at";

impl Store {
    /// Up to `limit` conversations after id `after` (in id order), of `owner` or everyone's.
    pub async fn export_conversations(
        &self,
        owner: Option<PrincipalId>,
        after: String,
        limit: usize,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT c.id, p.name, c.title, c.system_prompt, c.created_at, c.updated_at
                 FROM conversations c JOIN principals p ON p.id = c.owner_id
                 WHERE c.id > ?1 AND (?2 IS NULL OR c.owner_id = ?2) ORDER BY c.id LIMIT ?3",
            )?;
            let heads = statement
                .query_map(params![after, owner.map(|o| o.0), limit], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            heads
                .into_iter()
                .map(
                    |(id, owner, title, system_prompt, created_at, updated_at)| {
                        let messages = messages_of(conn, &id)?;
                        Ok(ConversationRecord {
                            id: ConversationId::try_from(id)?,
                            owner,
                            title,
                            system_prompt,
                            created_at,
                            updated_at,
                            messages,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    /// Up to `limit` memories after id `after`, of `owner` or everyone's, with their ids.
    pub async fn export_memories(
        &self,
        owner: Option<PrincipalId>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, MemoryRecord)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT m.id, p.name, m.text, m.tags, m.conversation_id, m.created_at
                 FROM memories m JOIN principals p ON p.id = m.owner_id
                 WHERE m.id > ?1 AND (?2 IS NULL OR m.owner_id = ?2) ORDER BY m.id LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![after, owner.map(|o| o.0), limit], |row| {
                    let tags: String = row.get(3)?;
                    Ok((
                        row.get(0)?,
                        MemoryRecord {
                            owner: row.get(1)?,
                            text: row.get(2)?,
                            tags: serde_json::from_str(&tags).unwrap_or_default(),
                            conversation_id: row.get(4)?,
                            created_at: row.get(5)?,
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Stores an exported conversation for `owner`, as it was (id, seqs, times), in one
    /// transaction; `false` when its id is already taken (nothing is written).
    pub async fn import_conversation(
        &self,
        owner: PrincipalId,
        mut record: ConversationRecord,
    ) -> Result<bool, StoreError> {
        for message in &mut record.messages {
            if let Some(calls) = message.tool_calls.as_mut().filter(|c| c.is_array()) {
                *calls = super::model::nested_tool_calls(calls).map_err(|error| {
                    StoreError::InvalidInput(format!("message seq {}: {error}", message.seq))
                })?;
            }
        }
        record.check()?;
        self.write_large(move |tx| insert_conversation(tx, owner, &record))
            .await
    }

    /// Stores an exported memory for `owner` with its vector; `false` when the owner already
    /// has a memory of the same text (nothing is written).
    pub async fn import_memory(
        &self,
        owner: PrincipalId,
        record: MemoryRecord,
        vector: &[f32],
    ) -> Result<bool, StoreError> {
        record.check()?;
        let tags = super::memories::clean_tags(record.tags)?;
        let blob = to_blob(vector, self.dimensions())?;
        self.write(move |tx| {
            let present = tx
                .prepare_cached("SELECT 1 FROM memories WHERE owner_id = ?1 AND text = ?2")?
                .query_row(params![owner.0, record.text], |_| Ok(()))
                .optional()?;
            if present.is_some() {
                return Ok(false);
            }
            let memory =
                insert_memory(tx, owner, record.text, tags, record.conversation_id, &blob)?;
            tx.prepare_cached("UPDATE memories SET created_at = ?2 WHERE id = ?1")?
                .execute(params![memory.id, record.created_at])?;
            Ok(true)
        })
        .await
    }
}

fn messages_of(conn: &Connection, id: &str) -> Result<Vec<MessageRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = statement.query([id])?;
    let mut messages = Vec::new();
    while let Some(row) = rows.next()? {
        let json = |index: usize| -> Result<Option<serde_json::Value>, StoreError> {
            row.get::<_, Option<String>>(index)?
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message of {id}: {e}")))
        };
        let attachments = match row.get::<_, Option<String>>(10)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("attachments of {id}: {e}")))?,
            None => Vec::new(),
        };
        let role: String = row.get(1)?;
        let status: String = row.get(6)?;
        messages.push(MessageRecord {
            seq: row.get(0)?,
            role: role.parse()?,
            content: row.get(2)?,
            tool_calls: json(3)?,
            tool_call_id: row.get(4)?,
            request_id: row.get(5)?,
            status: status.parse()?,
            model: row.get(7)?,
            usage: json(8)?,
            token_count: row.get(9)?,
            attachments,
            created_at: row.get(11)?,
        });
    }
    Ok(messages)
}

fn insert_conversation(
    tx: &Transaction<'_>,
    owner: PrincipalId,
    record: &ConversationRecord,
) -> Result<bool, StoreError> {
    let next_seq = record.messages.last().map_or(1, |m| m.seq + 1);
    let count = i64::try_from(record.messages.len()).unwrap_or(i64::MAX);
    let tokens: i64 = record
        .messages
        .iter()
        .map(|m| i64::from(m.token_count))
        .sum();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO conversations (id, title, system_prompt, created_at, updated_at,
                 next_seq, message_count, token_count, owner_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            record.id.as_str(),
            record.title,
            record.system_prompt,
            record.created_at,
            record.updated_at,
            next_seq,
            count,
            tokens,
            owner.0
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO messages (conversation_id, {MESSAGE_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?;
    for m in &record.messages {
        let json = |value: &Option<serde_json::Value>| value.as_ref().map(ToString::to_string);
        let attachments = if m.attachments.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&m.attachments)
                    .map_err(|e| StoreError::InvalidInput(e.to_string()))?,
            )
        };
        insert.execute(params![
            record.id.as_str(),
            m.seq,
            m.role.as_str(),
            m.content,
            json(&m.tool_calls),
            m.tool_call_id,
            m.request_id,
            m.status.as_str(),
            m.model,
            json(&m.usage),
            m.token_count,
            attachments,
            m.created_at
        ])?;
    }
    Ok(true)
}
