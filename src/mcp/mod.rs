//! The MCP host: starts the servers of `mcp` config (stdio children and Streamable HTTP
//! endpoints) in the background, keeps each one running (`supervisor.rs`), offers their tools
//! to the model under valid, unique names (`catalogue.rs`, schemas converted by `schema.rs`),
//! and runs calls (`call`). Protocol work is rmcp's (the official SDK): it negotiates the
//! protocol version (2025-11-25, or 2025-06-18 with servers that answer with it) and follows
//! tool-list pagination.

mod call;
mod catalogue;
mod client;
mod connect;
pub mod library;
pub mod login_cli;
pub mod oauth;
mod requests;
mod schema;
mod server;
mod supervisor;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use call::{ToolOutcome, parse_arguments};
pub use catalogue::{Catalogue, CatalogueTool};
use requests::Signal;
pub use requests::{
    CallHandler, ElicitAnswer, Elicitation, NoHandler, Progress, Sampled, Sampling,
};
pub use schema::convert as convert_schema;
pub use server::{ServerSnapshot, ServerState};

use crate::config::{Approval, McpConfig, McpServerConfig};
use crate::stats::CacheSnapshot;
use server::Server;
use supervisor::Supervisor;

/// Schema conversions kept.
const SCHEMA_CACHE_ENTRIES: usize = 4096;

/// Reads our environment for children (`PATH`, `HOME`, `LANG`, `inherit_env`, interpolation).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct McpHost {
    shared: Arc<Shared>,
    /// `mcp.servers_file` when it does not exist, to say so at start.
    missing_file: Option<std::path::PathBuf>,
    configs: BTreeMap<String, McpServerConfig>,
    /// `mcp.default_approval`.
    default_approval: Approval,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Logins in progress.
    logins: oauth::Logins,
}

/// Questions (elicitations and samplings) one call may ask; past it they are refused.
pub const QUESTIONS_PER_CALL: u32 = 16;
/// How long a call's timeout may be paused, in all, while the user or the model answers.
pub const PAUSE_PER_CALL: Duration = Duration::from_secs(30 * 60);

/// What a call asked so far, to bound a server that asks without end.
#[derive(Default)]
struct Asked {
    questions: u32,
    paused: Duration,
}

impl Asked {
    /// Passes what the server sent during a call to the call's handler; returns how much the
    /// call's deadline moves (the user's or the model's time, which the tool's timeout does
    /// not count, up to [`PAUSE_PER_CALL`]).
    async fn answer(
        &mut self,
        signal: Signal,
        handler: &dyn CallHandler,
        server: &str,
        cancel: &CancellationToken,
    ) -> Duration {
        let started = Instant::now();
        let over = self.questions >= QUESTIONS_PER_CALL;
        match signal {
            Signal::Progress(progress) => {
                handler.progress(progress);
                return Duration::ZERO;
            }
            Signal::Elicit(_, answer) if over => {
                let _ = answer.send(ElicitAnswer::Decline);
                return Duration::ZERO;
            }
            Signal::Sample(_, answer) if over => {
                let _ = answer.send(Err(format!(
                    "refused: a tool call may ask at most {QUESTIONS_PER_CALL} questions"
                )));
                return Duration::ZERO;
            }
            Signal::Elicit(question, answer) => {
                let answered = tokio::select! {
                    answered = handler.elicit(server, question) => answered,
                    () = cancel.cancelled() => ElicitAnswer::Cancel,
                };
                let _ = answer.send(answered);
            }
            Signal::Sample(request, answer) => {
                let sampled = tokio::select! {
                    sampled = handler.sample(server, request) => sampled,
                    () = cancel.cancelled() => Err("the call was cancelled".into()),
                };
                let _ = answer.send(sampled);
            }
        }
        self.questions += 1;
        let pause = started
            .elapsed()
            .min(PAUSE_PER_CALL.saturating_sub(self.paused));
        self.paused += pause;
        pause
    }
}

/// How long telling a server that a call is cancelled may take.
const CANCEL_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// A call not answered when it is dropped (cancelled, timed out, or its turn dropped): the
/// server is told to stop (`notifications/cancelled`).
struct CancelOnDrop {
    peer: rmcp::Peer<rmcp::RoleClient>,
    /// `None` once answered.
    request_id: Option<rmcp::model::RequestId>,
    reason: &'static str,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(request_id) = self.request_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        let notice = CancelledNotificationParam::new(Some(request_id), Some(self.reason.into()));
        runtime.spawn(async move {
            let _ =
                tokio::time::timeout(CANCEL_NOTICE_TIMEOUT, peer.notify_cancelled(notice)).await;
        });
    }
}

/// What supervisors and calls share.
pub struct Shared {
    servers: BTreeMap<String, Arc<Server>>,
    catalogue: RwLock<Arc<Catalogue>>,
    schemas: schema::SchemaCache,
    env: EnvLookup,
    max_result_bytes: usize,
    initialize_timeout: Duration,
    /// Names MCP tools never get as is: the built-in tools'.
    reserved: Vec<String>,
    /// OAuth logins to remote servers, where this host keeps them.
    logins: Option<crate::store::McpLogins>,
}

/// `/health` `mcp_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct McpSnapshot {
    /// Tools offered to the model now.
    pub tools: usize,
    pub servers: BTreeMap<String, ServerSnapshot>,
}

impl McpHost {
    /// The host for `servers` (see [`McpConfig::resolve_servers`]); nothing starts until
    /// [`McpHost::start`].
    pub fn new(
        config: &McpConfig,
        servers: BTreeMap<String, McpServerConfig>,
        env: EnvLookup,
    ) -> Self {
        let handles = servers
            .iter()
            .map(|(name, entry)| {
                let transport = if entry.command.is_some() {
                    "stdio"
                } else {
                    "http"
                };
                let timeout = entry.timeout.unwrap_or(config.tool_timeout);
                let server = Server::new(name.clone(), transport, timeout, entry.enabled);
                (name.clone(), Arc::new(server))
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                servers: handles,
                catalogue: RwLock::new(Arc::new(Catalogue::default())),
                schemas: schema::SchemaCache::new(SCHEMA_CACHE_ENTRIES),
                env,
                max_result_bytes: config.max_result_bytes,
                initialize_timeout: config.initialize_timeout,
                reserved: Vec::new(),
                logins: None,
            }),
            logins: oauth::Logins::default(),
            configs: servers,
            default_approval: config.default_approval,
            missing_file: config.servers_file.clone().filter(|path| !path.exists()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Stops with `parent` (the application's shutdown), as well as on [`McpHost::shutdown`].
    #[must_use]
    pub fn within(mut self, parent: &CancellationToken) -> Self {
        self.shutdown = parent.child_token();
        self
    }

    /// Names the catalogue never gives an MCP tool as is (the built-in tools'): a server's tool
    /// of such a name gets its server's prefix. Call before [`McpHost::start`].
    pub fn reserve_names(&mut self, names: &[&str]) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.reserved = names.iter().map(|n| (*n).to_string()).collect();
        }
    }

    /// Keeps OAuth logins to remote servers in `logins` (without, a server answering 401 is
    /// an error like any other). Call before [`McpHost::start`].
    pub fn keep_logins(&mut self, logins: crate::store::McpLogins) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.logins = Some(logins);
        }
    }

    /// Starts every enabled server in the background, in parallel. Call inside a runtime.
    pub fn start(&self) {
        if let Some(path) = &self.missing_file {
            tracing::info!(file = %path.display(), "no MCP servers file; no servers from it");
        }
        for (name, config) in &self.configs {
            let server = self.shared.servers[name].clone();
            if !config.enabled {
                tracing::info!(server = %name, "MCP server disabled in config");
                continue;
            }
            let supervisor = Supervisor {
                server,
                config: config.clone(),
                shared: self.shared.clone(),
                shutdown: self.shutdown.child_token(),
            };
            self.tasks.spawn(supervisor.run());
        }
    }

    /// Who decides a call of the catalogue tool `name`: its server, the server's own name for
    /// the tool, and the policy (the entry's `tools`, its `approval`, `mcp.default_approval`).
    /// `None` for a tool no server has.
    pub fn approval(&self, name: &str) -> Option<(String, String, Approval)> {
        let catalogue = self.catalogue();
        let tool = catalogue.get(name)?;
        let policy = self
            .configs
            .get(&tool.server)
            .map_or(self.default_approval, |entry| {
                entry.approval_for(&tool.tool, self.default_approval)
            });
        Some((tool.server.clone(), tool.tool.clone(), policy))
    }

    /// The tools offered now.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.shared.catalogue()
    }

    /// Calls the catalogue tool `name` with the model's `arguments` (JSON text). Never fails:
    /// every problem becomes an outcome the model can read. Cancelling `cancel` cancels the
    /// call on the server (`notifications/cancelled`). Progress is not shown and a question
    /// from the server is declined: see [`McpHost::call_with`].
    pub async fn call(
        &self,
        name: &str,
        arguments: &str,
        cancel: &CancellationToken,
    ) -> ToolOutcome {
        self.call_with(name, arguments, cancel, &NoHandler).await
    }

    /// [`McpHost::call`], with `handler` getting the call's progress and answering the
    /// server's questions (elicitation, sampling); the tool's timeout is paused while the user
    /// or the model answers.
    pub async fn call_with(
        &self,
        name: &str,
        arguments: &str,
        cancel: &CancellationToken,
        handler: &dyn CallHandler,
    ) -> ToolOutcome {
        let catalogue = self.catalogue();
        let Some(tool) = catalogue.get(name) else {
            return ToolOutcome::failed(
                format!("there is no tool named `{name}`; use one of the tools offered"),
                Duration::ZERO,
            );
        };
        self.call_on(&tool.server, &tool.tool, arguments, cancel, handler)
            .await
    }

    /// Calls `tool` (its server's own name) on `server_name`, as [`McpHost::call_with`]: for a
    /// call decided on (approved) before, whatever the catalogue has become meanwhile.
    pub async fn call_on(
        &self,
        server_name: &str,
        tool: &str,
        arguments: &str,
        cancel: &CancellationToken,
        handler: &dyn CallHandler,
    ) -> ToolOutcome {
        let started = Instant::now();
        let Some(server) = self.shared.servers.get(server_name) else {
            return ToolOutcome::failed(
                format!("there is no MCP server named `{server_name}`"),
                started.elapsed(),
            );
        };
        let arguments = match call::parse_arguments(arguments) {
            Ok(arguments) => arguments,
            Err(message) => return ToolOutcome::failed(message, started.elapsed()),
        };
        let Some(peer) = server.peer() else {
            return ToolOutcome::failed(
                format!(
                    "the MCP server `{server_name}` is not available ({:?}); try again later",
                    server.state()
                ),
                started.elapsed(),
            );
        };
        let request = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let handle = match peer
            .send_cancellable_request(
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                PeerRequestOptions::no_options(),
            )
            .await
        {
            Ok(handle) => handle,
            Err(error) => {
                return ToolOutcome::failed(
                    call::failure_reason(server_name, &error),
                    started.elapsed(),
                );
            }
        };
        // rmcp puts its own progress token in every request: the server's progress and
        // questions find this call by it.
        let (registered, mut signals) = server
            .in_flight
            .register(client::token_key(&handle.progress_token.0), handler.owner());
        let mut unanswered = CancelOnDrop {
            peer: peer.clone(),
            request_id: Some(handle.id.clone()),
            reason: "the call was cancelled",
        };
        let response = handle.await_response();
        tokio::pin!(response);
        let mut deadline = Instant::now() + server.timeout;
        let mut asked = Asked::default();
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let outcome = loop {
            tokio::select! {
                // In this order: a cancel or the deadline always wins, even over a server that
                // floods progress; progress that came before the result is shown before it.
                biased;
                () = cancel.cancelled() => break ToolOutcome::failed("the call was cancelled", started.elapsed()),
                () = &mut timer => {
                    unanswered.reason = "the call timed out";
                    break ToolOutcome::failed(
                        format!("the tool did not answer within {}", humantime(server.timeout)),
                        started.elapsed(),
                    );
                }
                Some(signal) = signals.recv() => {
                    // The user's and the model's time does not count against the tool.
                    deadline += asked.answer(signal, handler, server_name, cancel).await;
                    timer.as_mut().reset(deadline);
                }
                result = &mut response => {
                    unanswered.request_id = None;
                    break match result {
                        Ok(ServerResult::CallToolResult(result)) => {
                            call::render(&result, self.shared.max_result_bytes, started.elapsed())
                        }
                        Ok(_) => ToolOutcome::failed(
                            "the server answered the call with something else than a tool result",
                            started.elapsed(),
                        ),
                        Err(error) => ToolOutcome::failed(
                            call::failure_reason(server_name, &error),
                            started.elapsed(),
                        ),
                    };
                }
            }
        };
        drop(registered);
        server.record_call(outcome.took, !outcome.ok);
        outcome
    }

    pub fn snapshot(&self) -> McpSnapshot {
        McpSnapshot {
            tools: self.catalogue().tools().len(),
            servers: self
                .shared
                .servers
                .iter()
                .map(|(name, server)| (name.clone(), server.snapshot()))
                .collect(),
        }
    }

    pub fn schema_cache(&self) -> CacheSnapshot {
        self.shared.schemas.snapshot()
    }

    /// Stops every server (children are killed, HTTP sessions closed), waiting up to `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("MCP servers still stopping at the deadline");
        }
    }
}

impl Shared {
    fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the catalogue from the tools of every server now ready.
    fn rebuild_catalogue(&self) {
        let listed = self
            .servers
            .iter()
            .filter(|(_, server)| server.state() == ServerState::Ready)
            .map(|(name, server)| (name.clone(), server.tools()))
            .collect();
        let catalogue = Arc::new(Catalogue::build_reserving(&listed, &self.reserved));
        *self
            .catalogue
            .write()
            .unwrap_or_else(PoisonError::into_inner) = catalogue;
    }
}

fn humantime(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}
