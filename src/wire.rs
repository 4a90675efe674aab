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
    /// An error to tell; its message passes the logs' scrubber on the way (a URL's password
    /// or key in an error a lower layer wrote never reaches a client, a model or the history).
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: told(message.into()),
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
            told(fault.to_string())
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
}

/// A parser's complaint about a client's JSON in the client's terms: serde names our types
/// (`expected struct CreateBody with 2 elements`) and its own (`sequence`, `map`); a client
/// knows objects, arrays and the fields the documentation gives.
pub fn client_terms(message: &str) -> String {
    let mut text = message
        .replace(
            "Failed to deserialize the JSON body into the target type: ",
            "",
        )
        .replace(
            "Failed to parse the request body as JSON: ",
            "not valid JSON: ",
        )
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: object")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected an object");
    for (kind, said) in [
        ("expected struct ", "expected an object"),
        ("expected tuple struct ", "expected an array"),
        ("expected newtype struct ", "expected a value"),
        ("expected enum ", "expected one of the documented values"),
        (
            "expected variant of enum ",
            "expected one of the documented values",
        ),
    ] {
        while let Some(at) = text.find(kind) {
            let rest = &text[at + kind.len()..];
            let mut end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            // `with 2 elements`: what serde tried to read an array as.
            if let Some(tail) = rest[end..].strip_prefix(" with ")
                && let Some(count) = tail.find(" element")
                && tail[..count].chars().all(|c| c.is_ascii_digit())
            {
                let unit = if tail[count..].starts_with(" elements") {
                    9
                } else {
                    8
                };
                end += " with ".len() + count + unit;
            }
            text = format!("{}{said}{}", &text[..at], &rest[end..]);
        }
    }
    text
}

/// `message` with credentials hidden, as the logs have it.
fn told(message: String) -> String {
    match crate::scrub::credentials(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(clean) => clean,
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
    fn parser_complaints_are_told_without_our_type_names() {
        for (serde, told) in [
            (
                "Failed to deserialize the JSON body into the target type: invalid type: \
                 sequence, expected struct CreateBody with 2 elements at line 1 column 1",
                "invalid type: array, expected an object at line 1 column 1",
            ),
            (
                "invalid length 1, expected struct CreateBody with 2 elements",
                "invalid length 1, expected an object",
            ),
            (
                "unknown variant `x`, expected enum Role",
                "unknown variant `x`, expected one of the documented values",
            ),
            (
                "missing field `text` at line 1 column 2",
                "missing field `text` at line 1 column 2",
            ),
        ] {
            assert_eq!(client_terms(serde), told);
        }
    }

    #[test]
    fn credentials_in_a_message_are_hidden() {
        let told = WireError::new(
            ErrorCode::ProviderError,
            "error sending request for url (http://user:PASS@host/mcp?key=SECRET)",
            true,
        );
        assert!(
            !told.message.contains("PASS") && !told.message.contains("SECRET"),
            "{}",
            told.message
        );
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
