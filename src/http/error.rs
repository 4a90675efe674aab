//! The HTTP error body, `{"error": {"code": "...", "message": "..."}}`, and the one mapping from
//! internal errors to status codes. Internals (SQL, paths) are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;
use crate::wire::{ErrorCode, WireError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    /// The kind of error, as OpenAI's clients read it.
    #[serde(rename = "type")]
    kind: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// Refuses a caller without an admin key: "`what` needs an admin key".
    pub fn require_admin(caller: &crate::auth::Caller, what: &str) -> Result<(), Self> {
        if caller.is_admin() {
            Ok(())
        } else {
            Err(Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("{what} needs an admin key"),
            ))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code.as_str(),
                message: &self.message,
                kind: self.code.category(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::from(WireError::from(error))
    }
}

impl From<WireError> for ApiError {
    /// The status follows the code ([`ErrorCode::http_status`]); internals are already masked.
    fn from(error: WireError) -> Self {
        Self {
            status: StatusCode::from_u16(error.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: error.code,
            message: error.message,
            retry_after_s: error.retry_after,
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        Self::new(
            status,
            code,
            crate::wire::client_terms(&rejection.body_text()),
        )
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::invalid(crate::wire::client_terms(&rejection.body_text()))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint",
    )
}
