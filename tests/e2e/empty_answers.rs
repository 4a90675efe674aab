//! Streams a real engine sends that our fakes never did: an answer with a finish reason and no
//! content (a model that emits end-of-sequence first), and a stream that ends with no finish
//! reason at all (an engine that cut its generation short). Neither may stall the server.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{TestApp, chat, chat_app, connect, send, turn_frames};

fn role_chunk() -> Vec<u8> {
    format!(
        "data: {}\n\n",
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]})
    )
    .into_bytes()
}

fn finish_chunk() -> Vec<u8> {
    format!(
        "data: {}\n\n",
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )
    .into_bytes()
}

/// What llama-cpp-python streams when the model's first token is end-of-sequence.
fn empty_answer() -> Reply {
    Reply::RawChunks(vec![
        role_chunk(),
        finish_chunk(),
        b"data: [DONE]\n\n".to_vec(),
    ])
}

/// A role chunk, then `[DONE]` with no finish reason (a generation interrupted).
fn cut_short() -> Reply {
    Reply::RawChunks(vec![role_chunk(), b"data: [DONE]\n\n".to_vec()])
}

/// The server still answers a page, a new socket and `/health` promptly.
async fn still_serving(app: &TestApp) {
    let page = tokio::time::timeout(Duration::from_secs(5), app.client.get(app.url("/")).send())
        .await
        .expect("the page answers within 5 s")
        .expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), app.health())
        .await
        .expect("/health answers within 5 s");
    assert_eq!(status, 200);
}

async fn v1_chat(app: &TestApp, stream: bool) -> (u16, String) {
    let body = json!({"model": "mock-model", "stream": stream,
                      "messages": [{"role": "user", "content": "say nothing"}]});
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        app.client
            .post(app.url("/v1/chat/completions"))
            .json(&body)
            .send(),
    )
    .await
    .expect("/v1 answers within 10 s")
    .expect("POST /v1/chat/completions");
    let status = response.status().as_u16();
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the body ends within 10 s")
        .expect("body");
    (status, text)
}

#[tokio::test]
async fn a_streamed_answer_with_a_finish_and_no_content_completes_empty_on_the_socket() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([empty_answer()]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "say nothing", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let last = frames.last().expect("frames");
    assert_eq!(last["status"], "complete", "{frames:?}");
    assert!(
        frames.iter().all(|f| f["status"] != "chunk"),
        "no text: {frames:?}"
    );
    still_serving(&app).await;
    // The same socket takes the next turn.
    send(&mut socket, chat("r2", "again", json!({}))).await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(
        frames.last().expect("frames")["status"],
        "complete",
        "{frames:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_streamed_answer_with_a_finish_and_no_content_completes_empty_on_v1() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([empty_answer(), empty_answer()]);
    let (status, body) = v1_chat(&app, true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"finish_reason\":\"stop\""), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let (status, body) = v1_chat(&app, false).await;
    assert_eq!(status, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop", "{whole}");
    still_serving(&app).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_stream_with_no_finish_reason_is_a_retryable_provider_error_on_both_doors() {
    let (app, fake) = chat_app(|_| {}).await;
    // One try and two retries per request, each cut short.
    fake.mock.push(std::iter::repeat_with(cut_short).take(3));
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let last = frames.last().expect("frames");
    assert_eq!(last["status"], "error", "{frames:?}");
    assert_eq!(last["chunk"]["code"], "provider_error", "{last}");
    assert_eq!(last["chunk"]["retryable"], true, "{last}");
    let requests = fake.mock.requests().len();
    assert_eq!(requests, 3, "cut short before any event: retried");

    fake.mock.push(std::iter::repeat_with(cut_short).take(3));
    let (status, body) = v1_chat(&app, true).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("provider_error"), "{body}");
    still_serving(&app).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_server_stops_on_its_signal_after_an_empty_answer() {
    let (mut app, fake) = chat_app(|config| {
        config.server.shutdown_timeout = Duration::from_secs(5);
    })
    .await;
    fake.mock.push([empty_answer()]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "say nothing", json!({}))).await;
    turn_frames(&mut socket, "r1").await;
    app.signal_stop();
    tokio::time::timeout(Duration::from_secs(15), app.shutdown())
        .await
        .expect("stopped within the shutdown timeout");
}
