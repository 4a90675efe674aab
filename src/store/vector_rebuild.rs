//! `mcp-platform reembed`: rebuilds the vector tables for another embedder or size. New vectors
//! are staged in a plain table, batch by batch (an interrupted run loses nothing and can be run
//! again); then one transaction drops the old `vec0` tables, creates them with the new size,
//! fills them from the staging table and records the new vector space.

use rusqlite::{Connection, params};

use super::memories::{MAX_TAGS, PendingBatch};
use super::vectors::to_blob;
use super::{Store, StoreError, now_ms};
use crate::config::VectorSpace;

/// What `finish` rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReembedCounts {
    pub memories: u64,
    pub messages: u64,
}

/// Kinds of staged vectors.
pub const MEMORY: &str = "memory";
pub const MESSAGE: &str = "message";

impl Store {
    /// Starts (or restarts) staging.
    pub async fn reembed_begin(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute_batch(
                "DROP TABLE IF EXISTS reembed_staging;
                 CREATE TABLE reembed_staging (
                     kind   TEXT NOT NULL,
                     id     INTEGER NOT NULL,
                     vector BLOB NOT NULL,
                     PRIMARY KEY (kind, id)
                 ) STRICT;",
            )?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` memories after id `after`: `(id, text)`.
    pub async fn memory_texts(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, text FROM memories WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement
                .query_map(params![after, limit], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Up to `limit` messages after id `after` that history search embeds, and the last id
    /// looked at.
    pub async fn searchable_messages(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<PendingBatch, StoreError> {
        self.read(move |conn| super::memories::messages_after(conn, after, limit))
            .await
    }

    /// Stages vectors of `kind` (`MEMORY` or `MESSAGE`) for `space`.
    pub async fn reembed_stage(
        &self,
        kind: &'static str,
        vectors: Vec<(i64, Vec<f32>)>,
        space: &VectorSpace,
    ) -> Result<(), StoreError> {
        let rows = vectors
            .into_iter()
            .map(|(id, v)| Ok((id, to_blob(&v, space.dimensions)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_large(move |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO reembed_staging (kind, id, vector) VALUES (?1, ?2, ?3)",
            )?;
            for (id, blob) in &rows {
                insert.execute(params![kind, id, blob])?;
            }
            Ok(())
        })
        .await
    }

    /// Swaps the staged vectors in, in one transaction; `messages_up_to` is the last message
    /// id looked at.
    pub async fn reembed_finish(
        &self,
        space: VectorSpace,
        messages_up_to: i64,
    ) -> Result<ReembedCounts, StoreError> {
        self.write_large(move |tx| {
            tx.execute_batch(&vector_tables_sql(space.dimensions))?;
            let memories = fill_memory_vectors(tx)?;
            let messages = tx.execute(
                "INSERT INTO message_vectors (message_id, embedding, conversation_id, owner_id) \
                 SELECT s.id, s.vector, m.conversation_id, c.owner_id FROM reembed_staging s \
                 JOIN messages m ON m.id = s.id \
                 JOIN conversations c ON c.id = m.conversation_id WHERE s.kind = 'message'",
                [],
            )?;
            tx.execute(
                "UPDATE vector_space SET embedder = ?1, dimensions = ?2, \
                 messages_embedded_up_to = ?3, updated_at = ?4 WHERE id = 1",
                params![space.embedder, space.dimensions, messages_up_to, now_ms()],
            )?;
            tx.execute_batch("DROP TABLE reembed_staging;")?;
            Ok(ReembedCounts {
                memories,
                messages: messages as u64,
            })
        })
        .await
    }
}

/// The vector tables, dropped and created anew with `dimensions` (as migrations 0003 to 0005
/// made them).
fn vector_tables_sql(dimensions: u32) -> String {
    format!(
        "DROP TABLE memory_vectors;
         DROP TABLE message_vectors;
         CREATE VIRTUAL TABLE memory_vectors USING vec0(
             embedding float[{dimensions}] distance_metric=cosine,
             tag text,
             conversation_id text,
             owner_id integer,
             chunk_size=64
         );
         CREATE VIRTUAL TABLE message_vectors USING vec0(
             message_id integer primary key,
             embedding float[{dimensions}] distance_metric=cosine,
             conversation_id text,
             owner_id integer,
             chunk_size=64
         );"
    )
}

/// A staged memory vector goes in once untagged and once per tag (see `memories.rs`).
fn fill_memory_vectors(conn: &Connection) -> Result<u64, StoreError> {
    let mut staged = conn.prepare(
        "SELECT s.id, s.vector, m.tags, m.conversation_id, m.owner_id FROM reembed_staging s \
         JOIN memories m ON m.id = s.id WHERE s.kind = 'memory'",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id, owner_id) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut rows = staged.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let blob: Vec<u8> = row.get(1)?;
        let tags: Vec<String> = serde_json::from_str(&row.get::<_, String>(2)?).unwrap_or_default();
        let conversation: String = row.get::<_, Option<String>>(3)?.unwrap_or_default();
        let owner: i64 = row.get(4)?;
        let slots = std::iter::once(String::new()).chain(tags.into_iter().take(MAX_TAGS));
        for (slot, tag) in (0_i64..).zip(slots) {
            insert.execute(params![id * 16 + slot, blob, tag, conversation, owner])?;
        }
        count += 1;
    }
    Ok(count)
}
