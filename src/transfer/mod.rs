//! `mcp-platform export` and `import`: conversations with their messages, and memories, as
//! JSON Lines another server (or a script) can read back.
//!
//! The format (`mcp-platform.export`, version 1), one JSON object per line:
//!
//! 1. a header: `{"type": "header", "format": "mcp-platform.export", "version": 1,
//!    "exported_at": MS, "key": NAME | null}`;
//! 2. one line per conversation, with all its messages in order:
//!    `{"type": "conversation", "id", "owner", "title", "system_prompt", "created_at",
//!    "updated_at", "messages": [{"seq", "role", "content", "tool_calls"?, "tool_call_id"?,
//!    "request_id"?, "status", "model"?, "usage"?, "token_count", "attachments"?,
//!    "created_at"}]}`;
//! 3. one line per memory: `{"type": "memory", "owner", "text", "tags", "conversation_id",
//!    "created_at"}` (no vector: the importing server embeds the text with its own embedder).
//!
//! Times are Unix milliseconds; `owner` is the key's name (`local` without keys). An import
//! reads and checks the whole file before it writes anything, then writes each conversation in
//! one transaction; what is already there (a conversation's id, a memory's text for the same
//! owner) is skipped, so importing a file twice changes nothing.

pub mod cli;

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::memory::{EmbedError, TextEmbedder};
use crate::store::{ConversationRecord, MemoryRecord, PrincipalId, Store, StoreError, now_ms};

pub const FORMAT: &str = "mcp-platform.export";
pub const VERSION: u32 = 1;

/// Conversations read per store call while exporting.
const CONVERSATION_PAGE: usize = 100;
const MEMORY_PAGE: usize = 1000;
/// Memories embedded per call while importing.
const EMBED_BATCH: usize = 64;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Header(Header),
    Conversation(ConversationRecord),
    Memory(MemoryRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: i64,
    /// The key whose data this is; `None`: every key's.
    pub key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("{0}")]
    Header(String),
    #[error(
        "no key is named `{name}` here (keys: {known}); create it first or import with --key NAME"
    )]
    UnknownOwner { name: String, known: String },
    #[error("cannot embed memory \"{text}\": {source}")]
    Embed {
        text: String,
        #[source]
        source: EmbedError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub conversations: u64,
    pub messages: u64,
    pub memories: u64,
}

/// What an import wrote and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub conversations: u64,
    pub messages: u64,
    pub memories: u64,
    /// Already there (same conversation id, or same memory text for the owner).
    pub skipped_conversations: u64,
    pub skipped_memories: u64,
    /// Memories whose text has no word the embedder can use (not stored).
    pub memories_without_words: u64,
}

/// Writes `owner`'s data (everyone's when `None`) to `out`.
pub async fn export(
    store: &Store,
    owner: Option<(PrincipalId, String)>,
    out: &mut impl Write,
) -> Result<ExportReport, TransferError> {
    let header = Record::Header(Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: now_ms(),
        key: owner.as_ref().map(|(_, name)| name.clone()),
    });
    write_line(out, &header)?;
    let owner = owner.map(|(id, _)| id);
    let mut report = ExportReport::default();
    let mut after = String::new();
    loop {
        let page = store
            .export_conversations(owner, after.clone(), CONVERSATION_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.as_str().to_string();
        for conversation in page {
            report.conversations += 1;
            report.messages += conversation.messages.len() as u64;
            write_line(out, &Record::Conversation(conversation))?;
        }
    }
    let mut after = 0;
    loop {
        let page = store.export_memories(owner, after, MEMORY_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, memory) in page {
            report.memories += 1;
            write_line(out, &Record::Memory(memory))?;
        }
    }
    out.flush()?;
    Ok(report)
}

fn write_line(out: &mut impl Write, record: &Record) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reads an export and checks every line (format, version, each record as the store would),
/// writing nothing. Blank lines are ignored.
pub fn parse(text: &str) -> Result<Vec<Record>, TransferError> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| TransferError::Line {
            line: line_no,
            message,
        };
        let record: Record = serde_json::from_str(line)
            .map_err(|e| at(format!("not a record of an {FORMAT} file: {e}")))?;
        match (&record, records.is_empty()) {
            (Record::Header(header), true) => check_header(header)?,
            (Record::Header(_), false) => return Err(at("a second header".into())),
            (_, true) => {
                return Err(TransferError::Header(format!(
                    "line {line_no}: the file does not start with the {FORMAT} header"
                )));
            }
            (Record::Conversation(conversation), false) => conversation
                .check()
                .map_err(|e| at(format!("conversation {}: {e}", conversation.id)))?,
            (Record::Memory(memory), false) => {
                memory.check().map_err(|e| at(format!("memory: {e}")))?;
            }
        }
        records.push(record);
    }
    if records.is_empty() {
        return Err(TransferError::Header(format!(
            "the file is empty: expected an {FORMAT} export"
        )));
    }
    Ok(records)
}

fn check_header(header: &Header) -> Result<(), TransferError> {
    if header.format != FORMAT {
        return Err(TransferError::Header(format!(
            "the file's format is `{}`, not {FORMAT}",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(TransferError::Header(format!(
            "the file is version {} of {FORMAT}; this server reads version {VERSION}",
            header.version
        )));
    }
    Ok(())
}

/// Who the imported rows belong to: one key for all (`--key`), or each record's `owner`.
pub enum Owners {
    All(PrincipalId),
    ByName(BTreeMap<String, PrincipalId>),
}

impl Owners {
    fn of(&self, name: &str) -> Result<PrincipalId, TransferError> {
        match self {
            Self::All(id) => Ok(*id),
            Self::ByName(names) => {
                names
                    .get(name)
                    .copied()
                    .ok_or_else(|| TransferError::UnknownOwner {
                        name: name.to_string(),
                        known: names.keys().cloned().collect::<Vec<_>>().join(", "),
                    })
            }
        }
    }
}

/// Writes checked `records` (see [`parse`]). Every owner is resolved before the first write.
pub async fn import(
    store: &Store,
    embedder: &TextEmbedder,
    owners: &Owners,
    records: Vec<Record>,
) -> Result<ImportReport, TransferError> {
    for record in &records {
        match record {
            Record::Conversation(c) => owners.of(&c.owner).map(|_| ())?,
            Record::Memory(m) => owners.of(&m.owner).map(|_| ())?,
            Record::Header(_) => {}
        }
    }
    let mut report = ImportReport::default();
    let mut memories = Vec::new();
    for record in records {
        match record {
            Record::Conversation(conversation) => {
                let owner = owners.of(&conversation.owner)?;
                let messages = conversation.messages.len() as u64;
                if store.import_conversation(owner, conversation).await? {
                    report.conversations += 1;
                    report.messages += messages;
                } else {
                    report.skipped_conversations += 1;
                }
            }
            Record::Memory(memory) => memories.push(memory),
            Record::Header(_) => {}
        }
    }
    for batch in memories.chunks(EMBED_BATCH) {
        for (memory, vector) in batch.iter().zip(embed_batch(embedder, batch).await?) {
            let Some(vector) = vector else {
                report.memories_without_words += 1;
                continue;
            };
            let owner = owners.of(&memory.owner)?;
            if store.import_memory(owner, memory.clone(), &vector).await? {
                report.memories += 1;
            } else {
                report.skipped_memories += 1;
            }
        }
    }
    Ok(report)
}

/// One vector per memory; `None` for a text with no words to embed (the batch is embedded
/// again one by one to find it).
async fn embed_batch(
    embedder: &TextEmbedder,
    batch: &[MemoryRecord],
) -> Result<Vec<Option<Vec<f32>>>, TransferError> {
    let failed = |text: &str, source| TransferError::Embed {
        text: crate::scrub::text(text, 60),
        source,
    };
    let texts: Vec<String> = batch.iter().map(|m| m.text.clone()).collect();
    match embedder.embed(&texts).await {
        Ok(vectors) => return Ok(vectors.into_iter().map(Some).collect()),
        Err(EmbedError::NoWords) => {}
        Err(source) => return Err(failed(&texts[0], source)),
    }
    let mut vectors = Vec::with_capacity(texts.len());
    for text in &texts {
        match embedder.embed_one(text).await {
            Ok(vector) => vectors.push(Some(vector)),
            Err(EmbedError::NoWords) => vectors.push(None),
            Err(source) => return Err(failed(text, source)),
        }
    }
    Ok(vectors)
}
