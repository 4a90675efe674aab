//! `memory`: semantic memory and history search (sqlite-vec), and the embedder behind them.

use serde::{Deserialize, Serialize};

/// The embedder that needs no network and no key: lexical feature hashing, not a neural model.
pub const BUILTIN_EMBEDDER: &str = "builtin";
/// Dimensions of the built-in embedder unless `memory.dimensions` says otherwise.
pub const BUILTIN_DIMENSIONS: u32 = 384;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Offer `memory_store`, `memory_find` and `memory_delete` to the model.
    pub tools: bool,
    /// Embed finished turns in the background for the `search` action.
    pub history_search: bool,
    /// `builtin` (lexical feature hashing, offline) or the name of an `llm.providers` entry
    /// with an `embedding_model` (OpenAI, OpenRouter, a local server).
    pub embedder: String,
    /// The embedder's vector size; the vector tables are created with it. Required for a
    /// provider model this server does not know.
    pub dimensions: Option<u32>,
    /// Messages embedded per background batch.
    pub batch_size: usize,
    /// Characters of a message shown in a search hit.
    pub snippet_chars: usize,
    /// The largest `k` a search or `memory_find` accepts.
    pub max_k: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            tools: true,
            history_search: true,
            embedder: BUILTIN_EMBEDDER.into(),
            dimensions: None,
            batch_size: 64,
            snippet_chars: 200,
            max_k: 50,
        }
    }
}

impl MemoryConfig {
    pub fn is_builtin(&self) -> bool {
        self.embedder == BUILTIN_EMBEDDER
    }
}

/// The vector size of well-known embedding models, so that `memory.dimensions` can be left out.
pub fn known_dimensions(model: &str) -> Option<u32> {
    let model = model.rsplit('/').next().unwrap_or(model);
    Some(match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-3-large" => 3072,
        "nomic-embed-text" | "nomic-embed-text-v1.5" => 768,
        "all-minilm" | "all-MiniLM-L6-v2" | "bge-small-en-v1.5" => 384,
        "mxbai-embed-large" | "bge-large-en-v1.5" => 1024,
        _ => return None,
    })
}

/// What the vectors are made with: a label (stored with the tables; vectors of different
/// labels cannot be compared) and the dimensions. Call on a validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSpace {
    pub embedder: String,
    pub dimensions: u32,
}

/// The label of the built-in embedder's vectors; bump the version when its features change.
pub const BUILTIN_LABEL: &str = "builtin-lexical-hash-v1";

impl MemoryConfig {
    pub fn vector_space(&self, llm: &super::LlmConfig) -> VectorSpace {
        if self.is_builtin() {
            return VectorSpace {
                embedder: BUILTIN_LABEL.into(),
                dimensions: self.dimensions.unwrap_or(BUILTIN_DIMENSIONS),
            };
        }
        let model = llm
            .providers
            .get(&self.embedder)
            .and_then(|p| p.embedding_model.clone())
            .unwrap_or_default();
        VectorSpace {
            dimensions: self
                .dimensions
                .or_else(|| known_dimensions(&model))
                .unwrap_or(BUILTIN_DIMENSIONS),
            embedder: model,
        }
    }
}
