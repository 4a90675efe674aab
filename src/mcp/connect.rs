//! Opening a session with one server: a child process over stdio, or Streamable HTTP.
//! A child gets only its entry's `env` plus PATH, HOME, LANG and the names in `inherit_env`
//! (never our API keys); its stderr goes to our log at debug, line by line, tagged with the
//! server's name, each line cut at [`MAX_STDERR_LINE`] bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::Command;

use super::client::HostClient;
use crate::config::McpServerConfig;

/// Variables every child gets from our environment, when set.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG"];
pub const MAX_STDERR_LINE: usize = 2048;

pub type Session = RunningService<RoleClient, HostClient>;

/// The last stderr line of a child, for `last_error` when it dies.
pub type LastStderr = Arc<Mutex<Option<String>>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("invalid header `{0}`")]
    Header(String),
    #[error("initialize failed: {0}")]
    Initialize(String),
    /// The server wants an OAuth login (it answered 401): its `WWW-Authenticate` challenge.
    #[error("the server needs a login: run `mcp-platform mcp login {server}`")]
    NeedsLogin {
        server: String,
        challenge: Option<String>,
    },
}

/// What an HTTP session needs besides the entry: the stored logins, if this host keeps them.
pub struct HttpAuth<'a> {
    pub logins: Option<&'a crate::store::McpLogins>,
}

/// Connecting to a Streamable HTTP server takes at most this long.
const HTTP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// No byte from a Streamable HTTP server for this long ends the request.
const HTTP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn connect(
    name: &str,
    server: &McpServerConfig,
    client: HostClient,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    last_stderr: &LastStderr,
    auth: HttpAuth<'_>,
) -> Result<Session, ConnectError> {
    let session = match (&server.command, &server.url) {
        (Some(command), _) => {
            let transport = spawn_child(name, command, server, env, last_stderr)?;
            client.serve(transport).await
        }
        (None, Some(url)) => {
            let (http, config) = http_parts(url, server)?;
            let manager = match auth.logins {
                Some(logins) => super::oauth::stored_manager(logins, name, url)
                    .await
                    .map_err(ConnectError::Initialize)?,
                None => None,
            };
            match manager {
                Some(manager) => {
                    let http = rmcp::transport::auth::AuthClient::new(http, manager);
                    client
                        .serve(StreamableHttpClientTransport::with_client(http, config))
                        .await
                }
                None => {
                    client
                        .serve(StreamableHttpClientTransport::with_client(http, config))
                        .await
                }
            }
        }
        (None, None) => {
            return Err(ConnectError::Initialize(
                "the entry has neither `command` nor `url`".into(),
            ));
        }
    };
    session.map_err(|e| {
        if e.is_authorization_required() {
            ConnectError::NeedsLogin {
                server: name.to_string(),
                challenge: e.auth_challenge().map(String::from),
            }
        } else {
            ConnectError::Initialize(e.to_string())
        }
    })
}

fn spawn_child(
    name: &str,
    program: &str,
    server: &McpServerConfig,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    last_stderr: &LastStderr,
) -> Result<TokioChildProcess, ConnectError> {
    let mut command = Command::new(program);
    command.args(&server.args).env_clear();
    for variable in BASE_ENV
        .iter()
        .copied()
        .chain(server.inherit_env.iter().map(String::as_str))
    {
        if let Some(value) = env(variable) {
            command.env(variable, value);
        }
    }
    for (variable, value) in &server.env {
        command.env(variable, value.expose());
    }
    if let Some(cwd) = &server.cwd {
        command.current_dir(cwd);
    }
    let spawn_error = |source| ConnectError::Spawn {
        command: program.to_string(),
        source,
    };
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(stderr) = stderr {
        tokio::spawn(forward_stderr(
            name.to_string(),
            stderr,
            last_stderr.clone(),
        ));
    }
    Ok(transport)
}

async fn forward_stderr(name: String, stderr: tokio::process::ChildStderr, last: LastStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Reads at most MAX_STDERR_LINE bytes of a line; the rest of a longer line is
        // read as following "lines", each cut the same way.
        let mut limited = (&mut reader).take(MAX_STDERR_LINE as u64);
        match tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        tracing::debug!(server = %name, "stderr: {text}");
        *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(text.to_string());
    }
}

/// The HTTP client and transport settings of a Streamable HTTP entry.
fn http_parts(
    url: &str,
    server: &McpServerConfig,
) -> Result<(reqwest::Client, StreamableHttpClientTransportConfig), ConnectError> {
    let mut headers = HashMap::new();
    for (name, value) in &server.headers {
        let header_name = axum::http::HeaderName::try_from(name.as_str())
            .map_err(|_| ConnectError::Header(name.clone()))?;
        let header_value = axum::http::HeaderValue::try_from(value.expose())
            .map_err(|_| ConnectError::Header(name.clone()))?;
        headers.insert(header_name, header_value);
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    // Bounded connects and reads: a server that accepts and goes silent fails the session
    // (and is restarted) instead of holding it forever. Reads allow for long tool calls and
    // quiet event streams.
    let client = reqwest::Client::builder()
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .read_timeout(HTTP_READ_TIMEOUT)
        .build()
        .map_err(|e| ConnectError::Initialize(format!("HTTP client: {e}")))?;
    Ok((client, config))
}
