//! `GET /health`: live figures from every part, `200` when the database is usable, `503` when not.
//! Each section appears once its feature exists; nothing here is a placeholder.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{AccessSnapshot, AppState, SocketSnapshot};
use std::collections::BTreeMap;

use crate::llm::{CacheSnapshot, ProviderSnapshot};
use crate::mcp::McpSnapshot;
use crate::memory::MemorySnapshot;
use crate::process::ProcessSnapshot;
use crate::store::StoreStats;

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_s: u64,
    pub repository_stats: StoreStats,
    pub websocket_stats: SocketSnapshot,
    pub llm_client_stats: BTreeMap<String, ProviderSnapshot>,
    pub cache_stats: CacheStats,
    pub mcp_stats: McpSnapshot,
    pub memory: MemorySnapshot,
    pub process: ProcessSnapshot,
    /// Requests refused before any handler ran.
    pub access: AccessSnapshot,
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

#[tracing::instrument(level = "debug", skip_all)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let body = snapshot(&state).await;
    let status = if body.repository_stats.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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
        websocket_stats: state.sockets.snapshot(state.chat.snapshot()),
        llm_client_stats: state.providers.snapshot(),
        cache_stats: CacheStats {
            embeddings: state.providers.cache_snapshot(),
            schema: state.mcp.schema_cache(),
            history: state.store.history_cache_stats(),
        },
        mcp_stats: state.mcp.snapshot(),
        memory: state.memory.snapshot().await,
        process: ProcessSnapshot::read(),
        access: state.counters.snapshot(),
    }
}
