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

/// Whether `origin` is the origin of the request itself (`http(s)://` + its `Host`). Such a
/// request comes from a page this server served under a name the Host check accepted, so a
/// page from elsewhere, or a rebound DNS name, never passes as one.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest == host)
}

pub async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !same_origin(&origin, host) && !state.allowed_origins.contains(&origin) {
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
    fn a_page_of_the_name_it_was_asked_by_is_same_origin() {
        assert!(same_origin("http://chat.lan:8000", Some("Chat.LAN:8000")));
        assert!(same_origin("https://chat.lan", Some("chat.lan")));
        assert!(!same_origin(
            "http://evil.example:8000",
            Some("chat.lan:8000")
        ));
        assert!(!same_origin("http://chat.lan:9000", Some("chat.lan:8000")));
        assert!(!same_origin(
            "http://chat.lan:8000.evil",
            Some("chat.lan:8000")
        ));
        assert!(!same_origin("null", Some("chat.lan:8000")));
        assert!(!same_origin("http://chat.lan:8000", None));
    }

    #[test]
    fn without_configuration_only_our_own_loopback_origins_are_allowed() {
        let allowed = allowed_origins(&[], 8123);
        assert!(allowed.contains(&"http://localhost:8123".to_string()));
        assert!(allowed.contains(&"http://127.0.0.1:8123".to_string()));
        assert!(!allowed.iter().any(|o| o.contains("8000")));
    }
}
