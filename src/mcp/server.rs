//! One configured server: its state, tools, live session and figures, kept up to date by its
//! supervisor (`supervisor.rs`) and read by calls and `/health`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::Peer;
use rmcp::RoleClient;
use serde::Serialize;

use super::catalogue::ListedTool;
use crate::stats::{Histogram, LatencySummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Starting,
    Ready,
    /// Waiting out its backoff after exiting or failing to start.
    Restarting,
    /// Failed to start several times in a row; still retried at the longest backoff.
    Failed,
    Disabled,
    /// A remote server that wants an OAuth login (`mcp-platform mcp login NAME`); its tools
    /// are absent until then.
    NeedsLogin,
}

pub struct Server {
    pub name: String,
    pub transport: &'static str,
    pub timeout: Duration,
    /// Its tool calls in flight, for the progress and questions it sends.
    pub in_flight: Arc<super::requests::CallRegistry>,
    live: Mutex<Live>,
    restarts: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
    /// Notified when a login to this server completes: its supervisor connects again.
    pub logged_in: tokio::sync::Notify,
}

#[derive(Default)]
struct Live {
    state: Option<ServerState>,
    tools: Vec<ListedTool>,
    peer: Option<Peer<RoleClient>>,
    last_error: Option<String>,
    protocol_version: Option<String>,
    /// Its resources and prompts (empty when it offers none).
    library: super::library::Library,
    /// The `WWW-Authenticate` challenge of its last 401, for a login.
    auth_challenge: Option<String>,
}

/// `/health` `mcp_stats.servers.NAME`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSnapshot {
    pub state: ServerState,
    pub transport: &'static str,
    pub tools: usize,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub protocol_version: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub call_latency_ms: LatencySummary,
}

impl Server {
    pub fn new(name: String, transport: &'static str, timeout: Duration, enabled: bool) -> Self {
        let state = if enabled {
            ServerState::Starting
        } else {
            ServerState::Disabled
        };
        Self {
            name,
            transport,
            timeout,
            in_flight: Arc::default(),
            live: Mutex::new(Live {
                state: Some(state),
                ..Live::default()
            }),
            restarts: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Histogram::default(),
            logged_in: tokio::sync::Notify::new(),
        }
    }

    pub fn auth_challenge(&self) -> Option<String> {
        self.live().auth_challenge.clone()
    }

    pub fn set_auth_challenge(&self, challenge: Option<String>) {
        self.live().auth_challenge = challenge;
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> ServerState {
        self.live().state.unwrap_or(ServerState::Starting)
    }

    pub fn set_state(&self, state: ServerState) {
        self.live().state = Some(state);
    }

    pub fn set_ready(
        &self,
        peer: Peer<RoleClient>,
        tools: Vec<ListedTool>,
        protocol: Option<String>,
    ) {
        let mut live = self.live();
        live.state = Some(ServerState::Ready);
        live.peer = Some(peer);
        live.tools = tools;
        live.protocol_version = protocol;
    }

    pub fn set_library(&self, library: super::library::Library) {
        self.live().library = library;
    }

    pub fn library(&self) -> super::library::Library {
        self.live().library.clone()
    }

    pub fn set_tools(&self, tools: Vec<ListedTool>) {
        self.live().tools = tools;
    }

    /// The session ended: no tools, no peer, and why.
    pub fn set_down(&self, state: ServerState, error: Option<String>) {
        let mut live = self.live();
        live.state = Some(state);
        live.peer = None;
        live.tools.clear();
        live.library = super::library::Library::default();
        if error.is_some() {
            live.last_error = error;
        }
    }

    pub fn record_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tools(&self) -> Vec<ListedTool> {
        self.live().tools.clone()
    }

    pub fn peer(&self) -> Option<Peer<RoleClient>> {
        self.live().peer.clone()
    }

    pub fn record_call(&self, took: Duration, failed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(took);
    }

    pub fn snapshot(&self) -> ServerSnapshot {
        let live = self.live();
        ServerSnapshot {
            state: live.state.unwrap_or(ServerState::Starting),
            transport: self.transport,
            tools: live.tools.len(),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_error: live
                .last_error
                .as_deref()
                .map(|e| crate::scrub::text(e, 300)),
            protocol_version: live.protocol_version.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            call_latency_ms: self.latency.summary(),
        }
    }
}
