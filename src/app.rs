//! The application: built from a validated [`Config`], served on an already bound listener until
//! a shutdown future resolves, then stopped in order (stop accepting, drain with a deadline,
//! stop background tasks, checkpoint the WAL).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::chat::ChatService;
use crate::config::{Config, ConfigError, RetentionPolicy, ServerConfig};
use crate::http::{self, AppState};
use crate::llm::Providers;
use crate::mcp::{EnvLookup, McpHost};
use crate::memory::{MemoryService, TextEmbedder, tools as memory_tools};
use crate::store::{CHECKPOINT_INTERVAL, Store, StoreError};

mod quiet;

/// Beyond the shutdown deadline: time for sockets to cancel their last turns and close.
const SOCKET_CLOSE_GRACE: Duration = Duration::from_secs(6);

/// Why the server could not start; `main` prints it on one line and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Postgres(#[from] crate::store::postgres::PostgresError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("runtime failure: {0}")]
    Runtime(std::io::Error),
    #[error("re-embedding failed: {0}")]
    Reembed(#[from] crate::memory::MemoryError),
    #[error(
        "server.host `{host}` is not a loopback address and no API key exists yet: anyone on the \
         network could use this server. Create one first with `mcp-platform keys create --name \
         NAME --admin` (or bind 127.0.0.1; or set server.auth.mode: none to opt out, not advised)"
    )]
    NoKeys { host: String },
}

/// `mcp-platform reembed`: rebuilds the vector tables for `config.memory`'s embedder. Run it
/// with the server stopped. `progress` hears each batch.
pub async fn reembed(
    config: Config,
    progress: impl Fn(&str, u64),
) -> Result<
    (
        crate::config::VectorSpace,
        crate::memory::reembed::ReembedReport,
    ),
    StartError,
> {
    let space = config.memory.vector_space(&config.llm);
    let repository = config.sqlite_store()?;
    let open_space = space.clone();
    let store =
        tokio::task::spawn_blocking(move || Store::open_for_reembed(&repository, &open_space))
            .await
            .map_err(|e| StoreError::Open {
                path: "database".into(),
                reason: e.to_string(),
            })??;
    let providers = Arc::new(Providers::new(&config.llm, |name| std::env::var(name).ok()));
    let embedder = TextEmbedder::new(&config.memory, &space, providers);
    let report = crate::memory::reembed::reembed(
        &store,
        &embedder,
        &space,
        config.memory.batch_size,
        progress,
    )
    .await?;
    store.close(std::time::Duration::from_secs(30)).await?;
    Ok((space, report))
}

/// Refuses, before anything is bound or written, a start that would expose the server to the
/// network without any API key (`server.auth.mode` `auto` or `required` on a non-loopback
/// host). [`App::start`] checks the same; this lets `main` refuse before binding.
pub fn check_exposure(config: &Config) -> Result<(), StartError> {
    let server = &config.server;
    if server.auth.mode == crate::config::AuthMode::None || is_loopback(&server.host) {
        return Ok(());
    }
    let path = config.sqlite_store()?.path;
    if crate::store::count_active_keys(&path)? == 0 {
        return Err(StartError::NoKeys {
            host: server.host.clone(),
        });
    }
    Ok(())
}

/// Binds `server.host:server.port`. Done before [`App::start`], so a busy port refuses the
/// start before the database is touched.
pub async fn bind(server: &ServerConfig) -> Result<TcpListener, StartError> {
    let addr = format!("{}:{}", server.host, server.port);
    TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// A started application: the store is open and migrated; nothing is served yet. The one
/// place its parts are built, and the root of its shutdown: every long-lived part stops with
/// `shutdown` (sockets drain on a child of it first, see [`App::serve`]).
pub struct App {
    config: Arc<Config>,
    store: Store,
    providers: Arc<Providers>,
    mcp: Arc<McpHost>,
    memory: Arc<MemoryService>,
    auth: Arc<Auth>,
    chat: Arc<ChatService>,
    sockets: Arc<http::Sockets>,
    shutdown: CancellationToken,
    started: Instant,
}

impl App {
    /// Opens the store (off the async runtime) and builds the providers, with API keys from
    /// the process environment.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_env(config, |name| std::env::var(name).ok()).await
    }

    /// Like [`App::start`], with API keys looked up through `env` (tests pass their own).
    pub async fn start_with_env(
        config: Config,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self, StartError> {
        let mut config = config;
        let started = Instant::now();
        for ignored in config.ignored_keys() {
            tracing::warn!("{ignored}");
        }
        let env: EnvLookup = Arc::new(env);
        // No provider chosen, the default without its key: a local engine may be at hand.
        let (engines, own_port) = (crate::config::LOCAL_PRESETS, config.server.port);
        if let Some(found) =
            crate::llm::local::adopt(&mut config.llm, engines, own_port, &*env).await
        {
            tracing::info!("no provider chosen and the default has no API key: using {found}");
        }
        // The servers file is read (and refused if malformed) before anything is touched.
        let mcp_servers = config.mcp.resolve_servers(&*env)?;
        if let crate::config::DatabaseUrl::Postgres(url) = config.database.url() {
            // What can be checked of a PostgreSQL database is, before saying what is missing.
            crate::store::postgres::check(&url, &config.database.postgres).await?;
            return Err(crate::store::postgres::PostgresError::NotBuilt {
                url: url.to_string(),
            }
            .into());
        }
        let repository = config.sqlite_store()?;
        let space = config.memory.vector_space(&config.llm);
        let store_space = space.clone();
        let store =
            tokio::task::spawn_blocking(move || Store::open_with(&repository, &store_space))
                .await
                .map_err(|e| StoreError::Open {
                    path: "database".into(),
                    reason: e.to_string(),
                })??;
        let auth = Arc::new(
            Auth::load(
                store.clone(),
                &config.server.auth,
                is_loopback(&config.server.host),
            )
            .await?,
        );
        check_auth(&config.server, &auth, &store).await?;
        let providers = Arc::new(Providers::new(&config.llm, &*env));
        let shutdown = CancellationToken::new();
        let mut mcp = McpHost::new(&config.mcp, mcp_servers, env).within(&shutdown);
        if config.memory.tools {
            mcp.reserve_names(&memory_tools::NAMES);
        }
        mcp.keep_logins(store.mcp_logins());
        let embedder = TextEmbedder::new(&config.memory, &space, providers.clone());
        let memory = Arc::new(MemoryService::new(
            store.clone(),
            embedder,
            config.memory.clone(),
        ));
        let config = Arc::new(config);
        let mcp = Arc::new(mcp);
        let chat = Arc::new(ChatService::new(
            store.clone(),
            providers.clone(),
            mcp.clone(),
            memory.clone(),
            config.clone(),
        ));
        let sockets = Arc::new(http::Sockets::new(
            config.chat.websocket.max_connections,
            config.chat.service.detached_turn_timeout,
            shutdown.child_token(),
        ));
        Ok(Self {
            config,
            store,
            providers,
            mcp,
            memory,
            auth,
            chat,
            sockets,
            shutdown,
            started,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn providers(&self) -> &Arc<Providers> {
        &self.providers
    }

    /// The store's periodic work: health probes, WAL checkpoints, retention.
    fn spawn_background(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        tasks.spawn(self.memory.clone().run_indexer(cancel.child_token()));
        tasks.spawn(self.auth.clone().run(cancel.child_token()));
        let retention = self.config.retention.clone();
        if retention.policy != RetentionPolicy::Unlimited {
            let store = self.store.clone();
            tasks.spawn(every(retention.interval, cancel.child_token(), move || {
                let (store, retention) = (store.clone(), retention.clone());
                async move {
                    match store.apply_retention(&retention).await {
                        Ok(report) if report.messages_deleted > 0 => {
                            tracing::info!(?report, "retention deleted old messages");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "retention run failed"),
                    }
                }
            }));
        }
        let health_period = self
            .config
            .database
            .sqlite()
            .connection_pool
            .health_check_interval;
        let store = self.store.clone();
        tasks.spawn(every(health_period, cancel.child_token(), move || {
            let store = store.clone();
            async move {
                store.check_health().await;
            }
        }));
        let store = self.store.clone();
        tasks.spawn(every(
            CHECKPOINT_INTERVAL,
            cancel.child_token(),
            move || {
                let store = store.clone();
                async move {
                    if let Err(error) = store.checkpoint().await {
                        tracing::warn!(%error, "background WAL checkpoint failed");
                    }
                }
            },
        ));
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        let cancel = self.shutdown.clone();
        let tasks = TaskTracker::new();
        self.spawn_background(&tasks, &cancel);

        let services = http::Services {
            config: self.config.clone(),
            store: self.store.clone(),
            providers: self.providers.clone(),
            mcp: self.mcp.clone(),
            memory: self.memory.clone(),
            auth: self.auth.clone(),
            chat: self.chat.clone(),
            sockets: self.sockets.clone(),
        };
        let state = AppState::new(services, self.started, local);
        let sockets = state.sockets.clone();
        // A first sample before accepting: no /health ever shows the sampled figures unknown.
        state.process.sample();
        tasks.spawn(state.process.clone().run(cancel.child_token()));
        quiet::spawn(&self, &tasks, &sockets, &cancel);
        let connections = state.connections.clone();
        let router = http::router(state);
        let stop_accepting = cancel.child_token();
        let server = http::serve(
            listener,
            router,
            connections,
            self.config.server.http.clone(),
            stop_accepting.clone(),
        );
        let mut server = tokio::spawn(server);
        log_ready(
            &self.store,
            &self.providers,
            &self.auth,
            local,
            self.started,
        );
        // After the server is up: MCP servers start in the background, in parallel.
        self.mcp.start();
        // Without a key for the active provider, a local model server may be at hand.
        let providers = self.providers.clone();
        tasks.spawn(async move {
            let engines = crate::config::LOCAL_PRESETS;
            if let Some(hint) = crate::llm::local::hint(&providers, engines, local.port()).await {
                tracing::warn!("{hint}");
            }
        });

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                // The server ended on its own: an accept error. Still close the store cleanly.
                tracing::error!(?result, "HTTP server stopped unexpectedly");
            }
        }
        let deadline = self.config.server.shutdown_timeout;
        tracing::info!(deadline = ?deadline, "shutting down: draining WebSocket sessions");
        // While sockets finish their turns (up to the deadline) and close with 1001, the
        // listener stays open: a new upgrade gets 503 `shutting_down` with Retry-After and
        // `/health` answers 503, so a load balancer sees a clear "not here" (and stops sending)
        // rather than refused connections it may count as a crash.
        sockets.begin_shutdown();
        if !sockets.drained(deadline + SOCKET_CLOSE_GRACE).await {
            tracing::warn!("WebSocket sessions still open after the shutdown deadline");
        }
        tracing::info!("sockets closed; no new connections, finishing HTTP requests");
        stop_accepting.cancel();
        if !server.is_finished() && tokio::time::timeout(deadline, &mut server).await.is_err() {
            tracing::warn!("connections still open at the shutdown deadline; closing them");
            server.abort();
        }
        // Requests are done (their tools may have needed the MCP servers): the rest stops.
        cancel.cancel();
        self.mcp.shutdown(Duration::from_secs(5)).await;
        tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 5s");
        }
        if let Err(error) = self.store.close(deadline).await {
            tracing::error!(%error, "closing the database failed");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Whether `host` (as configured) is a loopback address or name.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A server reachable from the network must not start without keys (under `auto` and
/// `required`); `none` is allowed but warned about at every start.
async fn check_auth(server: &ServerConfig, auth: &Auth, store: &Store) -> Result<(), StartError> {
    let exposed = !is_loopback(&server.host);
    match server.auth.mode {
        crate::config::AuthMode::None => {
            tracing::warn!(
                host = %server.host,
                "server.auth.mode is none: anyone who can reach this server uses it without a key"
            );
        }
        _ if exposed && !auth.has_keys() => {
            // A refused start leaves the database as it was, closed.
            let _ = store.close(Duration::from_secs(5)).await;
            return Err(StartError::NoKeys {
                host: server.host.clone(),
            });
        }
        _ => {}
    }
    Ok(())
}

fn log_ready(
    store: &Store,
    providers: &Providers,
    auth: &Auth,
    local: SocketAddr,
    started: Instant,
) {
    tracing::info!(
        address = %format!("http://{local}"),
        database = %store.path().display(),
        providers = %providers.summary(),
        auth = %auth.describe(),
        startup_ms = started.elapsed().as_millis(),
        "mcp-platform {} listening",
        env!("CARGO_PKG_VERSION"),
    );
}

/// Runs `tick` every `period` (the first at once) until cancelled; a slow tick delays the
/// next rather than piling up.
async fn every<F, Fut>(period: Duration, cancel: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => tick().await,
        }
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is called (not from the first poll), so
/// a signal arriving right after the ready line still shuts down gracefully. The future
/// resolves on the first of them. Call inside the runtime, before serving.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_handlers_are_installed_when_called_not_when_first_polled() {
        let shutdown = shutdown_signal().expect("handlers installed");
        // SIGTERM before the future is ever polled: with lazily installed handlers the default
        // action would terminate this test process.
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .expect("the signal was caught and seen");
    }
}
