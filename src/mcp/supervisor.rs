//! Keeps one server running: connect, list its tools (and resources and prompts), publish
//! them, refresh them on `notifications/*/list_changed`, and when the session ends (the process exits, the HTTP
//! endpoint fails) take its tools out of the catalogue and start again after a backoff that
//! doubles from [`BACKOFF_BASE`] up to [`BACKOFF_CAP`]. A session that lasted
//! [`STABLE_AFTER`] resets the backoff. [`FAILED_AFTER`] start failures in a row make the
//! state `failed` (still retried at the cap: a fixed server comes back by itself).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use rmcp::Peer;
use rmcp::RoleClient;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::catalogue::ListedTool;
use super::client::HostClient;
use super::connect::{ConnectError, HttpAuth, LastStderr, Session, connect};
use super::library::{self, Library};
use super::server::{Server, ServerState};
use crate::config::McpServerConfig;

pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
pub const FAILED_AFTER: u32 = 5;
/// Listing tools takes at most this long.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Supervisor {
    pub server: Arc<Server>,
    pub config: McpServerConfig,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
}

/// What a session's server says changed.
struct Changed<'a> {
    tools: &'a Notify,
    library: &'a Notify,
    /// It offers (resources, prompts).
    offers: (bool, bool),
}

/// How a session ended.
enum Ended {
    Shutdown,
    Lost(String),
    /// It never began: the server wants a login.
    NeedsLogin(String),
}

/// A server waiting for a login tries again this often anyway (its owner may have lifted
/// the requirement).
const NEEDS_LOGIN_RETRY: Duration = Duration::from_secs(300);

impl Supervisor {
    pub async fn run(self) {
        let mut attempt: u32 = 0;
        let mut start_failures: u32 = 0;
        loop {
            let began = Instant::now();
            let (error, was_ready) = match self.session().await {
                Ok(Ended::Shutdown) => return,
                Ok(Ended::NeedsLogin(error)) => {
                    if self.wait_for_login(error).await {
                        attempt = 0;
                        start_failures = 0;
                        continue;
                    }
                    return;
                }
                Ok(Ended::Lost(error)) => (error, true),
                Err(error) => (error, false),
            };
            if self.shutdown.is_cancelled() {
                return;
            }
            if was_ready && began.elapsed() >= STABLE_AFTER {
                attempt = 0;
            }
            start_failures = if was_ready { 0 } else { start_failures + 1 };
            attempt += 1;
            let state = if start_failures >= FAILED_AFTER {
                ServerState::Failed
            } else {
                ServerState::Restarting
            };
            tracing::warn!(server = %self.server.name, %error, ?state, "MCP server down; restarting");
            self.server.set_down(state, Some(error));
            self.server.record_restart();
            self.shared.rebuild_catalogue();
            tokio::select! {
                () = tokio::time::sleep(backoff(attempt)) => {}
                () = self.shutdown.cancelled() => return,
            }
            if state != ServerState::Failed {
                self.server.set_state(ServerState::Starting);
            }
        }
    }

    /// Waits, with the server `needs_login`, until a login completes (or the retry time
    /// passes); `false` on shutdown.
    async fn wait_for_login(&self, error: String) -> bool {
        tracing::warn!(server = %self.server.name, "MCP server needs a login: {error}");
        self.server.set_down(ServerState::NeedsLogin, Some(error));
        self.shared.rebuild_catalogue();
        tokio::select! {
            () = self.server.logged_in.notified() => {}
            () = tokio::time::sleep(NEEDS_LOGIN_RETRY) => {}
            () = self.shutdown.cancelled() => return false,
        }
        self.server.set_state(ServerState::Starting);
        true
    }

    /// One session, from connecting to its end. `Err` when it never became ready.
    async fn session(&self) -> Result<Ended, String> {
        let tools_changed = Arc::new(Notify::new());
        let library_changed = Arc::new(Notify::new());
        let client = HostClient {
            server: self.server.name.clone(),
            tools_changed: tools_changed.clone(),
            library_changed: library_changed.clone(),
            calls: self.server.in_flight.clone(),
            roots: root_uris(&self.config.roots),
            sampling: self.config.sampling,
        };
        let last_stderr = LastStderr::default();
        let env = &*self.shared.env;
        let auth = HttpAuth {
            logins: self.shared.logins.as_ref(),
        };
        let connecting = connect(
            &self.server.name,
            &self.config,
            client,
            env,
            &last_stderr,
            auth,
        );
        let limit = self.shared.initialize_timeout;
        let session = tokio::select! {
            session = tokio::time::timeout(limit, connecting) => match session {
                Ok(Ok(session)) => session,
                Ok(Err(ConnectError::NeedsLogin { challenge, .. })) if self.shared.logins.is_some() => {
                    self.server.set_auth_challenge(challenge);
                    return Ok(Ended::NeedsLogin(format!(
                        "the server asks for a login: run `mcp-platform mcp login {}`",
                        self.server.name
                    )));
                }
                Ok(Err(error)) => return Err(with_stderr(error.to_string(), &last_stderr)),
                // Dropping the attempt ends it (a child process is killed).
                Err(_) => return Err(with_stderr(
                    format!("no answer to initialize within {limit:?} (mcp.initialize_timeout)"),
                    &last_stderr,
                )),
            },
            () = self.shutdown.cancelled() => return Ok(Ended::Shutdown),
        };
        let peer = session.peer().clone();
        let protocol = session
            .peer_info()
            .map(|info| info.protocol_version.to_string());
        let offers = session.peer_info().map_or((false, false), |info| {
            (
                info.capabilities.resources.is_some(),
                info.capabilities.prompts.is_some(),
            )
        });
        let tools = match self.list_tools(&peer).await {
            Ok(tools) => tools,
            Err(error) => {
                let _ = session.cancel().await;
                return Err(with_stderr(error, &last_stderr));
            }
        };
        tracing::info!(server = %self.server.name, tools = tools.len(), protocol = ?protocol, "MCP server ready");
        // Listed before the server is ready, so that ready means all of it is offered.
        self.load_library(&peer, offers).await;
        self.server.set_ready(peer.clone(), tools, protocol);
        self.shared.rebuild_catalogue();
        let changed = Changed {
            tools: &tools_changed,
            library: &library_changed,
            offers,
        };
        let ended = self.watch(session, &peer, &changed).await;
        Ok(match ended {
            Ended::Lost(error) => Ended::Lost(with_stderr(error, &last_stderr)),
            other => other,
        })
    }

    /// Reads the server's resources and prompts (those it offers); a failure leaves that list
    /// empty and is logged: the tools work without them.
    async fn load_library(&self, peer: &Peer<RoleClient>, (resources, prompts): (bool, bool)) {
        let name = &self.server.name;
        let mut library = Library::default();
        if resources {
            match library::list_resources(name, peer).await {
                Ok(listed) => library.resources = Arc::new(listed),
                Err(error) => tracing::warn!(server = %name, %error, "listing resources failed"),
            }
        }
        if prompts {
            match library::list_prompts(name, peer).await {
                Ok(listed) => library.prompts = Arc::new(listed),
                Err(error) => tracing::warn!(server = %name, %error, "listing prompts failed"),
            }
        }
        tracing::debug!(server = %name, resources = library.resources.len(), prompts = library.prompts.len(), "MCP resources and prompts");
        self.server.set_library(library);
    }

    /// Waits for the session to end, refreshing the tools, resources and prompts when the
    /// server says they changed.
    async fn watch(
        &self,
        session: Session,
        peer: &Peer<RoleClient>,
        changed: &Changed<'_>,
    ) -> Ended {
        let stop = session.cancellation_token();
        let mut ended = pin!(session.waiting());
        loop {
            tokio::select! {
                quit = &mut ended => {
                    return Ended::Lost(match quit {
                        Ok(reason) => format!("the session ended ({reason:?})"),
                        Err(error) => format!("the session task failed: {error}"),
                    });
                }
                () = changed.library.notified() => self.load_library(peer, changed.offers).await,
                () = changed.tools.notified() => match self.list_tools(peer).await {
                    Ok(tools) => {
                        tracing::info!(server = %self.server.name, tools = tools.len(), "MCP tool list changed");
                        self.server.set_tools(tools);
                        self.shared.rebuild_catalogue();
                    }
                    Err(error) => tracing::warn!(server = %self.server.name, %error, "listing tools again failed"),
                },
                () = self.shutdown.cancelled() => {
                    stop.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut ended).await;
                    return Ended::Shutdown;
                }
            }
        }
    }

    async fn list_tools(&self, peer: &Peer<RoleClient>) -> Result<Vec<ListedTool>, String> {
        let listed = tokio::time::timeout(LIST_TIMEOUT, peer.list_all_tools())
            .await
            .map_err(|_| format!("tools/list took over {}s", LIST_TIMEOUT.as_secs()))?
            .map_err(|e| format!("tools/list failed: {e}"))?;
        Ok(listed
            .into_iter()
            .map(|tool| ListedTool {
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                parameters: self
                    .shared
                    .schemas
                    .convert(&Value::Object((*tool.input_schema).clone())),
            })
            .collect())
    }
}

fn with_stderr(error: String, last: &LastStderr) -> String {
    let last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match last {
        Some(line) => format!("{error}; last stderr line: {line}"),
        None => error,
    }
}

/// `BACKOFF_BASE * 2^(attempt-1)`, capped, with ±20% jitter so servers do not restart in step.
pub fn backoff(attempt: u32) -> Duration {
    let doubled = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    doubled
        .min(BACKOFF_CAP)
        .mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// The entry's `roots` as `file://` URIs (relative paths from our working directory).
fn root_uris(roots: &[std::path::PathBuf]) -> Vec<String> {
    roots
        .iter()
        .filter_map(|path| {
            let absolute = std::path::absolute(path).ok()?;
            url::Url::from_file_path(absolute).ok().map(String::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let within = |attempt, expected: Duration| {
            let got = backoff(attempt);
            assert!(
                got >= expected.mul_f64(0.8) && got <= expected.mul_f64(1.2),
                "{attempt}: {got:?}"
            );
        };
        within(1, BACKOFF_BASE);
        within(2, BACKOFF_BASE * 2);
        within(4, BACKOFF_BASE * 8);
        within(30, BACKOFF_CAP);
    }
}
