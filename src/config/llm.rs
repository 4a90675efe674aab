//! `llm` section: the active provider, the fallback order and one entry per provider.
//!
//! `openai`, `groq` and `openrouter` have presets (URL, key variable, the anchor's limits); an
//! entry overrides only the keys it names, so `groq: {model: x}` keeps Groq's 90 s read timeout.
//! Any other name is an OpenAI-compatible endpoint (a local model server) and needs `base_url`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawLlmConfig")]
pub struct LlmConfig {
    /// The provider used when a request names none.
    pub active: String,
    /// Whether `active` was chosen (`--provider`, or `llm.active` in the file read); an
    /// unchosen default may give way to a local engine found at start.
    #[serde(skip)]
    pub chosen: bool,
    /// What was found on this machine and used instead of an unchosen provider without a
    /// key: "llama.cpp server at 127.0.0.1:8080, model X" (for the log and the page).
    #[serde(skip)]
    pub found_locally: Option<String>,
    /// Tried in order when the chosen provider is unavailable or fails before its first token.
    pub fallback: Vec<String>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub embeddings: EmbeddingsConfig,
}

/// How embedding requests are batched and cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// Concurrent requests arriving within this window go out as one batch.
    #[serde(with = "super::duration")]
    pub batch_window: Duration,
    /// Texts per `/embeddings` request at most.
    pub max_batch: usize,
    /// Vectors kept in memory, keyed by model and text (0 disables the cache).
    pub cache_entries: usize,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        Self {
            batch_window: Duration::from_millis(5),
            max_batch: 64,
            cache_entries: 10_000,
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        RawLlmConfig::default().into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderConfig {
    /// Empty only for a custom entry that forgot it; validation names the key.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key; `None` for endpoints without auth.
    pub api_key_env: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    /// Model for `/v1/embeddings`, where the provider has one.
    pub embedding_model: Option<String>,
    /// OpenRouter's attribution headers (`HTTP-Referer`, `X-Title`).
    pub http_referer: Option<String>,
    pub x_title: Option<String>,
    pub http_client: HttpClientConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    /// The models a request may name for this provider (`/v1/chat/completions`, a chat's
    /// `model`): a list (empty: just `model`), or `"*"` for any name (OpenRouter).
    pub models: Models,
    /// How the model calls tools: through the API's function calling, or written in its text.
    pub tool_calls: ToolCallMode,
    /// The model's context window in tokens, when known (set it for a small local model; a
    /// local engine found at start says its own): the prompt budget stays within it.
    pub context_window: Option<u32>,
}

/// `tool_calls` of a provider entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallMode {
    /// The API's `tools` and `tool_calls` (OpenAI function calling).
    #[default]
    Native,
    /// Tools described in the system prompt, calls read from `<tool_call>` markup in the
    /// answer, results sent back as `<tool_response>` user text: for models without function
    /// calling.
    Text,
}

/// `models` of a provider entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Models {
    /// These names, and the provider's `model`.
    #[default]
    Configured,
    Listed(Vec<String>),
    /// Any name: the provider says whether it knows it.
    Any,
}

impl Models {
    /// Whether a request may name `model` for a provider whose own model is `configured`.
    pub fn accepts(&self, model: &str, configured: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Configured => model == configured,
            Self::Listed(names) => model == configured || names.iter().any(|n| n == model),
        }
    }

    /// The names to list (`GET /v1/models`): the configured model first.
    pub fn names<'a>(&'a self, configured: &'a str) -> Vec<&'a str> {
        let mut names = vec![configured];
        if let Self::Listed(listed) = self {
            names.extend(
                listed
                    .iter()
                    .map(String::as_str)
                    .filter(|n| *n != configured),
            );
        }
        names
    }
}

impl Serialize for Models {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Configured => serializer.collect_seq(std::iter::empty::<&str>()),
            Self::Listed(names) => names.serialize(serializer),
            Self::Any => serializer.serialize_str("*"),
        }
    }
}

impl<'de> Deserialize<'de> for Models {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            Names(Vec<String>),
        }
        match Raw::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a list of model names or \"*\""))?
        {
            Raw::Star(star) if star == "*" => Ok(Self::Any),
            Raw::Star(other) => Err(serde::de::Error::custom(format!(
                "expected a list of model names or \"*\" (got `{other}`)"
            ))),
            Raw::Names(names) if names.is_empty() => Ok(Self::Configured),
            Raw::Names(names) => Ok(Self::Listed(names)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpClientConfig {
    pub max_connections: u32,
    pub max_keepalive: u32,
    #[serde(with = "super::duration")]
    pub keepalive_expiry: Duration,
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    #[serde(with = "super::duration")]
    pub read_timeout: Duration,
    #[serde(with = "super::duration")]
    pub write_timeout: Duration,
    /// Longest wait for a request slot (concurrency and rate) before `rate_limited`.
    #[serde(with = "super::duration")]
    pub pool_timeout: Duration,
    pub requests_per_minute: u32,
    pub concurrent_requests: u32,
    pub max_retries: u32,
    /// First retry waits this many seconds, doubling each time (with jitter).
    pub backoff_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit fails fast before one probe request is let through.
    #[serde(with = "super::duration")]
    pub open_for: Duration,
}

impl ProviderConfig {
    /// The preset for a provider name: the anchor's defaults for the three hosted providers,
    /// conservative limits and no URL for any other name.
    pub fn preset(name: &str) -> Self {
        let base = |url: &str, model: &str, key: &str, conns, concurrent, rpm| ProviderConfig {
            base_url: url.into(),
            model: model.into(),
            api_key_env: Some(key.into()),
            temperature: Some(0.7),
            max_tokens: Some(4096),
            top_p: None,
            embedding_model: None,
            http_referer: None,
            x_title: None,
            http_client: HttpClientConfig::with_limits(conns, concurrent, rpm),
            circuit_breaker: CircuitBreakerConfig::default(),
            models: Models::Configured,
            tool_calls: ToolCallMode::Native,
            context_window: None,
        };
        match name {
            "openai" => ProviderConfig {
                embedding_model: Some("text-embedding-3-small".into()),
                ..base(
                    "https://api.openai.com/v1",
                    "gpt-4o-mini",
                    "OPENAI_API_KEY",
                    50,
                    25,
                    3500,
                )
            },
            "groq" => {
                let mut groq = base(
                    "https://api.groq.com/openai/v1",
                    "llama-3.3-70b-versatile",
                    "GROQ_API_KEY",
                    30,
                    15,
                    600,
                );
                groq.http_client.read_timeout = Duration::from_secs(90);
                groq
            }
            "openrouter" => ProviderConfig {
                http_referer: Some("https://github.com/mcp-platform/mcp-platform".into()),
                x_title: Some("mcp-platform".into()),
                // OpenRouter routes hundreds of models: any name may be asked for.
                models: Models::Any,
                ..base(
                    "https://openrouter.ai/api/v1",
                    "openai/gpt-4o-mini",
                    "OPENROUTER_API_KEY",
                    20,
                    20,
                    2000,
                )
            },
            local if LOCAL_PRESETS.iter().any(|p| p.name == local) => {
                let preset = LOCAL_PRESETS
                    .iter()
                    .find(|p| p.name == local)
                    .map_or(&LOCAL_PRESETS[0], |p| p);
                let mut config = ProviderConfig {
                    api_key_env: None,
                    // A local server serves whatever it has loaded: any name may be asked for.
                    models: Models::Any,
                    ..base(&preset.base_url(), preset.model, "", 4, 4, 6000)
                };
                // Local models on a laptop can be slow to the first token.
                config.http_client.read_timeout = Duration::from_secs(300);
                config
            }
            _ => ProviderConfig {
                api_key_env: None,
                ..base("", "", "", 10, 10, 600)
            },
        }
    }
}

/// A local model server with a preset: its name in `llm.providers`, what it is, its default
/// loopback port and the model asked for unless the entry names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPreset {
    pub name: &'static str,
    pub label: &'static str,
    pub port: u16,
    pub model: &'static str,
}

impl LocalPreset {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

/// Ollama, llama.cpp's `llama-server`, LM Studio and vLLM at their default local addresses.
pub const LOCAL_PRESETS: &[LocalPreset] = &[
    LocalPreset {
        name: "ollama",
        label: "Ollama",
        port: 11434,
        model: "llama3.2",
    },
    LocalPreset {
        name: "llamacpp",
        label: "llama.cpp server",
        port: 8080,
        model: "default",
    },
    LocalPreset {
        name: "lmstudio",
        label: "LM Studio",
        port: 1234,
        model: "default",
    },
    LocalPreset {
        name: "vllm",
        label: "vLLM",
        port: 8000,
        model: "default",
    },
];

impl HttpClientConfig {
    fn with_limits(
        max_connections: u32,
        concurrent_requests: u32,
        requests_per_minute: u32,
    ) -> Self {
        Self {
            max_connections,
            max_keepalive: max_connections.min(20),
            keepalive_expiry: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            pool_timeout: Duration::from_secs(30),
            requests_per_minute,
            concurrent_requests,
            max_retries: 3,
            backoff_factor: 0.5,
        }
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The provider used when none is chosen (and no local engine is found).
pub const DEFAULT_ACTIVE: &str = "openai";

/// What the file says: every provider key optional, resolved against the name's preset.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawLlmConfig {
    active: Option<String>,
    fallback: Vec<String>,
    providers: Option<BTreeMap<String, RawProvider>>,
    embeddings: EmbeddingsConfig,
}

impl From<RawLlmConfig> for LlmConfig {
    fn from(raw: RawLlmConfig) -> Self {
        let providers = match raw.providers {
            Some(entries) => entries
                .into_iter()
                .map(|(name, entry)| {
                    let resolved = entry.resolve(ProviderConfig::preset(&name));
                    (name, resolved)
                })
                .collect(),
            None => ["openai", "groq", "openrouter"]
                .into_iter()
                .map(|name| (name.to_string(), ProviderConfig::preset(name)))
                .collect(),
        };
        let mut config = Self {
            chosen: raw.active.is_some(),
            active: raw.active.unwrap_or_else(|| DEFAULT_ACTIVE.into()),
            found_locally: None,
            fallback: raw.fallback,
            providers,
            embeddings: raw.embeddings,
        };
        for name in std::iter::once(config.active.clone()).chain(config.fallback.clone()) {
            config.add_local_preset(&name);
        }
        config
    }
}

impl LlmConfig {
    /// Makes `name` usable without an entry of its own when it is a local preset (`ollama`,
    /// `llamacpp`, `lmstudio`, `vllm`): `llm.active: ollama` or `--provider ollama` is enough.
    pub fn add_local_preset(&mut self, name: &str) {
        if LOCAL_PRESETS.iter().any(|p| p.name == name) && !self.providers.contains_key(name) {
            self.providers
                .insert(name.to_string(), ProviderConfig::preset(name));
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawProvider {
    base_url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    top_p: Option<f32>,
    embedding_model: Option<String>,
    http_referer: Option<String>,
    x_title: Option<String>,
    http_client: RawHttpClient,
    circuit_breaker: RawCircuitBreaker,
    models: Option<Models>,
    tool_calls: Option<ToolCallMode>,
    context_window: Option<u32>,
}

impl RawProvider {
    fn resolve(self, preset: ProviderConfig) -> ProviderConfig {
        ProviderConfig {
            base_url: self.base_url.unwrap_or(preset.base_url),
            model: self.model.unwrap_or(preset.model),
            api_key_env: self.api_key_env.or(preset.api_key_env),
            temperature: self.temperature.or(preset.temperature),
            max_tokens: self.max_tokens.or(preset.max_tokens),
            top_p: self.top_p.or(preset.top_p),
            embedding_model: self.embedding_model.or(preset.embedding_model),
            http_referer: self.http_referer.or(preset.http_referer),
            x_title: self.x_title.or(preset.x_title),
            http_client: self.http_client.resolve(&preset.http_client),
            circuit_breaker: self.circuit_breaker.resolve(&preset.circuit_breaker),
            models: self.models.unwrap_or(preset.models),
            tool_calls: self.tool_calls.unwrap_or(preset.tool_calls),
            context_window: self.context_window.or(preset.context_window),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawHttpClient {
    max_connections: Option<u32>,
    max_keepalive: Option<u32>,
    #[serde(with = "super::duration::option")]
    keepalive_expiry: Option<Duration>,
    #[serde(with = "super::duration::option")]
    connect_timeout: Option<Duration>,
    #[serde(with = "super::duration::option")]
    read_timeout: Option<Duration>,
    #[serde(with = "super::duration::option")]
    write_timeout: Option<Duration>,
    #[serde(with = "super::duration::option")]
    pool_timeout: Option<Duration>,
    requests_per_minute: Option<u32>,
    concurrent_requests: Option<u32>,
    max_retries: Option<u32>,
    backoff_factor: Option<f64>,
}

impl RawHttpClient {
    fn resolve(self, p: &HttpClientConfig) -> HttpClientConfig {
        HttpClientConfig {
            max_connections: self.max_connections.unwrap_or(p.max_connections),
            max_keepalive: self.max_keepalive.unwrap_or(p.max_keepalive),
            keepalive_expiry: self.keepalive_expiry.unwrap_or(p.keepalive_expiry),
            connect_timeout: self.connect_timeout.unwrap_or(p.connect_timeout),
            read_timeout: self.read_timeout.unwrap_or(p.read_timeout),
            write_timeout: self.write_timeout.unwrap_or(p.write_timeout),
            pool_timeout: self.pool_timeout.unwrap_or(p.pool_timeout),
            requests_per_minute: self.requests_per_minute.unwrap_or(p.requests_per_minute),
            concurrent_requests: self.concurrent_requests.unwrap_or(p.concurrent_requests),
            max_retries: self.max_retries.unwrap_or(p.max_retries),
            backoff_factor: self.backoff_factor.unwrap_or(p.backoff_factor),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawCircuitBreaker {
    failure_threshold: Option<u32>,
    #[serde(with = "super::duration::option")]
    open_for: Option<Duration>,
}

impl RawCircuitBreaker {
    fn resolve(self, p: &CircuitBreakerConfig) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: self.failure_threshold.unwrap_or(p.failure_threshold),
            open_for: self.open_for.unwrap_or(p.open_for),
        }
    }
}
