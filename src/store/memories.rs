//! The memories repository, and the message vectors of history search: KNN through sqlite-vec
//! with the filters (tag, conversation) inside the `vec0` query, never after it.
//!
//! A memory's vector is stored once untagged (`tag = ''`) and once per tag, at rowid
//! `id * 16 + slot`, because a `vec0` metadata column holds one value: a tag filter is then a
//! plain `tag IN (…)` constraint of the KNN query.

use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};
use serde::Serialize;

use super::model::Page;
use super::principals::PrincipalId;
use super::vectors::{self, MemoryCounts, Vector, to_blob};
use super::{Store, StoreError, now_ms};

/// Tags per memory at most (slots 1..=8 of 16).
pub const MAX_TAGS: usize = 8;
const SLOTS: i64 = 16;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    pub id: i64,
    pub text: String,
    pub tags: Vec<String>,
    pub conversation_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryHit {
    #[serde(flatten)]
    pub memory: Memory,
    /// Cosine similarity, 1 for the same direction.
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageHit {
    pub message_id: i64,
    pub conversation_id: String,
    pub role: String,
    pub snippet: String,
    pub score: f64,
    pub created_at: i64,
}

/// A memory to store with its vector.
#[derive(Debug, Clone)]
pub struct NewMemory {
    pub text: String,
    pub tags: Vec<String>,
    pub conversation_id: Option<String>,
    pub vector: Vector,
}

/// One message to embed for history search.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub id: i64,
    pub conversation_id: String,
    pub content: String,
}

/// Messages after a watermark, as history search sees them: what the indexer (or `reembed`)
/// embeds next.
#[derive(Debug)]
pub struct PendingBatch {
    pub messages: Vec<PendingMessage>,
    /// The last id looked at: the watermark moves there once the vectors are stored.
    pub up_to: Option<i64>,
    /// The read stopped at its limit: more may be waiting.
    pub full: bool,
}

/// One principal's memories and history search; other principals' rows are invisible.
pub struct Memories {
    store: Store,
    owner: PrincipalId,
}

impl Memories {
    pub(super) fn new(store: Store, owner: PrincipalId) -> Self {
        Self { store, owner }
    }

    /// Stores a memory and its vectors in one transaction.
    pub async fn store(
        &self,
        text: String,
        tags: Vec<String>,
        conversation_id: Option<String>,
        vector: &[f32],
    ) -> Result<Memory, StoreError> {
        let tags = clean_tags(tags)?;
        if text.trim().is_empty() {
            return Err(StoreError::InvalidInput(
                "the memory's text is empty".into(),
            ));
        }
        let blob = to_blob(vector, self.store.dimensions())?;
        let owner = self.owner;
        self.store
            .write(move |tx| insert_memory(tx, owner, text, tags, conversation_id, &blob))
            .await
    }

    /// Stores several memories in one transaction (imports, benchmarks).
    pub async fn store_many(&self, memories: Vec<NewMemory>) -> Result<Vec<i64>, StoreError> {
        let dimensions = self.store.dimensions();
        let rows = memories
            .into_iter()
            .map(|m| {
                if m.text.trim().is_empty() {
                    return Err(StoreError::InvalidInput(
                        "the memory's text is empty".into(),
                    ));
                }
                Ok((
                    m.text,
                    clean_tags(m.tags)?,
                    m.conversation_id,
                    to_blob(&m.vector, dimensions)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let owner = self.owner;
        self.store
            .write(move |tx| {
                rows.into_iter()
                    .map(|(text, tags, conversation, blob)| {
                        insert_memory(tx, owner, text, tags, conversation, &blob).map(|m| m.id)
                    })
                    .collect()
            })
            .await
    }

    /// The `k` memories nearest `vector`, with any of `tags` if given, and of `conversation`
    /// if given.
    pub async fn find(
        &self,
        vector: &[f32],
        k: usize,
        tags: Vec<String>,
        conversation: Option<String>,
    ) -> Result<Vec<MemoryHit>, StoreError> {
        let tags = clean_tags(tags)?;
        let blob = to_blob(vector, self.store.dimensions())?;
        let owner = self.owner;
        self.store
            .read(move |conn| find_memories(conn, owner, &blob, k, &tags, conversation.as_deref()))
            .await
    }

    /// The newest `limit` memories (at most 200), before the memory id `before` if given;
    /// `next_cursor` is the id to pass as `before` for the next page.
    pub async fn list(&self, limit: u32, before: Option<i64>) -> Result<Page<Memory>, StoreError> {
        let limit = i64::from(limit.clamp(1, super::conversations::MAX_PAGE));
        let owner = self.owner.0;
        self.store
            .read(move |conn| {
                let mut items = conn
                    .prepare_cached(
                        "SELECT id, text, tags, conversation_id, created_at FROM memories
                         WHERE owner_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                    )?
                    .query_map(
                        params![owner, before.unwrap_or(i64::MAX), limit + 1],
                        memory_from_row,
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if i64::try_from(items.len()).unwrap_or(i64::MAX) > limit {
                    items.pop();
                    items.last().map(|m: &Memory| m.id.to_string())
                } else {
                    None
                };
                Ok(Page { items, next_cursor })
            })
            .await
    }

    /// Deletes a memory and (by trigger, in the same transaction) its vectors.
    pub async fn delete(&self, id: i64) -> Result<(), StoreError> {
        let owner = self.owner.0;
        self.store
            .write(move |tx| {
                let deleted = tx.execute(
                    "DELETE FROM memories WHERE id = ?1 AND owner_id = ?2",
                    [id, owner],
                )?;
                if deleted == 0 {
                    return Err(StoreError::NotFound("memory"));
                }
                Ok(())
            })
            .await
    }

    pub async fn counts(&self) -> Result<MemoryCounts, StoreError> {
        self.store.read(vectors::counts).await
    }

    /// Of the (at most `limit`) messages after the embedded watermark, those history search
    /// wants (finished user and assistant text), and the id the watermark may move to once
    /// they are stored.
    pub async fn pending_messages(&self, limit: usize) -> Result<PendingBatch, StoreError> {
        self.store
            .read(move |conn| pending_messages(conn, limit))
            .await
    }

    /// Stores message vectors (skipping messages deleted meanwhile) and moves the watermark
    /// to `up_to`, in one transaction.
    pub async fn put_message_vectors(
        &self,
        vectors: Vec<(PendingMessage, Vector)>,
        up_to: i64,
    ) -> Result<(), StoreError> {
        let dimensions = self.store.dimensions();
        let rows = vectors
            .into_iter()
            .map(|(m, v)| Ok((m.id, m.conversation_id, to_blob(&v, dimensions)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.store
            .write_large(move |tx| {
                // The owner is read first and the row inserted with VALUES: `INSERT … SELECT`
                // may write many rows, so SQLite would give it a statement journal and copy
                // every page sqlite-vec changes for it (~7 per vector) into memory first.
                let mut owner_of = tx.prepare_cached(
                    "SELECT c.owner_id FROM messages m \
                     JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?1",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO message_vectors (message_id, embedding, conversation_id, owner_id) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (id, conversation, blob) in &rows {
                    // A message deleted since it was read has no vector to keep.
                    let Some(owner) = owner_of
                        .query_row([id], |row| row.get::<_, i64>(0))
                        .optional()?
                    else {
                        continue;
                    };
                    insert.execute(params![id, blob, conversation, owner])?;
                }
                tx.prepare_cached(
                    "UPDATE vector_space SET messages_embedded_up_to = max(messages_embedded_up_to, ?1), \
                     updated_at = ?2 WHERE id = 1",
                )?
                .execute(params![up_to, now_ms()])?;
                Ok(())
            })
            .await
    }

    /// The `k` messages nearest `vector`, in `conversation` if given.
    pub async fn search_messages(
        &self,
        vector: &[f32],
        k: usize,
        conversation: Option<String>,
        snippet_chars: usize,
    ) -> Result<Vec<MessageHit>, StoreError> {
        let blob = to_blob(vector, self.store.dimensions())?;
        let owner = self.owner;
        self.store
            .read(move |conn| {
                search_messages(
                    conn,
                    owner,
                    &blob,
                    k,
                    conversation.as_deref(),
                    snippet_chars,
                )
            })
            .await
    }
}

pub(super) fn clean_tags(tags: Vec<String>) -> Result<Vec<String>, StoreError> {
    let mut clean: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.len() > 64 {
            return Err(StoreError::InvalidInput(
                "a tag must have 1 to 64 characters".into(),
            ));
        }
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    if clean.len() > MAX_TAGS {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_TAGS} tags (got {})",
            clean.len()
        )));
    }
    Ok(clean)
}

pub(super) fn insert_memory(
    tx: &Transaction<'_>,
    owner: PrincipalId,
    text: String,
    tags: Vec<String>,
    conversation_id: Option<String>,
    blob: &[u8],
) -> Result<Memory, StoreError> {
    let created_at = now_ms();
    let tags_json = serde_json::to_string(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO memories (text, tags, conversation_id, created_at, owner_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![text, tags_json, conversation_id, created_at, owner.0],
    )?;
    let id = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached(
        "INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id, owner_id) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let conversation = conversation_id.clone().unwrap_or_default();
    let slots = std::iter::once(String::new()).chain(tags.iter().cloned());
    for (slot, tag) in (0_i64..).zip(slots) {
        insert.execute(params![id * SLOTS + slot, blob, tag, conversation, owner.0])?;
    }
    Ok(Memory {
        id,
        text,
        tags,
        conversation_id,
        created_at,
    })
}

fn find_memories(
    conn: &Connection,
    owner: PrincipalId,
    blob: &[u8],
    k: usize,
    tags: &[String],
    conversation: Option<&str>,
) -> Result<Vec<MemoryHit>, StoreError> {
    // Untagged rows when no tag is asked; else the rows of those tags, a memory appearing once
    // per matching tag, so ask for enough and keep each memory's best.
    let wanted: Vec<&str> = if tags.is_empty() {
        vec![""]
    } else {
        tags.iter().map(String::as_str).collect()
    };
    let placeholders = vec!["?"; wanted.len()].join(", ");
    let mut sql = format!(
        "SELECT rowid, distance FROM memory_vectors WHERE embedding MATCH ? AND k = ? \
         AND owner_id = ? AND tag IN ({placeholders})"
    );
    if conversation.is_some() {
        sql.push_str(" AND conversation_id = ?");
    }
    let fetch = i64::try_from(k * wanted.len()).unwrap_or(i64::MAX);
    let mut values: Vec<rusqlite::types::Value> =
        vec![blob.to_vec().into(), fetch.into(), owner.0.into()];
    values.extend(
        wanted
            .iter()
            .map(|t| rusqlite::types::Value::from((*t).to_string())),
    );
    if let Some(conversation) = conversation {
        values.push(conversation.to_string().into());
    }
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement
        .query_map(params_from_iter(values), |row| {
            Ok((row.get::<_, i64>(0)? / SLOTS, row.get::<_, f64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut hits: Vec<MemoryHit> = Vec::new();
    let mut get = conn.prepare_cached(
        "SELECT id, text, tags, conversation_id, created_at FROM memories WHERE id = ?1",
    )?;
    for (id, distance) in rows {
        if hits.len() == k || hits.iter().any(|h| h.memory.id == id) {
            continue;
        }
        let memory = get.query_row([id], memory_from_row)?;
        hits.push(MemoryHit {
            memory,
            score: 1.0 - distance,
        });
    }
    Ok(hits)
}

/// A memory from `id, text, tags, conversation_id, created_at`.
fn memory_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Memory> {
    let tags: String = row.get(2)?;
    Ok(Memory {
        id: row.get(0)?,
        text: row.get(1)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        conversation_id: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn pending_messages(conn: &Connection, limit: usize) -> Result<PendingBatch, StoreError> {
    let watermark: i64 = conn
        .prepare_cached("SELECT messages_embedded_up_to FROM vector_space WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    messages_after(conn, watermark, limit)
}

/// Up to `limit` messages after id `after`, keeping those history search embeds (finished user
/// and assistant text), the last id looked at, and whether the limit was reached.
pub(super) fn messages_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<PendingBatch, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, conversation_id, role, status, content FROM messages \
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let (mut last, mut looked_at) = (None, 0);
    let mut wanted = Vec::new();
    let mut rows = statement.query([after, i64::try_from(limit).unwrap_or(i64::MAX)])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        last = Some(id);
        looked_at += 1;
        let role: String = row.get(2)?;
        let status: String = row.get(3)?;
        let content: String = row.get(4)?;
        if matches!(role.as_str(), "user" | "assistant")
            && status == "complete"
            && !content.trim().is_empty()
        {
            wanted.push(PendingMessage {
                id,
                conversation_id: row.get(1)?,
                content,
            });
        }
    }
    Ok(PendingBatch {
        messages: wanted,
        up_to: last,
        full: looked_at >= limit,
    })
}

fn search_messages(
    conn: &Connection,
    owner: PrincipalId,
    blob: &[u8],
    k: usize,
    conversation: Option<&str>,
    snippet_chars: usize,
) -> Result<Vec<MessageHit>, StoreError> {
    let k = i64::try_from(k).unwrap_or(i64::MAX);
    let filter = if conversation.is_some() {
        " AND conversation_id = ?4"
    } else {
        ""
    };
    let sql = format!(
        "WITH knn AS (SELECT message_id, distance FROM message_vectors \
         WHERE embedding MATCH ?1 AND k = ?2 AND owner_id = ?3{filter}) \
         SELECT m.id, m.conversation_id, m.role, m.content, knn.distance, m.created_at \
         FROM knn JOIN messages m ON m.id = knn.message_id ORDER BY knn.distance"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let map = |row: &rusqlite::Row<'_>| {
        let content: String = row.get(3)?;
        Ok(MessageHit {
            message_id: row.get(0)?,
            conversation_id: row.get(1)?,
            role: row.get(2)?,
            snippet: snippet(&content, snippet_chars),
            score: 1.0 - row.get::<_, f64>(4)?,
            created_at: row.get(5)?,
        })
    };
    let hits = match conversation {
        Some(c) => statement.query_map(params![blob, k, owner.0, c], map)?,
        None => statement.query_map(params![blob, k, owner.0], map)?,
    };
    Ok(hits.collect::<Result<Vec<_>, _>>()?)
}

/// The first `chars` characters on one line, with an ellipsis when cut.
fn snippet(text: &str, chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= chars {
        return line;
    }
    let cut: String = line.chars().take(chars).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RepositoryConfig, VectorSpace};
    use crate::store::{NewMessage, Role};

    fn open(dimensions: u32) -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RepositoryConfig {
            path: dir.path().join("chat.db"),
            ..RepositoryConfig::default()
        };
        let space = VectorSpace {
            embedder: "test".into(),
            dimensions,
        };
        (Store::open_with(&config, &space).expect("store opens"), dir)
    }

    /// Unit vectors at `degrees` in the plane: cosine distance orders them by angle.
    fn at(degrees: f32) -> Vec<f32> {
        let r = degrees.to_radians();
        vec![r.cos(), r.sin(), 0.0]
    }

    async fn put(memories: &Memories, text: &str, degrees: f32, tags: &[&str], conv: Option<&str>) {
        memories
            .store(
                text.into(),
                tags.iter().map(|t| (*t).to_string()).collect(),
                conv.map(String::from),
                &at(degrees),
            )
            .await
            .expect("stored");
    }

    fn texts(hits: &[MemoryHit]) -> Vec<&str> {
        hits.iter().map(|h| h.memory.text.as_str()).collect()
    }

    #[tokio::test]
    async fn knn_returns_the_nearest_and_filters_apply_inside_the_query() {
        let (store, _dir) = open(3);
        let memories = store.memories();
        put(&memories, "a0", 0.0, &["work"], Some("c1")).await;
        put(&memories, "a10", 10.0, &[], Some("c2")).await;
        put(&memories, "a20", 20.0, &["home", "work"], None).await;
        put(&memories, "a90", 90.0, &["home"], Some("c1")).await;
        put(&memories, "a180", 180.0, &["work"], None).await;

        let hits = memories
            .find(&at(12.0), 3, vec![], None)
            .await
            .expect("find");
        assert_eq!(texts(&hits), ["a10", "a20", "a0"]);
        assert!(hits[0].score > hits[1].score && hits[0].score > 0.99);

        // The filter is inside the KNN: k = 2 still gives two `home` rows, though the three
        // nearest overall have one.
        let home = memories
            .find(&at(0.0), 2, vec!["home".into()], None)
            .await
            .expect("home");
        assert_eq!(texts(&home), ["a20", "a90"]);
        // Any of several tags, each memory once.
        let either = memories
            .find(&at(0.0), 10, vec!["work".into(), "HOME".into()], None)
            .await
            .expect("either");
        assert_eq!(texts(&either), ["a0", "a20", "a90", "a180"]);
        let in_c1 = memories
            .find(&at(80.0), 5, vec![], Some("c1".into()))
            .await
            .expect("c1");
        assert_eq!(texts(&in_c1), ["a90", "a0"]);
        let work_in_c1 = memories
            .find(&at(80.0), 5, vec!["work".into()], Some("c1".into()))
            .await
            .expect("work in c1");
        assert_eq!(texts(&work_in_c1), ["a0"]);
    }

    #[tokio::test]
    async fn a_deleted_memory_takes_its_vectors_and_bad_input_is_refused() {
        let (store, _dir) = open(3);
        let memories = store.memories();
        put(&memories, "keep", 0.0, &["x"], None).await;
        put(&memories, "drop", 1.0, &["x", "y"], None).await;
        let before = memories.counts().await.expect("counts");
        assert_eq!((before.memories, before.memory_vectors), (2, 5));
        let id = memories
            .find(&at(1.0), 1, vec![], None)
            .await
            .expect("find")[0]
            .memory
            .id;
        memories.delete(id).await.expect("deleted");
        assert!(matches!(
            memories.delete(id).await,
            Err(StoreError::NotFound("memory"))
        ));
        let after = memories.counts().await.expect("counts");
        assert_eq!((after.memories, after.memory_vectors), (1, 2));
        let found = memories.find(&at(1.0), 5, vec!["y".into()], None).await;
        assert!(found.expect("find").is_empty());

        let wrong = memories.store("t".into(), vec![], None, &[1.0, 0.0]).await;
        assert!(
            matches!(wrong, Err(StoreError::InvalidInput(_))),
            "{wrong:?}"
        );
        let empty = memories.store("  ".into(), vec![], None, &at(0.0)).await;
        assert!(matches!(empty, Err(StoreError::InvalidInput(_))));
        let tags = (0..9).map(|i| format!("t{i}")).collect();
        let many = memories.store("t".into(), tags, None, &at(0.0)).await;
        assert!(matches!(many, Err(StoreError::InvalidInput(_))));
        assert_eq!(memories.counts().await.expect("counts").memories, 1);
    }

    #[tokio::test]
    async fn message_vectors_follow_the_watermark_and_leave_with_their_messages() {
        let (store, _dir) = open(3);
        let conversation = store.conversations().create(None).await.expect("created");
        let id = conversation.id.clone();
        let mut tool = NewMessage::new(Role::Tool, "result");
        tool.tool_call_id = Some("c".into());
        store
            .conversations()
            .append(
                &id,
                vec![
                    NewMessage::new(Role::User, "hello there"),
                    tool,
                    NewMessage::new(Role::Assistant, "general kenobi"),
                ],
            )
            .await
            .expect("appended");
        let memories = store.memories();
        assert!(memories.pending_messages(2).await.expect("two").full);
        let batch = memories.pending_messages(10).await.expect("pending");
        assert!(!batch.full, "3 messages looked at, not 10");
        let (pending, up_to) = (batch.messages, batch.up_to);
        let contents: Vec<&str> = pending.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["hello there", "general kenobi"]);
        let vectors = pending
            .into_iter()
            .zip([at(0.0), at(90.0)])
            .collect::<Vec<_>>();
        memories
            .put_message_vectors(vectors, up_to.expect("last id"))
            .await
            .expect("stored");
        assert!(
            memories
                .pending_messages(10)
                .await
                .expect("none")
                .messages
                .is_empty()
        );
        let hits = memories
            .search_messages(&at(80.0), 1, Some(id.as_str().to_string()), 5)
            .await
            .expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].snippet, "gener…");
        assert_eq!(hits[0].role, "assistant");
        assert_eq!(memories.counts().await.expect("counts").message_vectors, 2);
        store.conversations().delete(&id).await.expect("deleted");
        assert_eq!(memories.counts().await.expect("counts").message_vectors, 0);
    }

    #[tokio::test]
    async fn a_message_deleted_while_it_was_embedded_gets_no_vector_and_the_rest_do() {
        let (store, _dir) = open(3);
        let conversations = store.conversations();
        let kept = conversations.create(None).await.expect("created").id;
        let gone = conversations.create(None).await.expect("created").id;
        for id in [&kept, &gone] {
            conversations
                .append(id, vec![NewMessage::new(Role::User, "hello there")])
                .await
                .expect("appended");
        }
        let memories = store.memories();
        let batch = memories.pending_messages(10).await.expect("pending");
        assert_eq!(batch.messages.len(), 2);
        conversations.delete(&gone).await.expect("deleted");
        let vectors = batch
            .messages
            .into_iter()
            .zip([at(0.0), at(90.0)])
            .collect();
        memories
            .put_message_vectors(vectors, batch.up_to.expect("last id"))
            .await
            .expect("stored");
        assert_eq!(memories.counts().await.expect("counts").message_vectors, 1);
        let hits = memories
            .search_messages(&at(0.0), 5, None, 20)
            .await
            .expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].conversation_id, kept.as_str());
        assert!(
            memories
                .pending_messages(10)
                .await
                .expect("none")
                .messages
                .is_empty()
        );
    }

    #[test]
    fn a_database_of_another_vector_space_is_refused_with_the_fix() {
        let (store, dir) = open(3);
        drop(store);
        let config = RepositoryConfig {
            path: dir.path().join("chat.db"),
            ..RepositoryConfig::default()
        };
        let other = VectorSpace {
            embedder: "test".into(),
            dimensions: 4,
        };
        let Err(error) = Store::open_with(&config, &other) else {
            panic!("opened a 3-dimension database for 4 dimensions");
        };
        let message = error.to_string();
        assert!(message.contains("mcp-platform reembed"), "{message}");
        assert!(message.contains("(3 dimensions)"), "{message}");
    }
}
