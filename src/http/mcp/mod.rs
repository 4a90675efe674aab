//! `/mcp`: the server as an MCP server over Streamable HTTP (rmcp; the handler is
//! [`endpoint`], what it offers besides tools [`resources`], its sessions [`sessions`]). Before rmcp sees a POST, its body is screened: one that is not JSON
//! (or empty) gets HTTP 400 with JSON-RPC -32700, one that is not a single JSON-RPC message (a
//! batch, a bare value, no `jsonrpc: "2.0"`) HTTP 400 with -32600. `server/discover`, the
//! first request of protocol 2026-07-28 clients, is answered with -32601, so they fall back to
//! `initialize` (2025-06-18 or 2025-11-25), whatever rmcp's own discovery support does. A
//! `DELETE` of a session answers 204, and 404 for a session that is unknown or not the
//! caller's.

mod endpoint;
mod resources;
mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::wire::ErrorCode;
use endpoint::McpEndpoint;
pub use sessions::{McpSessions, McpSessionsSnapshot};

/// The largest JSON-RPC body read.
const MAX_BODY: usize = 4 << 20;

pub fn router(state: &AppState) -> Router<AppState> {
    let server = McpEndpoint::new(state.chat.clone(), state.memory.clone());
    // The router's own Host check (every route, `server.allowed_hosts` included) has run.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = state.sockets.shutdown_token().child_token();
    let sessions = state.mcp_sessions.clone();
    let service =
        StreamableHttpService::new(move || Ok(server.session()), sessions.manager(), config);
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(screen_message))
        .layer(axum::middleware::from_fn(move |request, next| {
            bind_session(sessions.clone(), request, next)
        }))
}

/// A request naming a session (`Mcp-Session-Id`) must come from the principal that opened it;
/// another principal's (or a forgotten) session is answered 404, as rmcp answers an unknown
/// one, so that no one resumes, reads or ends someone else's session.
async fn bind_session(sessions: Arc<McpSessions>, request: Request, next: Next) -> Response {
    let who = request.extensions().get::<Caller>().cloned();
    let caller = who.as_ref().map(Caller::id);
    let named = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let deleting = request.method() == Method::DELETE;
    if let Some(session) = &named
        && sessions.use_session(session) != caller
    {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32001, "message": "Session not found"}})),
        )
            .into_response();
    }
    // A POST without a session may open one: within the cap.
    let mut _creating = None;
    if named.is_none() && request.method() == Method::POST {
        let owner = caller.unwrap_or(crate::store::PrincipalId::LOCAL);
        let Ok(creating) = sessions.admit_new(owner).await else {
            let mut refusal = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManySessions,
                "no room for a new /mcp session: this key's (server.mcp.max_sessions_per_key) or \
                 all (server.mcp.max_sessions) are in use; retry shortly, or end the sessions \
                 no longer used (DELETE /mcp)",
            );
            refusal.retry_after_s = Some(5);
            return refusal.into_response();
        };
        _creating = Some(creating);
    }
    let response = next.run(request).await;
    if let (Some(session), Some(caller)) = (
        response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
        caller,
    ) && named.is_none()
    {
        let ended = sessions.record(session, caller);
        // A session lasts no longer than its key (or browser session).
        if let Some(who) = who {
            let (sessions, session) = (sessions.clone(), session.to_string());
            tokio::spawn(async move {
                tokio::select! {
                    () = who.revoked() => sessions.close(&session).await,
                    () = ended.cancelled() => {}
                }
            });
        }
    }
    if deleting
        && response.status().is_success()
        && let Some(session) = named
    {
        sessions.forget(&session);
        // Ended: nothing to accept for later (rmcp says 202).
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

const SESSION_HEADER: &str = "mcp-session-id";

/// A JSON-RPC error answer outside any session: `status` and `{"jsonrpc", "id", "error"}`.
fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

/// Why a POST body is not one JSON-RPC message: `(code, message)`.
fn malformed(bytes: &[u8]) -> Result<Map<String, Value>, (i64, String)> {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err((PARSE_ERROR, "Parse error: the request body is empty".into()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            PARSE_ERROR,
            format!("Parse error: the body is not JSON ({e})"),
        )
    })?;
    let Value::Object(message) = value else {
        let what = if value.is_array() {
            "a batch (JSON-RPC batches are not part of MCP since 2025-06-18): send one message per request"
        } else {
            "not a JSON-RPC message object"
        };
        return Err((
            INVALID_REQUEST,
            format!("Invalid Request: the body is {what}"),
        ));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            INVALID_REQUEST,
            "Invalid Request: `jsonrpc` must be \"2.0\"".into(),
        ));
    }
    let is_request = message.get("method").is_some_and(Value::is_string);
    let is_response = message.contains_key("id")
        && (message.contains_key("result") || message.contains_key("error"));
    if !is_request && !is_response {
        return Err((
            INVALID_REQUEST,
            "Invalid Request: a message needs a string `method` (request, notification) or an \
             `id` with `result` or `error` (response)"
                .into(),
        ));
    }
    if let Some(id) = message.get("id")
        && !(id.is_string() || id.is_i64() || id.is_u64())
        && is_request
    {
        return Err((
            INVALID_REQUEST,
            "Invalid Request: `id` must be a string or an integer".into(),
        ));
    }
    Ok(message)
}

/// Screens a POST body (see the module's notes) and answers `server/discover` with -32601;
/// passes everything else on unchanged.
async fn screen_message(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {MAX_BODY} bytes"),
        )
            .into_response();
    };
    let message = match malformed(&bytes) {
        Ok(message) => message,
        Err((code, why)) => return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, code, &why),
    };
    if message.get("method").and_then(Value::as_str) == Some("server/discover") {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return rpc_error(
            StatusCode::OK,
            &id,
            -32601,
            "Method not found: server/discover. This server speaks MCP 2025-06-18 and \
             2025-11-25: send initialize.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_one_json_rpc_message_are_named() {
        for (body, code, says) in [
            ("", -32700, "empty"),
            ("  \n", -32700, "empty"),
            ("{\"jsonrpc\": ", -32700, "not JSON"),
            (
                "[{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}]",
                -32600,
                "batch",
            ),
            ("42", -32600, "not a JSON-RPC message"),
            ("{\"id\": 1, \"method\": \"ping\"}", -32600, "jsonrpc"),
            ("{\"jsonrpc\": \"2.0\", \"id\": 1}", -32600, "method"),
            (
                "{\"jsonrpc\": \"2.0\", \"id\": 1.5, \"method\": \"ping\"}",
                -32600,
                "`id`",
            ),
        ] {
            let (got, message) = malformed(body.as_bytes()).expect_err(body);
            assert_eq!(got, code, "{body}: {message}");
            assert!(message.contains(says), "{body}: {message}");
        }
        for body in [
            "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}",
            "{\"jsonrpc\": \"2.0\", \"method\": \"notifications/initialized\"}",
            "{\"jsonrpc\": \"2.0\", \"id\": \"a\", \"result\": {}}",
        ] {
            assert!(malformed(body.as_bytes()).is_ok(), "{body}");
        }
    }
}
