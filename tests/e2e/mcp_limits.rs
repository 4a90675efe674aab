//! MCP servers that misbehave cost only themselves: one that never answers `initialize` is
//! restarted with the reason. The `/mcp` endpoint's sessions are capped and expire.

use std::time::Duration;

use mcp_platform::config::McpServerConfig;
use mcp_platform::mcp::{McpHost, ServerState};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::mcp_host::host;

/// Waits until `server` is down (restarting or failed) and returns its last error.
async fn down_with_reason(host: &McpHost, server: &str) -> String {
    for _ in 0..100 {
        let snapshot = host.snapshot();
        let s = &snapshot.servers[server];
        if matches!(s.state, ServerState::Restarting | ServerState::Failed)
            && let Some(error) = &s.last_error
        {
            return error.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{server} never went down: {:?}",
        host.snapshot().servers[server]
    );
}

#[tokio::test]
async fn a_server_that_never_answers_initialize_is_restarted_with_the_reason() {
    // Accepts connections and never answers a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", silent.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let http: McpServerConfig =
        serde_json::from_value(json!({"type": "http", "url": url})).expect("entry");
    let stdio: McpServerConfig =
        serde_json::from_value(json!({"command": "sleep", "args": ["30"]})).expect("entry");
    let host = host(
        vec![("silent-http", http), ("silent-stdio", stdio)],
        |config| {
            config.initialize_timeout = Duration::from_millis(500);
        },
    );
    for server in ["silent-http", "silent-stdio"] {
        let reason = down_with_reason(&host, server).await;
        assert!(reason.contains("initialize"), "{server}: {reason}");
        assert!(host.snapshot().servers[server].restarts >= 1);
    }
    host.shutdown(Duration::from_secs(5)).await;
    held.abort();
}

/// Opens an `/mcp` session (initialize + initialized); its id, or the refusal's status and body.
pub async fn open_mcp_session(app: &TestApp) -> Result<String, (u16, String)> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let opened = mcp_post(app, None, init).await;
    let status = opened.status().as_u16();
    let Some(session) = opened.headers().get("mcp-session-id").cloned() else {
        return Err((status, opened.text().await.unwrap_or_default()));
    };
    let session = session.to_str().expect("ascii").to_string();
    // Read the initialize answer through, then say initialized.
    let _ = opened.bytes().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let status = mcp_post(app, Some(&session), initialized).await.status();
    assert!(status.is_success(), "{status}");
    Ok(session)
}

async fn mcp_post(app: &TestApp, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.expect("POST /mcp")
}

async fn tools_list_status(app: &TestApp, session: &str) -> u16 {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let response = mcp_post(app, Some(session), list).await;
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

#[tokio::test]
async fn mcp_endpoint_sessions_are_capped_evict_the_idle_and_expire() {
    let app = spawn_app_with(|config| {
        config.server.mcp.max_sessions = 2;
        config.server.mcp.session_idle_timeout = Duration::from_secs(6);
    })
    .await;
    let first = open_mcp_session(&app).await.expect("first session");
    let second = open_mcp_session(&app).await.expect("second session");
    // Both were just used: a third is refused, clearly, and neither is closed.
    let (status, body) = open_mcp_session(&app).await.expect_err("over the cap");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too_many_sessions"), "{body}");
    assert_eq!(tools_list_status(&app, &first).await, 200);
    // Once the first has idled past half the idle timeout, it makes room (the second stays
    // in use).
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(tools_list_status(&app, &second).await, 200);
    }
    let third = open_mcp_session(&app).await.expect("room made");
    assert_eq!(
        tools_list_status(&app, &first).await,
        404,
        "the idle one was closed"
    );
    assert_eq!(tools_list_status(&app, &second).await, 200);
    assert_eq!(tools_list_status(&app, &third).await, 200);
    let endpoint = app.health().await.1["mcp_endpoint"].clone();
    assert_eq!(endpoint["sessions"], 2, "{endpoint}");
    assert_eq!(endpoint["evicted"], 1, "{endpoint}");
    assert_eq!(endpoint["refused"], 1, "{endpoint}");
    // Left alone, sessions expire.
    let mut expired = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if app.health().await.1["mcp_endpoint"]["sessions"] == 0 {
            expired = true;
            break;
        }
    }
    assert!(expired, "idle sessions were never closed");
    assert_eq!(tools_list_status(&app, &second).await, 404);
    app.shutdown().await;
}
