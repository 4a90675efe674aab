//! An OpenAI-compatible fake provider, scripted per request: streamed text, tool calls split
//! across chunks, HTTP errors with `Retry-After`, garbage, an error mid-stream, a dropped
//! connection, exact byte chunks. The tests use it; it records every request it receives and the
//! peak number of requests it had in flight at once.
//!
//! When its script is empty it answers with its default reply (a streamed text), or, when the
//! last message is a user message `/tool NAME {json}` and the request offers tool `NAME`, with
//! that tool call. `mcp-platform mock-provider` serves it for load tests: no recording, and an
//! optional rate of random 500s.

mod reply;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{ListenerExt, TapIo};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

pub use reply::{MockCall, Reply};

use crate::stats::Gauge;

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `chat/completions` or `embeddings`.
    pub endpoint: &'static str,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: tokio::time::Instant,
}

/// The fake's shared state; clone it to script and inspect while it serves.
#[derive(Clone)]
pub struct MockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    /// Requests are kept for inspection unless serving for load (`serving`).
    record: bool,
    /// The share of requests answered with a 500.
    fail_rate: f64,
    requests: Mutex<Vec<Recorded>>,
    in_flight: Gauge,
}

impl MockProvider {
    pub fn new(default: Reply) -> Self {
        Self {
            inner: Arc::new(Inner {
                script: Mutex::new(VecDeque::new()),
                default,
                record: true,
                fail_rate: 0.0,
                requests: Mutex::new(Vec::new()),
                in_flight: Gauge::default(),
            }),
        }
    }

    /// For `mcp-platform mock-provider`: the default reply for every request, `fail_rate` of
    /// them answered with a 500, nothing recorded (memory stays flat under load).
    pub fn serving(default: Reply, fail_rate: f64) -> Self {
        Self {
            inner: Arc::new(Inner {
                script: Mutex::new(VecDeque::new()),
                default,
                record: false,
                fail_rate: fail_rate.clamp(0.0, 1.0),
                requests: Mutex::new(Vec::new()),
                in_flight: Gauge::default(),
            }),
        }
    }

    fn record(&self, recorded: Recorded) {
        if self.inner.record {
            self.inner
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(recorded);
        }
    }

    /// A random failure, at `fail_rate`.
    fn fails(&self) -> bool {
        self.inner.fail_rate > 0.0 && fastrand::f64() < self.inner.fail_rate
    }

    /// Queues replies for the next requests, in order.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The most requests it was answering at once.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.in_flight.peak()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", axum::routing::get(models))
            .with_state(self.clone())
    }

    /// Serves on `listener` until the returned task is aborted.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(without_nagle(listener), router).await;
        })
    }

    fn next_reply(&self, body: &Value) -> Reply {
        let scripted = self
            .inner
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        if let Some(reply) = scripted {
            return reply;
        }
        if self.fails() {
            return Reply::status(500);
        }
        requested_tool_call(body).unwrap_or_else(|| self.inner.default.clone())
    }
}

/// Counts a request in flight until the response body is finished or dropped.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> Self {
        inner.in_flight.add(1);
        Self(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.add(-1);
    }
}

async fn chat(
    State(mock): State<MockProvider>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let guard = InFlight::enter(&mock.inner);
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let prompt_tokens = body["messages"].as_array().map_or(0, Vec::len) * 10;
    let reply = mock.next_reply(&body);
    mock.record(Recorded {
        endpoint: "chat/completions",
        headers,
        body,
        at: tokio::time::Instant::now(),
    });
    if let Reply::Status {
        status,
        retry_after,
        body,
    } = &reply
    {
        let mut response = (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body.clone(),
        )
            .into_response();
        if let Some(value) = retry_after.as_deref().and_then(|v| v.parse().ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if !streaming {
        return whole(&reply, prompt_tokens, guard).await;
    }
    stream(reply, prompt_tokens, guard)
}

/// `/tool NAME {json}` as the last (user) message, when the request offers tool `NAME`.
fn requested_tool_call(body: &Value) -> Option<Reply> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] != "user" {
        return None;
    }
    let command = last["content"].as_str()?.strip_prefix("/tool ")?;
    let (name, arguments) = command.split_once(' ').unwrap_or((command, "{}"));
    let offered = body["tools"]
        .as_array()?
        .iter()
        .any(|t| t["function"]["name"] == name);
    offered.then(|| Reply::ToolCalls {
        calls: vec![MockCall {
            id: "call_1".into(),
            name: name.to_string(),
            arguments: arguments.trim().to_string(),
        }],
        pieces: 2,
    })
}

/// The fake's embedding of `text`: 8 dimensions derived from an FNV-1a hash, so equal texts
/// get equal vectors and tests can compute the expected answer.
pub fn vector_for(text: &str) -> Vec<f32> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..8)
        .map(|i| f32::from(u8::try_from((hash >> (i * 8)) & 0xff).unwrap_or(0)) / 255.0)
        .collect()
}

/// `/v1/embeddings`: scripted errors apply; otherwise one vector per input, in order.
async fn embeddings(
    State(mock): State<MockProvider>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let _guard = InFlight::enter(&mock.inner);
    let inputs: Vec<String> = match &body["input"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let record = Recorded {
        endpoint: "embeddings",
        headers,
        body,
        at: tokio::time::Instant::now(),
    };
    mock.record(record);
    if mock.fails() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\": {\"message\": \"mock failure\"}}",
        )
            .into_response();
    }
    let scripted = mock
        .inner
        .script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front();
    if let Some(Reply::Status { status, body, .. }) = scripted {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| serde_json::json!({"object": "embedding", "index": index, "embedding": vector_for(text)}))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data, "model": "mock-embedding"}))
        .into_response()
}

/// A non-streaming answer.
async fn whole(reply: &Reply, prompt_tokens: usize, _guard: InFlight) -> Response {
    match reply {
        Reply::Text {
            pieces,
            first_byte_delay,
            ..
        } => {
            tokio::time::sleep(*first_byte_delay).await;
            Json(reply::completion(
                Some(&pieces.concat()),
                &[],
                prompt_tokens,
            ))
            .into_response()
        }
        Reply::ToolCalls { calls, .. } => {
            Json(reply::completion(None, calls, prompt_tokens)).into_response()
        }
        _ => (StatusCode::OK, "this is not JSON").into_response(),
    }
}

/// `GET /v1/models`: the one model it plays, as an engine lists what it has loaded.
async fn models() -> Json<Value> {
    Json(serde_json::json!({"object": "list", "data": [
        {"id": MOCK_MODEL, "object": "model", "owned_by": "mock-provider"}
    ]}))
}

/// The model the fake says it serves.
pub const MOCK_MODEL: &str = "mock-model";

type Piece = (Duration, Result<Bytes, std::io::Error>);

fn stream(reply: Reply, prompt_tokens: usize, guard: InFlight) -> Response {
    let now = Duration::ZERO;
    let ok = |bytes: Bytes| (now, Ok(bytes));
    let pieces: Vec<Piece> = match reply {
        Reply::Text {
            pieces,
            first_byte_delay,
            chunk_delay,
        } => {
            let count = pieces.len();
            let mut out: Vec<Piece> = pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        if i == 0 {
                            first_byte_delay
                        } else {
                            chunk_delay
                        },
                        Ok(reply::text_chunk(p)),
                    )
                })
                .collect();
            out.extend(
                [
                    reply::finish_chunk("stop"),
                    reply::usage_chunk(prompt_tokens, count),
                    reply::done(),
                ]
                .map(ok),
            );
            out
        }
        Reply::ToolCalls { calls, pieces } => {
            let mut out: Vec<Piece> = reply::tool_call_chunks(&calls, pieces)
                .into_iter()
                .map(ok)
                .collect();
            out.extend([reply::usage_chunk(prompt_tokens, 5), reply::done()].map(ok));
            out
        }
        Reply::Garbage => vec![ok(reply::sse("<html>502 Bad Gateway</html>"))],
        Reply::ErrorMidStream { pieces_before } => {
            let mut out: Vec<Piece> = (0..pieces_before)
                .map(|i| ok(reply::text_chunk(&format!("w{i} "))))
                .collect();
            out.push(ok(reply::sse(
                r#"{"error": {"message": "mock: the model crashed", "type": "server_error"}}"#,
            )));
            out
        }
        Reply::DropAfter { pieces_before } => {
            let mut out: Vec<Piece> = (0..pieces_before)
                .map(|i| ok(reply::text_chunk(&format!("w{i} "))))
                .collect();
            out.push((
                Duration::from_millis(5),
                Err(std::io::Error::other("mock: connection dropped")),
            ));
            out
        }
        Reply::RawChunks(chunks) => chunks
            .into_iter()
            .map(|c| (Duration::from_millis(2), Ok(Bytes::from(c))))
            .collect(),
        Reply::Status { .. } => Vec::new(),
    };
    let body = futures::stream::iter(pieces).then(move |(delay, piece)| {
        let _keep = &guard;
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            piece
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A listener whose accepted sockets have `TCP_NODELAY` set. A streamed answer is many small
/// writes; with Nagle's algorithm each one after the first waits for the peer's ACK, which
/// Linux delays by up to 40 ms, so every turn would pay 40 ms for nothing.
pub fn without_nagle(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(set_nodelay as fn(&mut TcpStream))
}

fn set_nodelay(stream: &mut TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted socket");
    }
}
