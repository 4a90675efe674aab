//! Browsers let any web page reach a loopback server, so requests that carry an `Origin`
//! header must come from an allowed origin. Requests without one (CLIs, other servers) pass.

use crate::wire::ErrorCode;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// The configured origins, or the server's own loopback origins when none are configured.
pub fn allowed_origins(configured: &[String], port: u16) -> Vec<String> {
    if configured.is_empty() {
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|host| format!("http://{host}:{port}"))
            .collect()
    } else {
        configured
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect()
    }
}

pub async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        if !state.allowed_origins.contains(&origin) {
            tracing::debug!(%origin, "refused a request from a foreign origin");
            if request.uri().path().starts_with("/ws/") {
                state.sockets.rejected(super::ws::Rejection::Origin);
            }
            return ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::OriginNotAllowed,
                format!("origin `{origin}` is not in server.allowed_origins"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_configuration_only_our_own_loopback_origins_are_allowed() {
        let allowed = allowed_origins(&[], 8123);
        assert!(allowed.contains(&"http://localhost:8123".to_string()));
        assert!(allowed.contains(&"http://127.0.0.1:8123".to_string()));
        assert!(!allowed.iter().any(|o| o.contains("8000")));
    }
}
