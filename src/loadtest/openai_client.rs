//! One simulated client of `/v1/chat/completions` (`loadtest --api openai`): streamed
//! exchanges on one kept-alive connection, each sending the conversation so far as an OpenAI
//! client does, timing the first content and the end, counting errors by their code.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{Outcome, Progress, Shape};

/// An exchange that takes longer than this counts as a `timeout` error.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and as whom to ask.
pub struct Target {
    /// `http://host:port/v1/chat/completions`.
    pub url: String,
    pub key: Option<String>,
    pub model: String,
    /// Send `X-Conversation-Id` (`new`, then the id the server returned): the exchanges are
    /// stored as a chat turn's would be.
    pub store: bool,
}

pub async fn run(
    target: Target,
    shape: Shape,
    stop: CancellationToken,
    progress: &Progress,
) -> Outcome {
    let mut outcome = Outcome::default();
    tokio::select! {
        () = tokio::time::sleep(shape.delay) => {}
        () = stop.cancelled() => return outcome,
    }
    let Ok(http) = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
    else {
        outcome.error("connect", progress);
        return outcome;
    };
    progress.connected.fetch_add(1, Ordering::Relaxed);
    let mut history: Vec<Value> = Vec::new();
    let mut conversation: Option<String> = None;
    let mut ticks = shape.pace.map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut turn = 0;
    while shape.turns.is_none_or(|n| turn < n) && !stop.is_cancelled() {
        if turn % shape.conversation_turns == 0 {
            history.clear();
            conversation = None;
        }
        if let Some(ticks) = ticks.as_mut() {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
        }
        history.push(json!({"role": "user", "content": shape.message(turn)}));
        let started = Instant::now();
        let exchange = exchange(&http, &target, &history, conversation.as_deref(), started);
        match tokio::time::timeout(TURN_TIMEOUT, exchange).await {
            Ok(Ok((text, ttft, stored_in))) => {
                conversation = conversation.or(stored_in);
                history.push(json!({"role": "assistant", "content": text}));
                if let Some(ttft) = ttft {
                    outcome.ttft.push(ttft);
                }
                outcome.turn_done(started);
                progress.turns.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(code)) => {
                history.pop();
                outcome.error(&code, progress);
            }
            Err(_) => {
                outcome.error("timeout", progress);
                break;
            }
        }
        turn += 1;
    }
    progress.connected.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// One streamed exchange: the answer's text, the time to its first content and the
/// conversation it was stored in, or the error's code (`http_NNN` when the body names none).
async fn exchange(
    http: &reqwest::Client,
    target: &Target,
    history: &[Value],
    conversation: Option<&str>,
    started: Instant,
) -> Result<(String, Option<Duration>, Option<String>), String> {
    let mut request = http.post(&target.url).json(&json!({
        "model": target.model, "stream": true, "messages": history,
    }));
    if let Some(key) = &target.key {
        request = request.bearer_auth(key);
    }
    if target.store {
        request = request.header("x-conversation-id", conversation.unwrap_or("new"));
    }
    let response = request.send().await.map_err(|_| "connect".to_string())?;
    let status = response.status();
    let stored_in = response
        .headers()
        .get("x-conversation-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        return Err(code_of(&body).unwrap_or_else(|| format!("http_{}", status.as_u16())));
    }
    let mut body = response.bytes_stream();
    let (mut buffer, mut text, mut ttft) = (Vec::new(), String::new(), None);
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.map_err(|_| "closed".to_string())?);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            let Some(data) = std::str::from_utf8(&event)
                .ok()
                .and_then(|e| e.trim().strip_prefix("data: "))
            else {
                continue;
            };
            if data == "[DONE]" {
                return Ok((text, ttft, stored_in));
            }
            let Ok(value) = serde_json::from_str::<Value>(data) else {
                return Err("bad_frame".into());
            };
            if let Some(code) = code_of(&value) {
                return Err(code);
            }
            if let Some(piece) = value["choices"][0]["delta"]["content"].as_str()
                && !piece.is_empty()
            {
                ttft.get_or_insert_with(|| started.elapsed());
                text.push_str(piece);
            }
        }
    }
    Err("closed".into())
}

fn code_of(body: &Value) -> Option<String> {
    body["error"]["code"].as_str().map(String::from)
}
