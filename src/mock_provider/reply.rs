//! What the fake answers, and how each answer is rendered as OpenAI-compatible bytes.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed text answer, one chunk per piece, then usage and `[DONE]`.
    Text {
        pieces: Vec<String>,
        first_byte_delay: Duration,
        chunk_delay: Duration,
    },
    /// Tool calls whose arguments arrive in `pieces` parts each, interleaved across calls.
    ToolCalls { calls: Vec<MockCall>, pieces: usize },
    /// An HTTP error with a body and an optional `Retry-After`.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// A 200 event stream whose data is not JSON.
    Garbage,
    /// Some text chunks, then an `{"error": …}` event.
    ErrorMidStream { pieces_before: usize },
    /// Some text chunks, then the connection is cut without `[DONE]`.
    DropAfter { pieces_before: usize },
    /// Exact bytes, one network write each (SSE framing split anywhere, UTF-8 split mid-character).
    RawChunks(Vec<Vec<u8>>),
}

#[derive(Debug, Clone)]
pub struct MockCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl Reply {
    /// A streamed answer of `n` chunks (`"w0 "`, `"w1 "`, …).
    pub fn words(n: usize) -> Self {
        Self::Text {
            pieces: (0..n).map(|i| format!("w{i} ")).collect(),
            first_byte_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }

    pub fn text(text: &str) -> Self {
        Self::Text {
            pieces: vec![text.to_string()],
            first_byte_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
            body: json!({"error": {"message": format!("mock status {status}")}}).to_string(),
        }
    }
}

pub fn sse(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

pub fn text_chunk(text: &str) -> Bytes {
    sse(&json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}).to_string())
}

pub fn finish_chunk(reason: &str) -> Bytes {
    sse(&json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string())
}

pub fn usage_chunk(prompt: usize, completion: usize) -> Bytes {
    sse(&json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}).to_string())
}

pub fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Tool-call deltas: first each call's id and name, then the arguments split in `pieces`
/// parts, interleaved call by call.
pub fn tool_call_chunks(calls: &[MockCall], pieces: usize) -> Vec<Bytes> {
    let delta = |call: Value| {
        sse(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]}).to_string())
    };
    let mut chunks: Vec<Bytes> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| delta(json!({"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}})))
        .collect();
    let split: Vec<Vec<String>> = calls
        .iter()
        .map(|c| split_in(&c.arguments, pieces.max(1)))
        .collect();
    for part in 0..pieces.max(1) {
        for (i, parts) in split.iter().enumerate() {
            if let Some(piece) = parts.get(part) {
                chunks.push(delta(json!({"index": i, "function": {"arguments": piece}})));
            }
        }
    }
    chunks.push(finish_chunk("tool_calls"));
    chunks
}

/// `text` in `n` nearly equal parts, cut on character boundaries.
fn split_in(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The non-streaming form of a text or tool-call answer.
pub fn completion(content: Option<&str>, calls: &[MockCall], prompt_tokens: usize) -> Value {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect();
    let completion_tokens = content.map_or(0, |c| c.split_whitespace().count());
    json!({
        "object": "chat.completion",
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": content,
                                 "tool_calls": if tool_calls.is_empty() { Value::Null } else { Value::Array(tool_calls) }},
                     "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    })
}
