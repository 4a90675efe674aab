//! MCP peers: the stdio test server (`mcp-test-server`) as the host sees it, the same over
//! HTTP, the reference `server-everything`, an app with them configured, and the app's own
//! `/mcp` as a client opens it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mcp_platform::config::{McpConfig, McpServerConfig};
use mcp_platform::mcp::{McpHost, ServerState};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::app::{TestApp, eventually};
use super::node::server_everything;
use super::provider::Fake;
use super::ws::chat_app;

pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

/// The tools the test server lists before `unlock`.
pub const TEST_TOOLS: usize = 12;

pub fn stdio_entry(extra: Value) -> McpServerConfig {
    let mut entry = json!({"command": TEST_SERVER});
    if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), extra) {
        entry.extend(extra);
    }
    serde_json::from_value(entry).expect("a valid entry")
}

/// Our environment as the host sees it: PATH, and a key no child may see.
fn env(name: &str) -> Option<String> {
    match name {
        "PATH" => std::env::var("PATH").ok(),
        "OPENAI_API_KEY" => Some("sk-must-not-leak".into()),
        "SHARED_SETTING" => Some("inherited".into()),
        _ => None,
    }
}

pub fn host(servers: Vec<(&str, McpServerConfig)>, edit: impl FnOnce(&mut McpConfig)) -> McpHost {
    let mut config = McpConfig::default();
    edit(&mut config);
    let servers: BTreeMap<String, McpServerConfig> = servers
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    let host = McpHost::new(&config, servers, Arc::new(env));
    host.start();
    host
}

/// Waits until `server` is in `state` with at least `tools` tools listed.
pub async fn ready(host: &McpHost, server: &str, tools: usize) {
    let what = format!("{server} ready with {tools} tools");
    eventually(&what, || async {
        let snapshot = host.snapshot();
        let s = &snapshot.servers[server];
        (s.state == ServerState::Ready && s.tools >= tools).then_some(())
    })
    .await;
}

pub async fn call(host: &McpHost, tool: &str, arguments: Value) -> (bool, String) {
    let outcome = host
        .call(tool, &arguments.to_string(), &CancellationToken::new())
        .await;
    (outcome.ok, outcome.content)
}

/// Starts the test server over Streamable HTTP: the child (killed when dropped) and its URL.
pub async fn http_test_server() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(TEST_SERVER)
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the HTTP test server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = lines.next_line().await.expect("read").expect("a line");
    let url = line
        .strip_prefix("listening on ")
        .expect("the URL line")
        .to_string();
    (child, url)
}

/// The app with the test server as MCP server `test`, ready.
pub async fn tool_app(edit: impl FnOnce(&mut mcp_platform::config::Config)) -> (TestApp, Fake) {
    let (app, fake) = chat_app(|config| {
        config
            .mcp
            .servers
            .insert("test".into(), stdio_entry(json!({"timeout": "1s"})));
        edit(config);
    })
    .await;
    wait_ready(&app, "test").await;
    (app, fake)
}

/// Waits for MCP server `name` to be ready.
pub async fn wait_ready(app: &TestApp, name: &str) {
    wait_state(app, name, "ready").await;
}

/// The app with server-everything as MCP server `everything`, ready.
pub async fn everything_app(extra: Value, elicitation_timeout: Duration) -> (TestApp, Fake) {
    let script = tokio::task::spawn_blocking(server_everything)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let mut entry = json!({"command": "node", "args": [script, "stdio"],
                           "inherit_env": ["PATH"], "timeout": "20s"});
    if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), extra) {
        entry.extend(extra);
    }
    let entry: McpServerConfig = serde_json::from_value(entry).expect("entry");
    let (app, fake) = chat_app(move |config| {
        config.mcp.servers.insert("everything".into(), entry);
        config.mcp.elicitation_timeout = elicitation_timeout;
    })
    .await;
    wait_ready(&app, "everything").await;
    (app, fake)
}

/// POSTs one JSON-RPC message to the app's `/mcp`, with `key` and `session` when given.
pub async fn mcp_post(
    app: &TestApp,
    key: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.expect("POST /mcp")
}

/// Opens an `/mcp` session of `key` (initialize + initialized); its id, or the refusal's
/// status and body.
pub async fn open_mcp_session(app: &TestApp, key: Option<&str>) -> Result<String, (u16, String)> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let opened = mcp_post(app, key, None, init).await;
    let status = opened.status().as_u16();
    let Some(session) = opened.headers().get("mcp-session-id").cloned() else {
        return Err((status, opened.text().await.unwrap_or_default()));
    };
    let session = session.to_str().expect("ascii").to_string();
    // Read the initialize answer through, then say initialized.
    let _ = opened.bytes().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let status = mcp_post(app, key, Some(&session), initialized)
        .await
        .status();
    assert!(status.is_success(), "{status}");
    Ok(session)
}

/// The status of a `tools/list` in `session`, its body read through.
pub async fn mcp_status(app: &TestApp, key: Option<&str>, session: &str) -> u16 {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let response = mcp_post(app, key, Some(session), list).await;
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

pub async fn server_health(app: &TestApp, name: &str) -> Value {
    app.health().await.1["mcp_stats"]["servers"][name].clone()
}

/// Waits for MCP server `name` to be in `state`, as `/health` shows it.
pub async fn wait_state(app: &TestApp, name: &str, state: &str) {
    let what = format!("MCP server `{name}` {state}");
    eventually(&what, || async {
        (server_health(app, name).await["state"] == state).then_some(())
    })
    .await;
}
