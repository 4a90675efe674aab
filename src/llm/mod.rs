//! LLM providers: one [`Provider`] per entry of `llm.providers` (OpenAI, Groq, OpenRouter, any
//! OpenAI-compatible endpoint), each with its own HTTP client, enforced limits, retries and
//! circuit breaker; and [`Providers`], which picks one by name and falls back in the configured
//! order when it cannot answer.
//!
//! Owns the wire format and the stream parsing; knows nothing of conversations or storage.

mod assemble;
mod breaker;
mod error;
mod limits;
mod provider;
mod retry;
mod stats;
mod types;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::ProviderError;
pub use provider::{ChatStream, Provider};
pub use stats::ProviderSnapshot;
pub use types::{
    ChatEvent, ChatMessage, ChatRequest, FinishReason, MessageRole, ToolCall, ToolSpec, Usage,
};

use crate::config::LlmConfig;

/// Every configured provider, by name.
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
    active: String,
    fallback: Vec<String>,
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
        }
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

    pub fn active(&self) -> &str {
        &self.active
    }

    /// Sends `request` to `provider` (or the active one). If it cannot answer before its first
    /// event (circuit open, limits, outage, no key), the providers of `llm.fallback` are tried
    /// in order, each with its own configured model. Returns the provider that answered.
    pub async fn chat(
        &self,
        provider: Option<&str>,
        request: ChatRequest,
    ) -> Result<(Arc<Provider>, ChatStream), ProviderError> {
        let first = provider.unwrap_or(&self.active);
        let chosen = self
            .get(first)
            .ok_or_else(|| ProviderError::UnknownProvider(first.to_string()))?;
        let mut error = match chosen.chat(request.clone()).await {
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
            match next.chat(request).await {
                Ok(stream) => return Ok((next.clone(), stream)),
                Err(next_error) => error = next_error,
            }
        }
        Err(error)
    }

    /// `/health` `llm_client_stats`.
    pub fn snapshot(&self) -> BTreeMap<String, ProviderSnapshot> {
        self.by_name
            .iter()
            .map(|(name, p)| (name.clone(), p.snapshot()))
            .collect()
    }
}
