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

/// Whether `origin` is the origin of the request itself (its scheme + `://` + its `Host`).
/// Such a request comes from a page this server served under a name the Host check accepted,
/// so a page from elsewhere, a rebound DNS name, or a plain-HTTP page of the same name in
/// front of an HTTPS proxy never passes as one.
fn same_origin(origin: &str, scheme: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The scheme the browser used: we serve plain HTTP, so `https` only when a TLS-terminating
/// proxy says so (`X-Forwarded-Proto`).
pub(super) fn request_scheme(headers: &axum::http::HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https { "https" } else { "http" }
}

pub async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !same_origin(&origin, request_scheme(request.headers()), host)
            && !state.allowed_origins.contains(&origin)
        {
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
        let host = Some("chat.lan:8000");
        assert!(same_origin(
            "http://chat.lan:8000",
            "http",
            Some("Chat.LAN:8000")
        ));
        assert!(same_origin("https://chat.lan", "https", Some("chat.lan")));
        assert!(!same_origin("http://chat.lan", "https", Some("chat.lan")));
        assert!(!same_origin("https://chat.lan:8000", "http", host));
        assert!(!same_origin("http://evil.example:8000", "http", host));
        assert!(!same_origin("http://chat.lan:9000", "http", host));
        assert!(!same_origin("http://chat.lan:8000.evil", "http", host));
        assert!(!same_origin("null", "http", host));
        assert!(!same_origin("http://chat.lan:8000", "http", None));
    }

    #[test]
    fn without_configuration_only_our_own_loopback_origins_are_allowed() {
        let allowed = allowed_origins(&[], 8123);
        assert!(allowed.contains(&"http://localhost:8123".to_string()));
        assert!(allowed.contains(&"http://127.0.0.1:8123".to_string()));
        assert!(!allowed.iter().any(|o| o.contains("8000")));
    }
}
