//! LLM providers: one [`Provider`] per entry of `llm.providers` (OpenAI, Groq, OpenRouter, any
//! OpenAI-compatible endpoint), each with its own HTTP client, enforced limits, retries and
//! circuit breaker; and [`Providers`], which picks one by name and falls back in the configured
//! order when it cannot answer.
//!
//! Owns the OpenAI-compatible format and the stream parsing; knows nothing of conversations or
//! storage.

mod assemble;
mod bounded;
mod breaker;
mod embeddings;
mod error;
mod format;
mod limits;
pub mod local;
mod provider;
mod provider_stats;
mod retry;
mod sse;
pub mod text_tools;
mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use assemble::{Assembler, StreamFault};
pub use embeddings::{Embedder, EmbedderSnapshot, Vector};
pub use error::ProviderError;
pub use limits::{Limits, Refused, Slot};
pub use provider::Provider;
pub use provider_stats::ProviderSnapshot;
pub use sse::SseDecoder;
pub use types::{
    ChatEvent, ChatMessage, ChatRequest, ChatStream, FinishReason, MessageRole, ToolCall, ToolSpec,
    Usage,
};

use crate::config::{EmbeddingsConfig, LlmConfig};
use crate::stats::CacheSnapshot;
use embeddings::EmbeddingCache;

/// Every configured provider, by name.
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
    active: String,
    fallback: Vec<String>,
    embeddings: EmbeddingsConfig,
    cache: Arc<EmbeddingCache>,
    /// Started on first use, for providers with an `embedding_model`.
    embedders: Mutex<BTreeMap<String, Arc<Embedder>>>,
    /// The local engine found at start and used as the active provider, in words.
    found_locally: Option<String>,
}

impl Providers {
    /// Builds each provider; `env` looks up API keys (the process environment in the server).
    pub fn new(config: &LlmConfig, env: impl Fn(&str) -> Option<String>) -> Self {
        let by_name = config
            .providers
            .iter()
            .map(|(name, entry)| {
                let key = entry.api_key_env.as_deref().and_then(&env);
                (name.clone(), Arc::new(Provider::new(name, entry, key)))
            })
            .collect();
        Self {
            by_name,
            active: config.active.clone(),
            fallback: config.fallback.clone(),
            embeddings: config.embeddings.clone(),
            cache: Arc::new(EmbeddingCache::new(config.embeddings.cache_entries)),
            embedders: Mutex::new(BTreeMap::new()),
            found_locally: config.found_locally.clone(),
        }
    }

    /// The local engine found at start and used because no provider was chosen.
    pub fn found_locally(&self) -> Option<&str> {
        self.found_locally.as_deref()
    }

    /// For the start-up line: `openai (no key: OPENAI_API_KEY), local`.
    pub fn summary(&self) -> String {
        let describe = |(name, provider): (&String, &Arc<Provider>)| {
            if provider.configured() {
                name.clone()
            } else {
                format!("{name} (no key: {})", provider.key_variable())
            }
        };
        self.by_name
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// Every configured provider, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_name.values()
    }

    pub fn active(&self) -> &str {
        &self.active
    }

    /// The model a request to `provider` (or the active one) uses when it names none.
    pub fn default_model(&self, provider: Option<&str>) -> Result<&str, ProviderError> {
        let name = provider.unwrap_or(&self.active);
        self.get(name)
            .map(|chosen| chosen.model())
            .ok_or_else(|| ProviderError::UnknownProvider(name.to_string()))
    }

    /// Which provider answers a request naming `model`: `PROVIDER/MODEL` when the text before
    /// the first `/` names a configured provider, else a model of the active provider. The
    /// provider must accept the name (`models`); no provider is called to find out.
    pub fn route(&self, model: &str) -> Result<(&str, String), ProviderError> {
        if let Some((prefix, rest)) = model.split_once('/')
            && let Some((name, provider)) = self.by_name.get_key_value(prefix)
        {
            return if provider.accepts(rest) {
                Ok((name.as_str(), rest.to_string()))
            } else {
                Err(ProviderError::ModelNotOffered {
                    model: model.to_string(),
                })
            };
        }
        match self.by_name.get_key_value(self.active.as_str()) {
            Some((name, provider)) if provider.accepts(model) => {
                Ok((name.as_str(), model.to_string()))
            }
            _ => Err(ProviderError::ModelNotOffered {
                model: model.to_string(),
            }),
        }
    }

    /// Every model a request may name: `PROVIDER/MODEL` for each provider's listed models,
    /// and the active provider's bare names; `(id, provider, any)` where `any` says the
    /// provider takes any name besides these.
    pub fn model_ids(&self) -> Vec<(String, &str, bool)> {
        let mut ids = Vec::new();
        for (name, provider) in &self.by_name {
            let (names, any) = provider.model_names();
            for model in names {
                if *name == self.active {
                    ids.push((model.to_string(), name.as_str(), any));
                }
                ids.push((format!("{name}/{model}"), name.as_str(), any));
            }
        }
        ids
    }

    /// Sends `request` to `provider` (or the active one). If it cannot answer before its first
    /// event (circuit open, limits, outage, no key), the providers of `llm.fallback` are tried
    /// in order, each with its own configured model. Returns the provider that answered.
    pub async fn chat(
        &self,
        provider: Option<&str>,
        request: &ChatRequest,
    ) -> Result<(Arc<Provider>, ChatStream), ProviderError> {
        let first = provider.unwrap_or(&self.active);
        let chosen = self
            .get(first)
            .ok_or_else(|| ProviderError::UnknownProvider(first.to_string()))?;
        let mut error = match chosen.chat(request).await {
            Ok(stream) => return Ok((chosen.clone(), stream)),
            Err(error) => error,
        };
        for name in self.fallback.iter().filter(|name| name.as_str() != first) {
            if !error.allows_fallback() {
                break;
            }
            let Some(next) = self.get(name) else { continue };
            tracing::info!(from = %first, to = %name, %error, "falling back to the next provider");
            let request = ChatRequest {
                model: None,
                ..request.clone()
            };
            match next.chat(&request).await {
                Ok(stream) => return Ok((next.clone(), stream)),
                Err(next_error) => error = next_error,
            }
        }
        Err(error)
    }

    /// Where a turn goes when `current` breaks off mid-answer: the first provider of
    /// `llm.fallback` other than `current` (and than the ones already `used`).
    pub fn failover_for(&self, used: &[String]) -> Option<Arc<Provider>> {
        self.fallback
            .iter()
            .filter(|name| !used.contains(name))
            .find_map(|name| self.get(name).cloned())
    }

    /// The embedder of `provider` (or the active one), started on first use. Must be called
    /// inside a tokio runtime.
    pub fn embedder(&self, provider: Option<&str>) -> Result<Arc<Embedder>, ProviderError> {
        let name = provider.unwrap_or(&self.active);
        let chosen = self
            .get(name)
            .ok_or_else(|| ProviderError::UnknownProvider(name.to_string()))?;
        let model = chosen
            .embedding_model()
            .ok_or_else(|| ProviderError::InvalidRequest {
                provider: name.to_string(),
                message: "this provider has no embedding_model configured".into(),
            })?;
        let mut embedders = self
            .embedders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let embedder = embedders.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Embedder::start(
                chosen.clone(),
                model.to_string(),
                &self.embeddings,
                self.cache.clone(),
            ))
        });
        Ok(embedder.clone())
    }

    /// `/health` `llm_client_stats`.
    pub fn snapshot(&self) -> BTreeMap<String, ProviderSnapshot> {
        let embedders = self
            .embedders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.by_name
            .iter()
            .map(|(name, p)| {
                let mut snapshot = p.snapshot();
                snapshot.embeddings = embedders.get(name).map(|e| e.snapshot());
                (name.clone(), snapshot)
            })
            .collect()
    }

    /// `/health` `cache_stats.embeddings`.
    pub fn cache_snapshot(&self) -> CacheSnapshot {
        self.cache.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Models, ProviderConfig};

    fn providers() -> Providers {
        let mut local = ProviderConfig::preset("local");
        local.base_url = "http://127.0.0.1:1/v1".into();
        local.model = "small".into();
        local.models = Models::Listed(vec!["big".into()]);
        let mut router = ProviderConfig::preset("router");
        router.base_url = "http://127.0.0.1:2/v1".into();
        router.model = "openai/gpt-4o-mini".into();
        router.models = Models::Any;
        let config = LlmConfig {
            active: "local".into(),
            fallback: Vec::new(),
            providers: [("local".into(), local), ("router".into(), router)].into(),
            embeddings: EmbeddingsConfig::default(),
            chosen: true,
            found_locally: None,
        };
        Providers::new(&config, |_| None)
    }

    #[test]
    fn a_model_routes_by_provider_prefix_or_to_the_active_provider() {
        let providers = providers();
        assert_eq!(
            providers.route("big").expect("listed"),
            ("local", "big".into())
        );
        assert_eq!(
            providers.route("local/small").expect("prefixed"),
            ("local", "small".into())
        );
        assert_eq!(
            providers.route("router/openai/gpt-4o").expect("any name"),
            ("router", "openai/gpt-4o".into())
        );
        for refused in ["huge", "local/huge", "openai/gpt-4o"] {
            let error = providers.route(refused).expect_err(refused);
            assert_eq!(
                error.code(),
                crate::wire::ErrorCode::ModelNotFound,
                "{refused}"
            );
        }
        let ids: Vec<String> = providers.model_ids().into_iter().map(|m| m.0).collect();
        assert!(ids.contains(&"small".into()) && ids.contains(&"local/big".into()));
        assert!(ids.contains(&"router/openai/gpt-4o-mini".into()));
        assert!(
            !ids.contains(&"openai/gpt-4o-mini".into()),
            "not the active provider's"
        );
    }
}
