//! The server as an MCP server at `/mcp`: driven by this repo's own MCP host (the rmcp client)
//! and by the reference Python client, which probes `server/discover` first and must fall back
//! to `initialize`.

use std::time::Duration;

use mcp_platform::config::McpServerConfig;
use serde_json::{Value, json};

use crate::support::python::python;
use crate::support::{TestApp, call, host, ready, spawn_app_with};

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
    let conversation = app.create_conversation().await;
    let (status, _) = app
        .append(&conversation, "Where is the deploy key kept?")
        .await;
    assert_eq!(status, 201);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/mcp_client_check.py"
    );
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(mcp_url(&app))
        .arg(&conversation)
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
    // The session is ended cleanly (DELETE answered 204, not 202).
    assert!(!stderr.contains("Session termination failed"), "{stderr}");
    check_library(&report, &conversation);
    app.shutdown().await;
}

/// Resources, prompts, completion and logging as the Python client saw them.
fn check_library(report: &Value, conversation: &str) {
    let uri = format!("mcp-platform://conversations/{conversation}");
    let uris: Vec<&str> = report["resources"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(uris, ["mcp-platform://memories", uri.as_str()], "{report}");
    assert_eq!(
        report["templates"]["resourceTemplates"][0]["uriTemplate"],
        "mcp-platform://conversations/{id}"
    );
    let transcript = report["read"]["contents"][0]["text"]
        .as_str()
        .expect("text");
    assert!(
        transcript.contains("# test") && transcript.contains("Where is the deploy key kept?"),
        "{transcript}"
    );
    assert_eq!(report["read"]["contents"][0]["mimeType"], "text/markdown");
    let memories = report["memories"]["contents"][0]["text"]
        .as_str()
        .expect("text");
    assert!(
        memories.contains("The deploy key rotates every 90 days"),
        "{memories}"
    );
    assert_eq!(report["missing"]["code"], -32002, "{report}");
    let prompts: Vec<&str> = report["prompts"]["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(prompts, ["recall", "summarize_conversation"]);
    let recall = report["recall"]["messages"].to_string();
    assert!(
        recall.contains("The deploy key rotates every 90 days"),
        "{recall}"
    );
    let summary = &report["summary"]["messages"];
    assert_eq!(summary[0]["content"]["type"], "resource", "{summary}");
    assert_eq!(summary[0]["content"]["resource"]["uri"], uri.as_str());
    assert_eq!(
        report["completed"]["completion"]["values"],
        json!([conversation]),
        "{report}"
    );
    assert_eq!(report["not_completed"]["completion"]["values"], json!([]));
    let logged = &report["logged"];
    assert_eq!(logged[0]["level"], "warning", "{report}");
    assert!(
        logged[0]["data"]
            .as_str()
            .unwrap_or("")
            .contains("memory_delete"),
        "{report}"
    );
}

/// Posts one raw body to `/mcp`: its status and JSON answer (from JSON or an event stream).
async fn post_raw(app: &TestApp, session: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.expect("POST /mcp");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let json = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .unwrap_or(&text);
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_bodies_get_400_with_json_rpc_errors_and_bad_params_get_32602() {
    let app = spawn_app_with(|_| {}).await;
    for (body, code) in [
        ("", -32700),
        ("{\"jsonrpc\": \"2.0\", ", -32700),
        (
            "[{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}]",
            -32600,
        ),
        ("{\"id\": 1, \"method\": \"ping\"}", -32600),
    ] {
        let (status, answer) = post_raw(&app, None, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    let session = crate::support::open_mcp_session(&app, None)
        .await
        .expect("session");
    for (params, method) in [
        (json!({"name": 5}), "tools/call"),
        (json!({}), "tools/call"),
        (json!({"uri": 7}), "resources/read"),
        (json!({"level": "loud"}), "logging/setLevel"),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params});
        let (status, answer) = post_raw(&app, Some(&session), &body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["id"], 3, "{answer}");
        assert_eq!(
            answer["error"]["code"], -32602,
            "{method} {params}: {answer}"
        );
    }
    // An unknown method is still -32601, and the session goes on.
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/dance"});
    let (_, answer) = post_raw(&app, Some(&session), &body.to_string()).await;
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (status, answer) = post_raw(&app, Some(&session), &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["tools"].as_array().map(Vec::len), Some(4));
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_a_session_answers_204_and_an_unknown_one_404() {
    let app = spawn_app_with(|_| {}).await;
    let session = crate::support::open_mcp_session(&app, None)
        .await
        .expect("session");
    let delete = |id: String| {
        app.client
            .delete(app.url("/mcp"))
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    let ended = delete(session.clone()).await.expect("DELETE");
    assert_eq!(ended.status().as_u16(), 204);
    let again = delete(session.clone()).await.expect("DELETE");
    assert_eq!(again.status().as_u16(), 404);
    let unknown = delete("no-such-session".into()).await.expect("DELETE");
    assert_eq!(unknown.status().as_u16(), 404);
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (status, _) = post_raw(&app, Some(&session), &body.to_string()).await;
    assert_eq!(status, 404, "an ended session is gone");
    app.shutdown().await;
}
