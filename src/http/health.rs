//! `GET /health`: live figures from every part, `200` when the database is usable, `503` when not.
//! Each section appears once its feature exists; nothing here is a placeholder.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{AccessSnapshot, AppState, ConnectionsSnapshot, McpSessionsSnapshot, SocketSnapshot};
use std::collections::BTreeMap;

use crate::auth::AuthSnapshot;
use crate::llm::ProviderSnapshot;
use crate::mcp::McpSnapshot;
use crate::memory::MemorySnapshot;
use crate::process::ProcessSnapshot;
use crate::stats::CacheSnapshot;
use crate::store::StoreStats;

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_s: u64,
    pub repository_stats: StoreStats,
    /// Plain HTTP connections (`server.http`).
    pub http: ConnectionsSnapshot,
    pub websocket_stats: SocketSnapshot,
    pub llm_client_stats: BTreeMap<String, ProviderSnapshot>,
    pub cache_stats: CacheStats,
    pub mcp_stats: McpSnapshot,
    /// Sessions of this server's own `/mcp` endpoint.
    pub mcp_endpoint: McpSessionsSnapshot,
    pub memory: MemorySnapshot,
    pub process: ProcessSnapshot,
    /// Requests refused before any handler ran.
    pub access: AccessSnapshot,
    /// Authentication mode, keys with today's usage and quotas.
    pub auth: AuthSnapshot,
}

#[derive(Serialize)]
pub struct CacheStats {
    pub embeddings: CacheSnapshot,
    /// MCP input schemas converted to provider function parameters.
    pub schema: CacheSnapshot,
    /// Recent conversation history kept in memory for chat turns.
    pub history: CacheSnapshot,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// With authentication on, only an admin sees the figures; anyone else (a load balancer's
/// probe) gets `{"status", "version"}`.
#[tracing::instrument(level = "debug", skip_all)]
async fn health(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let healthy = state.store.stats().healthy;
    let stopping = state.sockets.shutting_down();
    let status = if healthy && !stopping {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let admin = super::auth::optional_caller(&state, &headers, peer).is_some_and(|c| c.is_admin());
    if !admin {
        let minimal = Minimal {
            status: status_word(healthy, stopping),
            version: env!("CARGO_PKG_VERSION"),
        };
        return (status, Json(minimal)).into_response();
    }
    let mut body = snapshot(&state).await;
    body.status = status_word(healthy, stopping);
    (status, Json(body)).into_response()
}

/// `shutting_down` while the server drains (503, so a load balancer stops sending).
fn status_word(healthy: bool, stopping: bool) -> &'static str {
    match (healthy, stopping) {
        (_, true) => "shutting_down",
        (true, false) => "ok",
        (false, false) => "unhealthy",
    }
}

#[derive(Serialize)]
struct Minimal {
    status: &'static str,
    version: &'static str,
}

/// Every figure, as `/health` and `/metrics` show them.
pub async fn snapshot(state: &AppState) -> Health {
    let repository_stats = state.store.stats();
    let healthy = repository_stats.healthy;
    Health {
        status: if healthy { "ok" } else { "unhealthy" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        repository_stats,
        http: state.connections.snapshot(),
        websocket_stats: state.sockets.snapshot(state.chat.snapshot()),
        llm_client_stats: state.providers.snapshot(),
        cache_stats: CacheStats {
            embeddings: state.providers.cache_snapshot(),
            schema: state.mcp.schema_cache(),
            history: state.store.history_cache_stats(),
        },
        mcp_stats: state.mcp.snapshot(),
        mcp_endpoint: state.mcp_sessions.snapshot().await,
        memory: state.memory.snapshot().await,
        process: ProcessSnapshot::quick(&state.process),
        access: state.counters.snapshot(),
        auth: state.auth.snapshot(),
    }
}
