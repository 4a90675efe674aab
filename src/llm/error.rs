//! `ProviderError`: every way a provider call fails, classified where it happens (by status code
//! and transport error kind, never by message text), with a stable wire code.

use crate::wire::ErrorCode;
use std::time::Duration;

/// Why a provider call failed. Messages never contain an API key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("provider `{provider}` is not configured: set the environment variable {env_var}")]
    NotConfigured { provider: String, env_var: String },
    #[error("no provider named `{0}`")]
    UnknownProvider(String),
    /// Our own limiter: no slot within `pool_timeout`.
    #[error("provider `{provider}` is at its request limit ({limit}); try again shortly")]
    RateLimited {
        provider: String,
        limit: &'static str,
        retry_after: Option<Duration>,
    },
    /// The provider answered 429 (after our retries).
    #[error("provider `{provider}` is rate limiting us (HTTP 429)")]
    ProviderRateLimited {
        provider: String,
        retry_after: Option<Duration>,
    },
    #[error("provider `{provider}` rejected the API key from {env_var} (HTTP {status})")]
    Auth {
        provider: String,
        env_var: String,
        status: u16,
    },
    #[error("provider `{provider}` rejected the request: {message}")]
    InvalidRequest { provider: String, message: String },
    /// The prompt is longer than the model's context window (HTTP 400 with
    /// `context_length_exceeded` or a known equivalent).
    #[error(
        "provider `{provider}` says the conversation is longer than the model's context: {message}"
    )]
    ContextLength {
        provider: String,
        message: String,
        /// The model's context window in tokens, when the provider said it.
        window: Option<u32>,
    },
    #[error("provider `{provider}` does not know model `{model}`")]
    ModelNotFound { provider: String, model: String },
    #[error(
        "no configured provider offers model `{model}` (name it as PROVIDER/MODEL, or add it to \
         the provider's `models`; GET /v1/models lists them)"
    )]
    ModelNotOffered { model: String },
    #[error("provider `{provider}` is unavailable (circuit open after repeated failures)")]
    Unavailable {
        provider: String,
        retry_after: Duration,
    },
    #[error("provider `{provider}` timed out ({what})")]
    Timeout {
        provider: String,
        what: &'static str,
    },
    #[error("cannot reach provider `{provider}`: {message}")]
    Connect { provider: String, message: String },
    #[error("provider `{provider}` failed with HTTP {status}: {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },
    /// A malformed or broken response stream, or an `{"error": …}` object inside it.
    #[error("provider `{provider}` sent a bad response: {message}")]
    Stream {
        provider: String,
        message: String,
        before_first_event: bool,
    },
}

/// The kinds counted in `/health` `errors`.
pub const ERROR_KINDS: [&str; 12] = [
    "not_configured",
    "rate_limited",
    "provider_rate_limited",
    "auth",
    "invalid_request",
    "context_length",
    "model_not_found",
    "unavailable",
    "timeout",
    "connect",
    "server",
    "stream",
];

impl ProviderError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotConfigured { .. } => ErrorCode::ProviderNotConfigured,
            Self::UnknownProvider(_) | Self::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            Self::ContextLength { .. } => ErrorCode::ContextTooLarge,
            Self::RateLimited { .. } | Self::ProviderRateLimited { .. } => ErrorCode::RateLimited,
            Self::Auth { .. } => ErrorCode::AuthError,
            Self::ModelNotFound { .. } | Self::ModelNotOffered { .. } => ErrorCode::ModelNotFound,
            Self::Unavailable { .. } => ErrorCode::ProviderUnavailable,
            Self::Timeout { .. }
            | Self::Connect { .. }
            | Self::Server { .. }
            | Self::Stream { .. } => ErrorCode::ProviderError,
        }
    }

    /// The counter this error is recorded under.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } | Self::UnknownProvider(_) => "not_configured",
            Self::RateLimited { .. } => "rate_limited",
            Self::ProviderRateLimited { .. } => "provider_rate_limited",
            Self::Auth { .. } => "auth",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::ContextLength { .. } => "context_length",
            Self::ModelNotFound { .. } | Self::ModelNotOffered { .. } => "model_not_found",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Server { .. } => "server",
            Self::Stream { .. } => "stream",
        }
    }

    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::ProviderRateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Timeout { .. }
                | Self::Connect { .. }
                | Self::Server { .. }
                | Self::Stream { .. }
        )
    }

    /// Whether this failure says the provider is unhealthy (feeds the circuit breaker).
    /// Rate limits and request errors do not: the provider is up and answering.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Connect { .. } | Self::Server { .. } | Self::Stream { .. }
        )
    }

    /// Whether the next provider in `llm.fallback` should be tried.
    pub fn allows_fallback(&self) -> bool {
        self.retryable() || matches!(self, Self::NotConfigured { .. } | Self::Auth { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. }
            | Self::ProviderRateLimited { retry_after, .. } => *retry_after,
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl crate::wire::WireFault for ProviderError {
    fn code(&self) -> ErrorCode {
        ProviderError::code(self)
    }

    fn retryable(&self) -> bool {
        ProviderError::retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        ProviderError::retry_after(self)
    }
}
