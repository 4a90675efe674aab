//! Why a turn ended without `complete`: each becomes the turn's `error` frame, with a stable
//! code and the right `retryable` flag.

use crate::llm::ProviderError;
use crate::store::StoreError;

/// Why a turn ended without `complete`: becomes its error frame.
pub struct TurnError {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
    /// Seconds after which a retry may succeed, when known.
    pub retry_after: Option<u64>,
}

impl TurnError {
    pub fn new(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: message.into(),
            retryable,
            retry_after: None,
        }
    }
}

impl From<crate::auth::QuotaExceeded> for TurnError {
    fn from(error: crate::auth::QuotaExceeded) -> Self {
        Self {
            code: "quota_exceeded",
            message: error.to_string(),
            retryable: true,
            retry_after: Some(error.retry_after_s),
        }
    }
}

impl From<StoreError> for TurnError {
    fn from(error: StoreError) -> Self {
        let message = if error.code() == "internal" {
            tracing::error!(%error, "turn failed in the store");
            "internal error; the server log has the details".to_string()
        } else {
            error.to_string()
        };
        Self::new(error.code(), message, error.retryable())
    }
}

impl From<ProviderError> for TurnError {
    fn from(error: ProviderError) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            retryable: error.retryable(),
            retry_after: error.retry_after().map(|d| d.as_secs().max(1)),
        }
    }
}

pub fn internal(message: &str) -> TurnError {
    tracing::error!(message, "turn failed");
    TurnError::new(
        "internal",
        "internal error; the server log has the details",
        true,
    )
}

pub fn cancelled() -> TurnError {
    TurnError::new("cancelled", "the turn was cancelled", false)
}
