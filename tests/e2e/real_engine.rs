//! The server in front of a real model engine (llama-cpp-python with SmolLM2-135M-Instruct,
//! `engine.rs`), as a newcomer runs it: found at start with nothing configured, answering on
//! both doors, counted, compacted when the conversation outgrows a small window, cancelled,
//! cut off by the engine's death, and in text tool-call mode. The assertions are about
//! structure and behaviour, never the model's words.

use std::time::Duration;

use mcp_platform::config::{Config, ProviderConfig, ToolCallMode};
use serde_json::{Value, json};

use crate::support::engine::Engine;
use crate::support::{
    Socket, TestApp, chat, connect, next_frame_within, send, spawn_app_with, stdio_entry, text_of,
    tool_frames, turn_frames_within, wait_ready,
};

/// Answers kept short: a 135M model on one thread, several tests side by side.
const MAX_TOKENS: u32 = 48;

/// The app as a newcomer's: no provider chosen, no OpenAI key; the llama.cpp preset's entry
/// points at the test's engine (its usual port, 8080, is not the test's to take).
async fn app_found_at_start(engine: &Engine, edit: impl FnOnce(&mut Config)) -> TestApp {
    let base_url = engine.base_url();
    spawn_app_with(move |config| {
        config.llm.chosen = false;
        let mut entry = ProviderConfig::preset("llamacpp");
        entry.base_url = base_url;
        entry.max_tokens = Some(MAX_TOKENS);
        config.llm.providers.insert("llamacpp".into(), entry);
        edit(config);
    })
    .await
}

async fn models(socket: &mut Socket) -> Value {
    send(socket, json!({"action": "list_models", "request_id": "m"})).await;
    patient_frame(socket).await["chunk"]["metadata"].clone()
}

/// How long to wait for each frame: a small model on one thread may read a long prompt
/// (text-mode tools) for several seconds before its first token, more on a loaded machine. A
/// liveness bound, not a timing claim.
const PATIENCE: Duration = Duration::from_secs(60);

async fn patient_frame(socket: &mut Socket) -> Value {
    next_frame_within(socket, PATIENCE).await
}

async fn slow_turn(socket: &mut Socket, request_id: &str) -> Vec<Value> {
    turn_frames_within(socket, request_id, PATIENCE).await
}

fn usage_of(frames: &[Value]) -> Value {
    frames.last().expect("frames")["chunk"]["metadata"]["usage"].clone()
}

#[tokio::test]
async fn a_real_engine_found_at_start_answers_on_both_doors_and_is_counted() {
    let engine = Engine::start(2048).await;
    let app = app_found_at_start(&engine, |_| {}).await;
    let mut socket = connect(&app).await;
    let listed = models(&mut socket).await;
    assert_eq!(listed["default_provider"], "llamacpp", "{listed}");
    let found = listed["found_locally"].as_str().expect("found_locally");
    assert!(
        found.contains(&format!("llama.cpp server at 127.0.0.1:{}", engine.port))
            && found.contains("SmolLM2"),
        "{found}"
    );
    let model = format!(
        "llamacpp/{}",
        listed["providers"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == "llamacpp"))
            .and_then(|p| p["default_model"].as_str())
            .expect("the engine's model")
    );

    // Streamed: the engine sends no usage in a stream, so it is counted here.
    send(&mut socket, chat("s1", "Say hello to me.", json!({}))).await;
    let frames = slow_turn(&mut socket, "s1").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let usage = usage_of(&frames);
    assert_eq!(usage["estimated"], true, "{usage}");
    assert!(usage["prompt_tokens"].as_u64() > Some(5), "{usage}");
    assert_eq!(
        usage["completion_tokens"].as_u64() > Some(0),
        !text_of(&frames).is_empty(),
        "{usage}"
    );

    // Whole: the engine's own usage.
    send(
        &mut socket,
        chat("w1", "Name a colour.", json!({"streaming": false})),
    )
    .await;
    let frames = slow_turn(&mut socket, "w1").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let usage = usage_of(&frames);
    assert!(usage.get("estimated").is_none(), "{usage}");
    assert!(usage["prompt_tokens"].as_u64() > Some(5), "{usage}");

    // The OpenAI door, streamed with usage, and whole.
    let body = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": true,
                      "stream_options": {"include_usage": true}, "max_tokens": 16,
                      "messages": [{"role": "user", "content": "Count to three."}]}))
        .send()
        .await
        .expect("POST")
        .text()
        .await
        .expect("body");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let usage = crate::support::streamed_usage(&body);
    assert_eq!(usage["estimated"], true, "{usage}");
    let whole: Value = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": 16,
                      "messages": [{"role": "user", "content": "Count to three."}]}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(
        whole["choices"][0]["message"]["content"].is_string(),
        "{whole}"
    );
    assert!(
        whole["usage"]["prompt_tokens"].as_u64() > Some(5),
        "{whole}"
    );

    let health = app.health().await.1;
    let stats = &health["llm_client_stats"]["llamacpp"];
    assert!(stats["tokens_in"].as_u64() > Some(20), "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_conversation_that_outgrows_a_small_window_keeps_answering() {
    let engine = Engine::start(512).await;
    let app = app_found_at_start(&engine, |_| {}).await;
    let mut socket = connect(&app).await;
    let long = "Here is a note about my garden, with its roses, tulips and daisies. ".repeat(12);
    let mut conversation: Option<String> = None;
    let mut compacted = 0;
    for turn in 0..4 {
        let id = format!("t{turn}");
        let extra = conversation
            .as_ref()
            .map_or(json!({}), |c| json!({"conversation_id": c}));
        send(&mut socket, chat(&id, &long, extra)).await;
        let frames = slow_turn(&mut socket, &id).await;
        let end = frames.last().expect("end");
        assert_eq!(end["status"], "complete", "turn {turn}: {frames:?}");
        compacted += frames
            .iter()
            .filter(|f| f["chunk"]["metadata"]["code"] == "context_compacted")
            .count();
        conversation.get_or_insert_with(|| {
            frames[0]["chunk"]["metadata"]["conversation_id"]
                .as_str()
                .expect("id")
                .to_string()
        });
    }
    // The engine's overflow (an empty stream; its error when asked whole) was understood: the
    // history was summarised to fit the window it named, and later turns stay within it.
    assert!(compacted >= 1, "no turn was compacted");
    let health = app.health().await.1;
    assert!(
        health["llm_client_stats"]["llamacpp"]["errors"].as_u64() <= Some(1),
        "{}",
        health["llm_client_stats"]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_real_answer_stops_it_and_keeps_what_was_said() {
    let engine = Engine::start(2048).await;
    let app = app_found_at_start(&engine, |config| {
        if let Some(entry) = config.llm.providers.get_mut("llamacpp") {
            entry.max_tokens = Some(400);
        }
    })
    .await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat(
            "c1",
            "Write a long story about a dragon and a knight.",
            json!({}),
        ),
    )
    .await;
    let conversation = patient_frame(&mut socket).await["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    while patient_frame(&mut socket).await["status"] != "chunk" {}
    send(&mut socket, json!({"action": "cancel", "request_id": "c1"})).await;
    let frames = slow_turn(&mut socket, "c1").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["code"],
        "cancelled",
        "{frames:?}"
    );
    let history = app.history(&conversation).await;
    let answer = history
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("the partial answer is stored");
    assert_eq!(answer["status"], "cancelled", "{answer}");
    assert!(!answer["content"].as_str().unwrap_or("").is_empty());
    // The engine is free again: the next turn is answered.
    send(&mut socket, chat("c2", "Say yes.", json!({}))).await;
    let frames = slow_turn(&mut socket, "c2").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_engine_killed_mid_answer_ends_the_turn_clearly_and_the_server_goes_on() {
    let mut engine = Engine::start(2048).await;
    let app = app_found_at_start(&engine, |config| {
        if let Some(entry) = config.llm.providers.get_mut("llamacpp") {
            entry.max_tokens = Some(400);
            entry.http_client.max_retries = 0;
        }
    })
    .await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("k1", "Write a long story about a lighthouse.", json!({})),
    )
    .await;
    while patient_frame(&mut socket).await["status"] != "chunk" {}
    engine.kill().await;
    let frames = tokio::time::timeout(Duration::from_secs(30), slow_turn(&mut socket, "k1"))
        .await
        .expect("the turn ends");
    let end = frames.last().expect("end");
    assert_eq!(end["status"], "error", "{frames:?}");
    assert_eq!(end["chunk"]["code"], "provider_error", "{end}");
    // The server goes on: the next turn is refused at once, clearly.
    send(&mut socket, chat("k2", "Hello?", json!({}))).await;
    let frames = tokio::time::timeout(Duration::from_secs(30), slow_turn(&mut socket, "k2"))
        .await
        .expect("the next turn ends");
    let end = frames.last().expect("end");
    assert_eq!(end["status"], "error", "{frames:?}");
    assert_eq!(app.health().await.0, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn in_text_tool_mode_a_real_model_answers_without_our_markup_showing() {
    let engine = Engine::start(2048).await;
    let app = app_found_at_start(&engine, |config| {
        if let Some(entry) = config.llm.providers.get_mut("llamacpp") {
            entry.tool_calls = ToolCallMode::Text;
            entry.max_tokens = Some(96);
        }
        config
            .mcp
            .servers
            .insert("test".into(), stdio_entry(json!({"timeout": "5s"})));
    })
    .await;
    wait_ready(&app, "test").await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat(
            "x1",
            "Use the echo tool to echo the word pineapple, then tell me what it said.",
            json!({}),
        ),
    )
    .await;
    let frames = tokio::time::timeout(Duration::from_secs(120), slow_turn(&mut socket, "x1"))
        .await
        .expect("the turn ends");
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let shown = text_of(&frames);
    for markup in [
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
    ] {
        assert!(!shown.contains(markup), "{markup} in {shown}");
    }
    // Whatever the model managed: every call it started ended, with a result shown.
    let steps = tool_frames(&frames);
    for started in steps
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "running")
    {
        let id = &started["chunk"]["metadata"]["call_id"];
        assert!(
            steps
                .iter()
                .any(|f| f["chunk"]["metadata"]["call_id"] == *id
                    && ["ok", "error", "denied"]
                        .iter()
                        .any(|s| f["chunk"]["metadata"]["status"] == *s)),
            "call {id} never ended: {frames:?}"
        );
    }
    app.shutdown().await;
}
