//! MCP servers that misbehave cost only themselves: one that never answers `initialize` is
//! restarted with the reason. The `/mcp` endpoint's sessions are capped and expire.

use std::time::Duration;

use crate::support::{eventually, host, mcp_status, open_mcp_session, spawn_app_with};
use mcp_platform::config::McpServerConfig;
use mcp_platform::mcp::{McpHost, ServerState};
use serde_json::json;

/// Waits until `server` is down (restarting or failed) and returns its last error.
async fn down_with_reason(host: &McpHost, server: &str) -> String {
    eventually(&format!("{server} down with a reason"), || async {
        let snapshot = host.snapshot();
        let s = &snapshot.servers[server];
        let down = matches!(s.state, ServerState::Restarting | ServerState::Failed);
        s.last_error.clone().filter(|_| down)
    })
    .await
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

#[tokio::test]
async fn mcp_endpoint_sessions_are_capped_evict_the_idle_and_expire() {
    let app = spawn_app_with(|config| {
        config.server.mcp.max_sessions = 2;
        config.server.mcp.session_idle_timeout = Duration::from_secs(6);
    })
    .await;
    let first = open_mcp_session(&app, None).await.expect("first session");
    let second = open_mcp_session(&app, None).await.expect("second session");
    // Both were just used: a third is refused, clearly, and neither is closed.
    let (status, body) = open_mcp_session(&app, None)
        .await
        .expect_err("over the cap");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too_many_sessions"), "{body}");
    assert_eq!(mcp_status(&app, None, &first).await, 200);
    // Once the first has idled past half the idle timeout (3 s), it makes room; the second
    // stays in use meanwhile. The sleeps only make time pass: at least 3.5 s have passed
    // after them, however slow the machine (a poll for the room would be refused, and
    // counted, until then).
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(mcp_status(&app, None, &second).await, 200);
    }
    let third = open_mcp_session(&app, None).await.expect("room made");
    assert_eq!(
        mcp_status(&app, None, &first).await,
        404,
        "the idle one was closed"
    );
    assert_eq!(mcp_status(&app, None, &second).await, 200);
    assert_eq!(mcp_status(&app, None, &third).await, 200);
    let endpoint = app.health().await.1["mcp_endpoint"].clone();
    assert_eq!(endpoint["sessions"], 2, "{endpoint}");
    assert_eq!(endpoint["evicted"], 1, "{endpoint}");
    assert_eq!(endpoint["refused"], 1, "{endpoint}");
    // Left alone, sessions expire.
    eventually("idle sessions closed", || async {
        (app.health().await.1["mcp_endpoint"]["sessions"] == 0).then_some(())
    })
    .await;
    assert_eq!(mcp_status(&app, None, &second).await, 404);
    app.shutdown().await;
}
