//! MCP servers that misbehave cost only themselves: one that never answers `initialize` is
//! restarted with the reason.

use std::time::Duration;

use mcp_platform::config::McpServerConfig;
use mcp_platform::mcp::{McpHost, ServerState};
use serde_json::json;

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
