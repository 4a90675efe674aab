//! `server` and `logging` sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Origins allowed to open browser connections; empty means the server's own loopback
    /// origins (`http://127.0.0.1:PORT`, `http://localhost:PORT`, `http://[::1]:PORT`).
    pub allowed_origins: Vec<String>,
    /// Extra names a request's `Host` may carry (a reverse proxy's public name): `name`
    /// (any port), `name:port`, or `*.example.com` (any subdomain). Loopback names and the
    /// bound address are always allowed.
    pub allowed_hosts: Vec<String>,
    /// How long a graceful shutdown waits for in-flight requests before closing them.
    #[serde(with = "super::duration")]
    pub shutdown_timeout: Duration,
    /// Threads of the chat runtime (sockets, turns, providers, MCP). 0, the default: one fewer
    /// than the CPUs the process may use, at least one, since the database writer and
    /// SQLite's reads run on threads of their own and want a CPU under load.
    pub worker_threads: usize,
    pub auth: AuthConfig,
    /// A bearer token that may read `/metrics` (for a Prometheus scraper) without an admin
    /// key. Write it as `${VAR}` so that it stays out of the file.
    pub metrics_token: Option<Secret>,
    pub http: HttpConfig,
    /// `/mcp`, this server's own MCP endpoint.
    pub mcp: McpEndpointConfig,
}

/// `server.mcp`: sessions of the `/mcp` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpEndpointConfig {
    /// Open sessions at most. At the cap, the session idle longest is closed to make room if
    /// it has been idle for half `session_idle_timeout` (30 s at most); otherwise a new
    /// session gets `503 too_many_sessions`.
    pub max_sessions: usize,
    /// Open sessions one key may hold: past it, a new one closes that key's least recently
    /// used session (so one key cannot crowd the others out of `max_sessions`).
    pub max_sessions_per_key: usize,
    /// A session without any request for this long is closed (its client initializes again).
    #[serde(with = "super::duration")]
    pub session_idle_timeout: Duration,
}

impl Default for McpEndpointConfig {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            max_sessions_per_key: 32,
            session_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `server.http`: bounds on plain HTTP connections (upgraded WebSockets have their own, in
/// `chat.websocket`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a connection may take to send a request's head: from its opening, and again
    /// after each response while it idles in keep-alive. Past it the connection is closed.
    #[serde(with = "super::duration")]
    pub header_read_timeout: Duration,
    /// The longest pause allowed while a request body arrives.
    #[serde(with = "super::duration")]
    pub body_read_timeout: Duration,
    /// Open HTTP connections at most; past it a new one gets `503` and is closed.
    pub max_connections: usize,
    /// The kernel's send buffer per accepted connection (`SO_SNDBUF`, in bytes; Linux holds
    /// twice this). It bounds what the kernel keeps for a client that does not read, which
    /// autotuning would grow to `tcp_wmem`'s maximum (4 MB by default) per socket. 0 leaves
    /// the kernel's autotuning on.
    pub socket_send_buffer: usize,
    /// No longer read: connections are accepted and served on the one runtime, with no thread
    /// of their own to raise. It used to ask for `SCHED_FIFO` for such a thread, which needs
    /// root and which the shipped unit and image never granted. Still accepted, so that
    /// existing files load; a warning says it is ignored.
    #[serde(skip_serializing)]
    pub realtime_front: Option<bool>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 2048,
            socket_send_buffer: 256 << 10,
            realtime_front: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            worker_threads: 0,
            auth: AuthConfig::default(),
            metrics_token: None,
            http: HttpConfig::default(),
            mcp: McpEndpointConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The chat runtime's threads: `worker_threads`, or when 0, the CPUs this process may use
    /// (its affinity and cgroup quota counted) less one, at least one.
    pub fn runtime_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |cpus| cpus.get().saturating_sub(1))
                .max(1),
            n => n,
        }
    }
}

/// `server.auth`: who may use the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// How long a browser session (`POST /api/login`) lasts.
    #[serde(with = "super::duration")]
    pub session_ttl: Duration,
    /// Failed credential attempts allowed per client address per minute; past it, 429.
    pub max_failures_per_minute: u32,
    /// Reverse proxies in front of the server: a request from one of these counts against
    /// the client address its `X-Forwarded-For` names (else every client behind the proxy
    /// shares one throttle). Requests from other addresses cannot claim one.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Auto,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            max_failures_per_minute: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `auto`: credentials are required once an API key exists, and always when the server is
/// bound to a non-loopback address. `required`: always. `none`: never (logged at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Auto,
    Required,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A `tracing` filter: `info`, `debug`, or directives like `info,mcp_platform::store=debug`.
    /// `RUST_LOG`, when set, wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}
