//! The server as an MCP server at `/mcp`: driven by this repo's own MCP host (the rmcp client)
//! and by the reference Python client, which probes `server/discover` first and must fall back
//! to `initialize`.

use std::time::Duration;

use mcp_platform::config::McpServerConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::mcp_host::{call, host, ready};
use crate::python::python;

fn mcp_url(app: &TestApp) -> String {
    format!("http://{}/mcp", app.addr)
}

#[tokio::test]
async fn the_rmcp_client_lists_the_memory_tools_and_calls_them() {
    let app = spawn_app_with(|_| {}).await;
    let entry: McpServerConfig =
        serde_json::from_value(json!({"type": "http", "url": mcp_url(&app)})).expect("entry");
    let host = host(vec![("platform", entry)], |_| {});
    ready(&host, "platform", 4).await;
    let snapshot = host.snapshot();
    let version = snapshot.servers["platform"].protocol_version.clone();
    assert!(
        matches!(version.as_deref(), Some("2025-06-18" | "2025-11-25")),
        "{version:?}"
    );
    let mut names: Vec<String> = host
        .catalogue()
        .tools()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conversation_search",
            "memory_delete",
            "memory_find",
            "memory_store"
        ]
    );

    let (ok, stored) = call(
        &host,
        "memory_store",
        json!({"text": "Backups run nightly at 2am"}),
    )
    .await;
    assert!(ok, "{stored}");
    let stored: Value = serde_json::from_str(&stored).expect("JSON");
    let (ok, found) = call(
        &host,
        "memory_find",
        json!({"query": "when do backups run?"}),
    )
    .await;
    assert!(ok, "{found}");
    let found: Value = serde_json::from_str(&found).expect("JSON");
    assert_eq!(found["memories"][0]["id"], stored["id"], "{found}");
    assert_eq!(found["memories"][0]["text"], "Backups run nightly at 2am");

    // Bad input is an isError result with the reason, and the session goes on.
    let (ok, why) = call(&host, "memory_find", json!({"query": "x", "k": 9999})).await;
    assert!(!ok && why.contains("k must be between"), "{why}");
    let (ok, why) = call(&host, "memory_delete", json!({"id": "seven"})).await;
    assert!(!ok && why.contains("invalid arguments"), "{why}");
    let (ok, deleted) = call(&host, "memory_delete", json!({"id": stored["id"]})).await;
    assert!(ok, "{deleted}");
    assert_eq!(app.health().await.1["memory"]["memories"], 0);
    host.shutdown(Duration::from_secs(5)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn server_discover_gets_method_not_found() {
    let app = spawn_app_with(|_| {}).await;
    let response = reqwest::Client::new()
        .post(mcp_url(&app))
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover",
                      "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}))
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["id"], 7, "{body}");
    assert_eq!(body["error"]["code"], -32601, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_reference_python_client_falls_back_to_initialize_and_uses_the_tools() {
    let python = python();
    let app = spawn_app_with(|_| {}).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/mcp_client_check.py"
    );
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(mcp_url(&app))
        .output()
        .await
        .expect("run the Python client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed: {stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let version = report["protocol_version"].as_str().unwrap_or_default();
    assert!(["2025-06-18", "2025-11-25"].contains(&version), "{report}");
    assert_eq!(
        report["tools"],
        json!([
            "conversation_search",
            "memory_delete",
            "memory_find",
            "memory_store"
        ])
    );
    let text = |result: &Value| {
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let found: Value = serde_json::from_str(&text(&report["found"])).expect("JSON");
    assert_eq!(
        found["memories"][0]["text"], "The deploy key rotates every 90 days",
        "{report}"
    );
    assert_eq!(found["memories"][0]["tags"], json!(["ops"]));
    assert_eq!(report["bad"]["isError"], true, "{report}");
    assert!(
        text(&report["bad"]).contains("k must be between"),
        "{report}"
    );
    let searched: Value = serde_json::from_str(&text(&report["searched"])).expect("JSON");
    assert!(searched["hits"].is_array(), "{report}");
    app.shutdown().await;
}
