//! Revoking a key ends everything it started, within about a second, whatever door it came
//! through and whether anyone still watches: a turn its socket left behind, a `/v1` answer
//! in flight. What is stored says it was cut off.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Fake, TestApp, chat, chat_app, connect_with_key, create_key, next_frame, send,
};

/// Forty chunks a tenth of a second apart: four seconds of answer.
fn slow_answer(fake: &Fake) {
    fake.mock.push([Reply::Text {
        pieces: (0..40).map(|i| format!("w{i} ")).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(100),
    }]);
}

async fn revoke(app: &TestApp, admin: &str, name: &str) {
    let response = app
        .client
        .delete(app.url(&format!("/api/keys/{name}")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("DELETE /api/keys");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_turn_left_running_by_its_socket_ends_when_its_key_is_revoked() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(&app, Some(&admin), json!({"name": "leaver"})).await;
    slow_answer(&fake);
    let mut socket = connect_with_key(&app, Some(&key)).await.expect("socket");
    send(&mut socket, chat("r1", "talk for a while", json!({}))).await;
    let first = next_frame(&mut socket).await;
    let conversation = first["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_string();
    while next_frame(&mut socket).await["status"] != "chunk" {}
    drop(socket); // The turn goes on, detached.
    revoke(&app, &admin, "leaver").await;
    let revoked_at = Instant::now();
    // The cut-off answer is stored, marked, well before the four seconds the answer takes.
    let mut stored: Option<Value> = None;
    while revoked_at.elapsed() < Duration::from_secs(3) {
        let history: Value = app
            .client
            .get(app.url(&format!("/api/conversations/{conversation}/messages")))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("GET messages")
            .json()
            .await
            .expect("JSON");
        let items = history["items"].as_array().expect("items");
        if let Some(answer) = items.iter().find(|m| m["role"] == "assistant") {
            stored = Some(answer.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = stored.expect("the answer is stored within 3 s of the revocation");
    assert_eq!(answer["status"], "cancelled", "{answer}");
    let text = answer["content"].as_str().expect("content");
    assert!(text.starts_with("w0 ") && !text.contains("w39"), "{text}");
    assert_eq!(
        fake.mock.requests().len(),
        1,
        "the provider was not asked again"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_v1_answer_in_flight_ends_when_its_key_is_revoked() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(&app, Some(&admin), json!({"name": "sdk"})).await;
    slow_answer(&fake);
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "mock-model", "stream": true,
                      "messages": [{"role": "user", "content": "talk"}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("w1 ") {
        let chunk = body.next().await.expect("more").expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    revoke(&app, &admin, "sdk").await;
    let rest = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("the stream ends within 3 s of the revocation");
    assert!(rest.contains("unauthorized"), "{rest}");
    assert!(!rest.contains("w39"), "{rest}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_keys_mcp_sessions_are_closed() {
    let (app, _fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(&app, Some(&admin), json!({"name": "client"})).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let opened = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    assert!(opened.headers().contains_key("mcp-session-id"));
    let _ = opened.bytes().await;
    let open_sessions = || async {
        let health = app.health_as(&admin).await;
        health["mcp_endpoint"]["sessions"].as_u64()
    };
    assert_eq!(open_sessions().await, Some(1));
    revoke(&app, &admin, "client").await;
    let revoked_at = Instant::now();
    while open_sessions().await != Some(0) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "the session is closed within 3 s of the revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
}
