//! Text → vector, by the built-in lexical embedder or a provider's `/v1/embeddings` (through
//! its batcher, cache, limits, retries and breaker).

use std::sync::Arc;

use super::lexical::LexicalEmbedder;
use crate::config::{MemoryConfig, VectorSpace};
use crate::llm::{ProviderError, Providers};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the text has no words to embed")]
    NoWords,
    #[error("the embedder is unavailable: {0}")]
    Provider(#[from] ProviderError),
    #[error(
        "the embedder returned vectors of {got} dimensions but memory.dimensions is {want}; \
         fix memory.dimensions and run `mcp-platform reembed`"
    )]
    Dimensions { got: usize, want: u32 },
}

impl EmbedError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Provider(e) if e.retryable())
    }
}

pub enum TextEmbedder {
    Lexical(LexicalEmbedder),
    Provider {
        providers: Arc<Providers>,
        name: String,
        dimensions: u32,
    },
}

impl TextEmbedder {
    pub fn new(config: &MemoryConfig, space: &VectorSpace, providers: Arc<Providers>) -> Self {
        if config.is_builtin() {
            Self::Lexical(LexicalEmbedder::new(space.dimensions))
        } else {
            Self::Provider {
                providers,
                name: config.embedder.clone(),
                dimensions: space.dimensions,
            }
        }
    }

    /// For the logs and `/health`: what kind of search this gives.
    pub fn describe(&self) -> String {
        match self {
            Self::Lexical(_) => {
                "builtin (lexical feature hashing: shared words, not meaning)".into()
            }
            Self::Provider { name, .. } => format!("provider `{name}` (semantic)"),
        }
    }

    /// Whether embedding calls a provider (and so costs a key's tokens).
    pub fn costs_tokens(&self) -> bool {
        matches!(self, Self::Provider { .. })
    }

    /// One vector per text, in order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Self::Lexical(lexical) => texts
                .iter()
                .map(|t| lexical.embed(t).ok_or(EmbedError::NoWords))
                .collect(),
            Self::Provider {
                providers,
                name,
                dimensions,
            } => {
                if texts.iter().any(|t| !t.chars().any(char::is_alphanumeric)) {
                    return Err(EmbedError::NoWords);
                }
                let embedder = providers.embedder(Some(name))?;
                let vectors = embedder.embed(texts).await?;
                vectors
                    .iter()
                    .map(|v| {
                        if v.len() == *dimensions as usize {
                            Ok(v.to_vec())
                        } else {
                            Err(EmbedError::Dimensions {
                                got: v.len(),
                                want: *dimensions,
                            })
                        }
                    })
                    .collect()
            }
        }
    }

    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed(&[text.to_string()]).await?;
        vectors.pop().ok_or(EmbedError::NoWords)
    }
}
