//! One simulated client: a WebSocket that chats turn after turn in one conversation, speaking
//! only the documented protocol, timing each turn (first chunk, complete) and counting errors
//! by their code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A turn that takes longer than this counts as a `timeout` error.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Live counters the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    pub connected: AtomicU64,
    pub turns: AtomicU64,
    pub errors: AtomicU64,
}

/// What one client measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ttft: Vec<Duration>,
    pub latency: Vec<Duration>,
    /// When each turn of `latency` ended.
    pub ended: Vec<Instant>,
    pub completed: u64,
    pub errors: BTreeMap<String, u64>,
    /// When each error happened.
    pub failed_at: Vec<Instant>,
    /// Tool calls seen ending.
    pub tool_calls: u64,
}

impl Outcome {
    /// A turn that began at `started` has just completed.
    pub(super) fn turn_done(&mut self, started: Instant) {
        let now = Instant::now();
        self.latency.push(now - started);
        self.ended.push(now);
        self.completed += 1;
    }

    pub(super) fn error(&mut self, code: &str, progress: &Progress) {
        self.failed_at.push(Instant::now());
        *self.errors.entry(code.to_string()).or_default() += 1;
        progress.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens a socket (with `Authorization: Bearer key` when given); a refusal is named by its
/// HTTP status (`http_503`, `http_401`) or `connect`.
pub async fn connect(url: &str, key: Option<&str>) -> Result<Socket, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url
        .into_client_request()
        .map_err(|_| "connect".to_string())?;
    if let Some(key) = key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| "invalid_key".to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(format!("http_{}", response.status().as_u16()))
        }
        Err(_) => Err("connect".into()),
    }
}

/// What one simulated client does.
pub struct Shape {
    /// Turns in all; `None`: until stopped.
    pub turns: Option<usize>,
    /// Start a turn every `pace` (a turn that takes longer delays the next, never two at once).
    pub pace: Option<Duration>,
    /// A new conversation after this many turns.
    pub conversation_turns: usize,
    /// Wait this long before connecting (the ramp-up).
    pub delay: Duration,
    /// `NAME {json}`: each turn asks the mock provider to call this tool (`/tool NAME {json}`).
    pub tool_call: Option<std::sync::Arc<str>>,
}

impl Shape {
    /// The user message of turn `turn`.
    pub fn message(&self, turn: usize) -> String {
        match &self.tool_call {
            Some(call) => format!("/tool {call}"),
            None => format!("load test turn {turn}"),
        }
    }
}

/// Chats as `shape` says until its turns are done or `stop`.
pub async fn run(
    url: String,
    key: Option<String>,
    shape: Shape,
    stop: CancellationToken,
    progress: &Progress,
) -> Outcome {
    let mut outcome = Outcome::default();
    tokio::select! {
        () = tokio::time::sleep(shape.delay) => {}
        () = stop.cancelled() => return outcome,
    }
    let mut socket = match connect(&url, key.as_deref()).await {
        Ok(socket) => socket,
        Err(code) => {
            outcome.error(&code, progress);
            return outcome;
        }
    };
    progress.connected.fetch_add(1, Ordering::Relaxed);
    let mut conversation: Option<String> = None;
    let mut turn = 0;
    let mut ticks = shape.pace.map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    while shape.turns.is_none_or(|n| turn < n) && !stop.is_cancelled() {
        if turn % shape.conversation_turns == 0 {
            conversation = None;
        }
        if let Some(ticks) = ticks.as_mut() {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
        }
        let request_id = format!("t{turn}");
        let mut payload = json!({"text": shape.message(turn)});
        if let Some(id) = &conversation {
            payload["conversation_id"] = json!(id);
        }
        let frame = json!({"action": "chat", "request_id": request_id, "payload": payload});
        let started = Instant::now();
        if socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            outcome.error("closed", progress);
            break;
        }
        match tokio::time::timeout(TURN_TIMEOUT, read_turn(&mut socket, &request_id, started)).await
        {
            Ok(Ok(done)) => {
                conversation = conversation.or(done.conversation);
                outcome.tool_calls += done.tool_calls;
                if let Some(ttft) = done.ttft {
                    outcome.ttft.push(ttft);
                }
                outcome.turn_done(started);
                progress.turns.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(TurnFailure::Code(code))) => outcome.error(&code, progress),
            Ok(Err(TurnFailure::Closed)) => {
                outcome.error("closed", progress);
                break;
            }
            Err(_) => {
                outcome.error("timeout", progress);
                break;
            }
        }
        turn += 1;
    }
    let _ = socket.close(None).await;
    progress.connected.fetch_sub(1, Ordering::Relaxed);
    outcome
}

struct TurnDone {
    conversation: Option<String>,
    ttft: Option<Duration>,
    /// Tool calls that ended (ok or not) in the turn.
    tool_calls: u64,
}

enum TurnFailure {
    Code(String),
    Closed,
}

/// Reads frames until `request_id`'s `complete` or `error`.
async fn read_turn(
    socket: &mut Socket,
    request_id: &str,
    started: Instant,
) -> Result<TurnDone, TurnFailure> {
    let mut done = TurnDone {
        conversation: None,
        ttft: None,
        tool_calls: 0,
    };
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(TurnFailure::Closed),
            Some(Ok(_)) => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            return Err(TurnFailure::Code("bad_frame".into()));
        };
        if frame["request_id"] != request_id {
            continue;
        }
        match frame["status"].as_str() {
            Some("processing") => {
                let metadata = &frame["chunk"]["metadata"];
                if let Some(id) = metadata["conversation_id"].as_str() {
                    done.conversation = Some(id.to_string());
                }
                if frame["chunk"]["type"] == "tool_execution" && metadata["status"] != "running" {
                    done.tool_calls += 1;
                }
            }
            Some("chunk") => {
                done.ttft.get_or_insert_with(|| started.elapsed());
            }
            Some("complete") => return Ok(done),
            Some("error") => {
                let code = frame["chunk"]["code"].as_str().unwrap_or("error");
                return Err(TurnFailure::Code(code.to_string()));
            }
            _ => {}
        }
    }
}
