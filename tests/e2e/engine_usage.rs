//! What an engine that reports less than OpenAI does is still counted and understood: a stream
//! without usage is counted by us (marked `estimated`) into the turn, `/health` and the key's
//! `tokens_per_day`; a stream that ends with no event at all is asked again without streaming,
//! so a context overflow is learned and compacted, and the window the engine names sizes the
//! summary and later turns.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    chat, chat_app, connect, connect_with_key, create_key, send, text_of, turn_frames,
};

fn sse(payload: &Value) -> Vec<u8> {
    format!("data: {payload}\n\n").into_bytes()
}

/// A streamed answer as llama-cpp-python sends it: no usage, ever.
fn without_usage(pieces: &[&str]) -> Reply {
    let mut chunks = vec![sse(
        &json!({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}),
    )];
    for piece in pieces {
        chunks.push(sse(
            &json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
        ));
    }
    chunks.push(sse(
        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ));
    chunks.push(b"data: [DONE]\n\n".to_vec());
    Reply::RawChunks(chunks)
}

/// llama-cpp-python's streamed answer to a prompt over its window: 200, and nothing.
fn empty_body() -> Reply {
    Reply::RawChunks(Vec::new())
}

/// Its answer to the same request unstreamed.
fn overflow(window: u32) -> Reply {
    Reply::Status {
        status: 400,
        retry_after: None,
        body: json!({"error": {
            "message": format!("This model's maximum context length is {window} tokens. However, you requested 2311 tokens (2055 in the messages, 256 in the completion). Please reduce the length of the messages or completion."),
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        .to_string(),
    }
}

#[tokio::test]
async fn a_stream_without_usage_is_counted_by_us_in_the_turn_health_and_quota() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let frugal = create_key(
        &app,
        Some(&admin),
        json!({"name": "frugal", "tokens_per_day": 30}),
    )
    .await;
    fake.mock
        .push([without_usage(&["Hello ", "there, ", "how can I help?"])]);
    let mut socket = connect_with_key(&app, Some(&frugal)).await.expect("socket");
    send(&mut socket, chat("r1", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let complete = frames.last().expect("frames");
    assert_eq!(complete["status"], "complete", "{frames:?}");
    let usage = &complete["chunk"]["metadata"]["usage"];
    assert_eq!(usage["estimated"], true, "{usage}");
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().expect("prompt"),
        usage["completion_tokens"].as_u64().expect("completion"),
    );
    assert!(prompt > 5 && completion >= 5, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));

    let health = app.health_as(&admin).await;
    let stats = &health["llm_client_stats"]["mock"];
    assert_eq!(stats["tokens_in"].as_u64(), Some(prompt), "{stats}");
    assert_eq!(stats["tokens_out"].as_u64(), Some(completion), "{stats}");
    assert_eq!(
        health["auth"]["keys"]["frugal"]["tokens_today"].as_u64(),
        Some(prompt + completion),
        "{health}"
    );
    // Over its 30 tokens a day: the next turn is refused before the provider is asked.
    send(&mut socket, chat("r2", "again", json!({}))).await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["code"],
        "quota_exceeded",
        "{frames:?}"
    );
    assert_eq!(fake.mock.requests().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn v1_streams_an_estimated_usage_chunk_when_the_provider_sends_none() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([without_usage(&["One ", "two ", "three."])]);
    let body = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "mock-model", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "count to three"}]}))
        .send()
        .await
        .expect("POST")
        .text()
        .await
        .expect("body");
    let usage = crate::support::streamed_usage(&body);
    assert_eq!(usage["estimated"], true, "{usage}");
    assert!(usage["completion_tokens"].as_u64() >= Some(3), "{usage}");
    assert!(usage["prompt_tokens"].as_u64() >= Some(3), "{usage}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_streamed_body_is_asked_again_whole_and_an_overflow_is_compacted_to_the_window() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    fake.mock.push([Reply::text("First answer.")]);
    send(&mut socket, chat("r1", "first question", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string();

    // The engine's window is full: an empty stream, then its error when asked whole; then
    // the summary, then the answer from the summary.
    fake.mock.push([
        empty_body(),
        overflow(2048),
        Reply::text("The user asked a first question."),
        Reply::text("Second answer."),
    ]);
    send(
        &mut socket,
        chat(
            "r2",
            "second question",
            json!({"conversation_id": conversation}),
        ),
    )
    .await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["chunk"]["metadata"]["code"] == "context_compacted"),
        "a compaction notice: {frames:?}"
    );
    assert_eq!(text_of(&frames), "Second answer.");

    let requests = fake.mock.requests();
    assert_eq!(requests.len(), 5, "first, empty, whole, summary, answer");
    assert_eq!(requests[1].body["stream"], true);
    assert_eq!(requests[2].body["stream"], false, "asked again unstreamed");
    assert!(requests[2].body.get("stream_options").is_none());
    // The summary is sized for the 2,048 tokens the engine reported, not the 16k budget.
    let summary = &requests[3].body;
    assert_eq!(summary["max_tokens"], 512, "{summary}");
    app.shutdown().await;
}
