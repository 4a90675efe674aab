//! The errors clients see, whatever the door (`/ws/chat` frames, `/api` and `/v1` bodies): one
//! [`ErrorCode`] per stable code of docs/protocol.md, one trait ([`WireFault`]) that the
//! store, provider, memory, quota and frame errors implement, and one place
//! ([`WireError::from_fault`]) where internal details are logged and masked.

use std::time::Duration;

use serde::Serialize;

/// The stable codes of docs/protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    UnknownAction,
    TooLarge,
    NotFound,
    AlreadyExists,
    DuplicateRequest,
    EmbedderError,
    Busy,
    ContextTooLarge,
    QuotaExceeded,
    Cancelled,
    TurnTimeout,
    RateLimited,
    ProviderUnavailable,
    ProviderError,
    ProviderNotConfigured,
    AuthError,
    ModelNotFound,
    Unavailable,
    Internal,
    // Refusals before any handler runs (HTTP).
    HostNotAllowed,
    OriginNotAllowed,
    Unauthorized,
    Forbidden,
    TooManyAttempts,
    TooManyConnections,
    TooManySessions,
    ShuttingDown,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnknownAction => "unknown_action",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::DuplicateRequest => "duplicate_request",
            Self::EmbedderError => "embedder_error",
            Self::Busy => "busy",
            Self::ContextTooLarge => "context_too_large",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Cancelled => "cancelled",
            Self::TurnTimeout => "turn_timeout",
            Self::RateLimited => "rate_limited",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::ProviderError => "provider_error",
            Self::ProviderNotConfigured => "provider_not_configured",
            Self::AuthError => "auth_error",
            Self::ModelNotFound => "model_not_found",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::HostNotAllowed => "host_not_allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::TooManyAttempts => "too_many_attempts",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManySessions => "too_many_sessions",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// The kind of error, in the vocabulary OpenAI's clients know (`error.type`).
    pub const fn category(self) -> &'static str {
        match self.http_status() {
            400 | 404 | 409 | 413 | 421 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500 => "server_error",
            _ => "api_error",
        }
    }

    /// The HTTP status a door answers with for this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::UnknownAction | Self::ContextTooLarge => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::OriginNotAllowed => 403,
            Self::NotFound | Self::ModelNotFound => 404,
            Self::AlreadyExists | Self::DuplicateRequest => 409,
            Self::TooLarge => 413,
            Self::HostNotAllowed => 421,
            Self::QuotaExceeded | Self::RateLimited | Self::TooManyAttempts => 429,
            Self::Cancelled => 499,
            Self::Internal => 500,
            Self::ProviderError | Self::AuthError | Self::EmbedderError => 502,
            Self::Busy
            | Self::ProviderUnavailable
            | Self::ProviderNotConfigured
            | Self::Unavailable
            | Self::TooManyConnections
            | Self::TooManySessions
            | Self::ShuttingDown => 503,
            Self::TurnTimeout => 504,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a client may be told about.
pub trait WireFault: std::fmt::Display {
    fn code(&self) -> ErrorCode;
    /// Whether the same request may succeed if tried again later.
    fn retryable(&self) -> bool;
    /// When a retry may succeed, if known.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// What a client is told: code, message (never internals), whether and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    /// Whole seconds, at least 1, when known.
    pub retry_after: Option<u64>,
}

/// The message of every internal error: the details go to the log only.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: message.into(),
            retryable,
            retry_after: None,
        }
    }

    /// The one place internals are masked: an `internal` fault is logged whole and told as
    /// [`INTERNAL_MESSAGE`].
    pub fn from_fault(fault: &(impl WireFault + ?Sized)) -> Self {
        let code = fault.code();
        let message = if code == ErrorCode::Internal {
            tracing::error!(error = %fault, "request failed");
            INTERNAL_MESSAGE.to_string()
        } else {
            fault.to_string()
        };
        Self {
            code,
            message,
            retryable: fault.retryable(),
            retry_after: fault.retry_after().map(|d| d.as_secs().max(1)),
        }
    }

    /// An internal failure described by `what` (logged, not told).
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "request failed");
        Self::new(ErrorCode::Internal, INTERNAL_MESSAGE, true)
    }

    pub fn cancelled() -> Self {
        Self::new(ErrorCode::Cancelled, "the turn was cancelled", false)
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }
}

impl<F: WireFault> From<F> for WireError {
    fn from(fault: F) -> Self {
        Self::from_fault(&fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaky;

    impl std::fmt::Display for Leaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SQL error near /var/lib/secret.db")
        }
    }

    impl WireFault for Leaky {
        fn code(&self) -> ErrorCode {
            ErrorCode::Internal
        }
        fn retryable(&self) -> bool {
            true
        }
    }

    #[test]
    fn internals_are_masked_and_others_told() {
        let told = WireError::from(Leaky);
        assert_eq!(told.code, ErrorCode::Internal);
        assert_eq!(told.message, INTERNAL_MESSAGE);
        let quota = WireError::new(ErrorCode::QuotaExceeded, "used up", true);
        assert_eq!(quota.message, "used up");
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::ProviderNotConfigured,
            ErrorCode::TooManySessions,
        ] {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                serde_json::Value::String(code.as_str().into())
            );
        }
        assert_eq!(ErrorCode::QuotaExceeded.http_status(), 429);
        assert_eq!(ErrorCode::ModelNotFound.http_status(), 404);
    }
}
