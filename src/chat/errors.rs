//! Why a turn ended without `complete`: each becomes the turn's `error` frame, with a stable
//! code and the right `retryable` flag.

use crate::llm::ProviderError;
use crate::store::StoreError;

/// Why a turn ended without `complete`: becomes its error frame.
pub struct TurnError {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl From<StoreError> for TurnError {
    fn from(error: StoreError) -> Self {
        let message = if error.code() == "internal" {
            tracing::error!(%error, "turn failed in the store");
            "internal error; the server log has the details".to_string()
        } else {
            error.to_string()
        };
        Self {
            code: error.code(),
            message,
            retryable: error.retryable(),
        }
    }
}

impl From<ProviderError> for TurnError {
    fn from(error: ProviderError) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            retryable: error.retryable(),
        }
    }
}

pub fn internal(message: &str) -> TurnError {
    tracing::error!(message, "turn failed");
    TurnError {
        code: "internal",
        message: "internal error; the server log has the details".into(),
        retryable: true,
    }
}

pub fn cancelled() -> TurnError {
    TurnError {
        code: "cancelled",
        message: "the turn was cancelled".into(),
        retryable: false,
    }
}
