//! The HTTP surface: one axum router merged from one module per concern. Each module exports
//! `fn router() -> Router<AppState>`.

mod accept;
mod api;
mod auth;
mod error;
mod health;
mod host;
mod keys;
mod listener;
mod logins;
mod mcp;
mod metrics;
mod openai;
mod origin;
mod page;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;

pub use accept::serve;
pub use error::ApiError;
pub use host::AllowedHosts;
pub use listener::{ConnectionSlot, Connections, ConnectionsSnapshot};
pub use mcp::{McpSessions, McpSessionsSnapshot};
pub use ws::{SocketSnapshot, Sockets};

use crate::auth::Auth;
use crate::chat::ChatService;
use crate::config::Config;
use crate::llm::Providers;
use crate::mcp::McpHost;
use crate::memory::MemoryService;
use crate::store::Store;

/// The largest body of a login or key request; larger → 413.
pub const SMALL_BODY_LIMIT: usize = 64 << 10;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub providers: Arc<Providers>,
    pub mcp: Arc<McpHost>,
    pub memory: Arc<MemoryService>,
    pub chat: Arc<ChatService>,
    pub sockets: Arc<Sockets>,
    pub started: Instant,
    /// Browser origins allowed to call us, resolved against the bound port.
    pub allowed_origins: Arc<Vec<String>>,
    /// Names a request's `Host` may carry.
    pub allowed_hosts: Arc<AllowedHosts>,
    pub counters: Arc<AccessCounters>,
    pub auth: Arc<Auth>,
    /// Open HTTP connections under `server.http.max_connections`.
    pub connections: Arc<Connections>,
    /// Sessions of the `/mcp` endpoint.
    pub mcp_sessions: Arc<McpSessions>,
    /// The process figures `/health` serves without reading them per request.
    pub process: Arc<crate::process::ProcessSampler>,
}

/// Requests refused before any handler ran, for `/health`.
#[derive(Debug, Default)]
pub struct AccessCounters {
    host_refused: AtomicU64,
    auth_refused: AtomicU64,
}

/// `/health` `access`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccessSnapshot {
    pub host_refused: u64,
    /// Requests refused for missing or wrong credentials (401) or throttled (429).
    pub auth_refused: u64,
}

impl AccessCounters {
    pub fn host_refused(&self) {
        self.host_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_refused(&self) {
        self.auth_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> AccessSnapshot {
        AccessSnapshot {
            host_refused: self.host_refused.load(Ordering::Relaxed),
            auth_refused: self.auth_refused.load(Ordering::Relaxed),
        }
    }
}

/// The application's parts the HTTP layer serves.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub providers: Arc<Providers>,
    pub mcp: Arc<McpHost>,
    pub memory: Arc<MemoryService>,
    pub auth: Arc<Auth>,
    pub chat: Arc<ChatService>,
    pub sockets: Arc<Sockets>,
}

impl AppState {
    pub fn new(services: Services, started: Instant, local: SocketAddr) -> Self {
        let Services {
            config,
            store,
            providers,
            mcp,
            memory,
            auth,
            chat,
            sockets,
        } = services;
        let allowed_origins = Arc::new(origin::allowed_origins(
            &config.server.allowed_origins,
            local.port(),
        ));
        let allowed_hosts = Arc::new(AllowedHosts::new(&config.server.allowed_hosts, local));
        let connections = Arc::new(Connections::new(config.server.http.max_connections));
        let mcp_sessions = Arc::new(McpSessions::new(&config.server.mcp));
        Self {
            config,
            store,
            providers,
            mcp,
            memory,
            chat,
            sockets,
            started,
            allowed_origins,
            allowed_hosts,
            counters: Arc::default(),
            auth,
            connections,
            mcp_sessions,
            process: Arc::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    // Everything but the open routes needs a caller (credentials, or auth off).
    let protected = api::router()
        .merge(auth::session_router())
        .merge(keys::router())
        .merge(logins::router())
        .merge(ws::router())
        .merge(mcp::router(&state))
        .merge(openai::router())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_caller,
        ));
    let guarded = auth::open_router()
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::check_origin,
        ));
    // One span per request (DEBUG: `RUST_LOG=tower_http=debug` shows them), so store and
    // provider work logged inside a request carries its method and path.
    // The Host check runs first, before any handler or upgrade, on every route.
    health::router()
        .merge(metrics::router())
        .merge(page::router())
        .merge(logins::callback_router())
        .merge(guarded)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::check_host,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config.server.http.body_read_timeout,
        ))
        .with_state(state)
}
