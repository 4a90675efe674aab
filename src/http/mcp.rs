//! `/mcp`: the server's memory as an MCP server over Streamable HTTP (rmcp; the handler is
//! `memory::mcp_server`). `server/discover`, the first request of protocol 2026-07-28 clients,
//! is answered here with JSON-RPC error -32601, so they fall back to `initialize` (2025-06-18
//! or 2025-11-25), whatever rmcp's own discovery support does.

use crate::wire::ErrorCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use super::mcp_sessions::McpSessions;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::memory::mcp_server::MemoryMcpServer;

/// The largest JSON-RPC body read.
const MAX_BODY: usize = 4 << 20;

pub fn router(state: &AppState) -> Router<AppState> {
    let server = MemoryMcpServer::new(state.memory.clone());
    // The router's own Host check (every route, `server.allowed_hosts` included) has run.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = state.sockets.shutdown_token().child_token();
    let sessions = state.mcp_sessions.clone();
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), sessions.manager(), config);
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(refuse_discover))
        .layer(axum::middleware::from_fn(move |request, next| {
            bind_session(sessions.clone(), request, next)
        }))
}

/// A request naming a session (`Mcp-Session-Id`) must come from the principal that opened it;
/// another principal's (or a forgotten) session is answered 404, as rmcp answers an unknown
/// one, so that no one resumes, reads or ends someone else's session.
async fn bind_session(sessions: Arc<McpSessions>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().map(Caller::id);
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
        let Ok(creating) = sessions.admit_new().await else {
            let mut refusal = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManySessions,
                "the /mcp endpoint holds its maximum of sessions, all in use; retry shortly",
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
        sessions.record(session, caller);
    }
    if deleting
        && response.status().is_success()
        && let Some(session) = named
    {
        sessions.forget(&session);
    }
    response
}

const SESSION_HEADER: &str = "mcp-session-id";

/// Answers `server/discover` with -32601; passes everything else on unchanged.
async fn refuse_discover(request: Request, next: Next) -> Response {
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
    if let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(&bytes)
        && message.get("method").and_then(Value::as_str) == Some("server/discover")
    {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": -32601,
            "message": "Method not found: server/discover. This server speaks MCP 2025-06-18 \
                        and 2025-11-25: send initialize."}}))
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
