//! `/mcp`: the server's memory as an MCP server over Streamable HTTP (rmcp; the handler is
//! `memory::mcp_server`). `server/discover`, the first request of protocol 2026-07-28 clients,
//! is answered here with JSON-RPC error -32601, so they fall back to `initialize` (2025-06-18
//! or 2025-11-25), whatever rmcp's own discovery support does.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use super::AppState;
use crate::memory::mcp_server::MemoryMcpServer;

/// The largest JSON-RPC body read.
const MAX_BODY: usize = 4 << 20;

pub fn router(state: &AppState) -> Router<AppState> {
    let server = MemoryMcpServer::new(state.memory.clone());
    // The router's own Host check (every route, `server.allowed_hosts` included) has run.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = state.sockets.shutdown_token().child_token();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(refuse_discover))
}

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
