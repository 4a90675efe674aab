//! Credentials in a configured URL (user-info, a `key=` query) stay in the configuration: an
//! error that names the URL reaches the client, the model and the history as a plain reason.

use std::time::Duration;

use mcp_platform::config::McpServerConfig;
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    calls, chat, chat_app, chat_bodies, connect, http_test_server, send, tool_frames, turn_frames,
    wait_ready,
};

fn leaks(text: &str) -> bool {
    [
        "PASS-0xdead",
        "SECRET-0xbeef",
        "Transport",
        "error sending request",
    ]
    .iter()
    .any(|secret| text.contains(secret))
}

#[tokio::test]
async fn a_remote_servers_url_secret_never_reaches_the_client_the_model_or_the_history() {
    let (mut child, url) = http_test_server().await;
    let with_secrets =
        url.replacen("http://", "http://admin:PASS-0xdead@", 1) + "?key=SECRET-0xbeef";
    let entry: McpServerConfig =
        serde_json::from_value(json!({"type": "http", "url": with_secrets, "timeout": "2s"}))
            .expect("entry");
    let (app, fake) = chat_app(move |config| {
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    wait_ready(&app, "remote").await;
    // The server goes away; the model, which saw its tools, calls one.
    child.kill().await.expect("kill the server");
    fake.mock.push([
        calls(&[("call_1", "add", json!({"a": 1, "b": 2}))]),
        Reply::text("It failed."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "add 1 and 2", json!({}))).await;
    let frames = tokio::time::timeout(Duration::from_secs(30), turn_frames(&mut socket, "r1"))
        .await
        .expect("the turn ends");
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_string();

    let shown: Vec<&Value> = tool_frames(&frames);
    assert!(!shown.is_empty(), "{frames:?}");
    let frames_text = serde_json::to_string(&frames).expect("JSON");
    assert!(!leaks(&frames_text), "frames: {frames_text}");

    let to_model = serde_json::to_string(&chat_bodies(&fake)).expect("JSON");
    assert!(!leaks(&to_model), "sent to the model: {to_model}");
    let history = serde_json::to_string(&app.history(&conversation).await).expect("JSON");
    assert!(!leaks(&history), "history: {history}");
    // What the model and the history read is a plain reason naming the server.
    let result = app
        .history(&conversation)
        .await
        .into_iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool's result is stored");
    let content = result["content"].as_str().expect("content");
    assert!(
        content.contains("`remote`")
            && (content.contains("could not be reached") || content.contains("not available")),
        "{content}"
    );
    app.shutdown().await;
}
