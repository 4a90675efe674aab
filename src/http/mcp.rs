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

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::AppState;
use crate::auth::Caller;
use crate::memory::mcp_server::MemoryMcpServer;
use crate::store::PrincipalId;

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
    let owners = Arc::new(SessionOwners::default());
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(refuse_discover))
        .layer(axum::middleware::from_fn(move |request, next| {
            bind_session(owners.clone(), request, next)
        }))
}

/// Sessions at most remembered with their owner; past it the oldest are forgotten (and then
/// answered as unknown sessions: the client initializes again).
const MAX_SESSIONS: usize = 10_000;

/// Which principal opened each `/mcp` session: a session id is usable only by its owner.
#[derive(Default)]
struct SessionOwners {
    owners: Mutex<(HashMap<String, PrincipalId>, VecDeque<String>)>,
}

impl SessionOwners {
    fn owner(&self, session: &str) -> Option<PrincipalId> {
        let guard = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0.get(session).copied()
    }

    fn record(&self, session: String, owner: PrincipalId) {
        let mut guard = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        if map.insert(session.clone(), owner).is_none() {
            order.push_back(session);
        }
        while order.len() > MAX_SESSIONS {
            if let Some(oldest) = order.pop_front() {
                map.remove(&oldest);
            }
        }
    }

    fn forget(&self, session: &str) {
        let mut guard = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0.remove(session);
        guard.1.retain(|s| s != session);
    }
}

/// A request naming a session (`Mcp-Session-Id`) must come from the principal that opened it;
/// another principal's (or a forgotten) session is answered 404, as rmcp answers an unknown
/// one, so that no one resumes, reads or ends someone else's session.
async fn bind_session(owners: Arc<SessionOwners>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().map(Caller::id);
    let named = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let deleting = request.method() == Method::DELETE;
    if let Some(session) = &named
        && owners.owner(session) != caller
    {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32001, "message": "Session not found"}})),
        )
            .into_response();
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
        owners.record(session.to_string(), caller);
    }
    if deleting
        && response.status().is_success()
        && let Some(session) = named
    {
        owners.forget(&session);
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
