//! `GET /ws/chat`: the chat WebSocket (docs/protocol.md).
//!
//! Each socket has a reader (this task), a writer task fed by a bounded queue of frames
//! (`send_queue`), and one task per turn in flight. A client that leaves cancels its turns;
//! they still store what was answered. Connections are capped by a semaphore taken before the
//! upgrade: past `max_connections` the upgrade is refused with 503 and `Retry-After`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ApiError, AppState};
use crate::chat::{ClientFrame, ServerFrame, TurnSnapshot};
use crate::stats::Gauge;

/// The connection cap and the socket figures.
pub struct Sockets {
    slots: Arc<Semaphore>,
    max: usize,
    active: Gauge,
    accepted: AtomicU64,
    rejected_full: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    refused_frames: AtomicU64,
}

/// `/health` `websocket_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct SocketSnapshot {
    pub active: usize,
    pub peak: usize,
    pub max_connections: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Inbound frames answered with an error frame (bad JSON, unknown action, too large...).
    pub refused_frames: u64,
    pub turns: TurnSnapshot,
}

impl Sockets {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            active: Gauge::default(),
            accepted: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            refused_frames: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self, turns: TurnSnapshot) -> SocketSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SocketSnapshot {
            active: self.active.current(),
            peak: self.active.peak(),
            max_connections: self.max,
            accepted: load(&self.accepted),
            rejected: load(&self.rejected_full),
            messages_in: load(&self.frames_in),
            messages_out: load(&self.frames_out),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            refused_frames: load(&self.refused_frames),
            turns,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/ws/chat", get(upgrade))
}

async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = state.sockets.slots.clone().try_acquire_owned() else {
        state.sockets.rejected_full.fetch_add(1, Ordering::Relaxed);
        let mut refusal = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!(
                "the server holds its maximum of {} connections; retry shortly",
                state.sockets.max
            ),
        );
        refusal.retry_after_s = Some(1);
        return refusal.into_response();
    };
    let limit = state.config.chat.websocket.max_message_size;
    // Frames up to 4x the limit are read and refused with `too_large` (the socket lives on);
    // larger ones close the socket (1009) without being buffered.
    let hard_limit = (limit * 4).max(1 << 20);
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| session(socket, state, permit))
}

type Turns = Arc<Mutex<HashMap<String, CancellationToken>>>;

async fn session(socket: WebSocket, state: AppState, _slot: OwnedSemaphorePermit) {
    let sockets = state.sockets.clone();
    let _active = sockets.active.enter();
    sockets.accepted.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut inbound) = socket.split();
    let (out, mut outbox) = mpsc::channel::<ServerFrame>(state.config.chat.websocket.send_queue);
    let writer_stats = sockets.clone();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            let text = frame.to_json();
            writer_stats.frames_out.fetch_add(1, Ordering::Relaxed);
            writer_stats
                .bytes_out
                .fetch_add(text.len() as u64, Ordering::Relaxed);
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let session = Session {
        state,
        out,
        turns: Turns::default(),
        tasks: TaskTracker::new(),
    };
    while let Some(message) = inbound.next().await {
        match message {
            Ok(Message::Text(text)) => session.on_text(text.as_str()).await,
            Ok(Message::Binary(_)) => {
                session
                    .refuse(ServerFrame::error(
                        None,
                        "invalid_request",
                        "binary frames are not supported; send JSON text",
                        false,
                    ))
                    .await;
            }
            Ok(Message::Close(_)) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(error) => {
                tracing::debug!(%error, "socket read failed");
                break;
            }
        }
    }
    session.end().await;
    let _ = writer.await;
}

struct Session {
    state: AppState,
    out: mpsc::Sender<ServerFrame>,
    turns: Turns,
    tasks: TaskTracker,
}

impl Session {
    async fn on_text(&self, text: &str) {
        let sockets = &self.state.sockets;
        sockets.frames_in.fetch_add(1, Ordering::Relaxed);
        sockets
            .bytes_in
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        let limit = self.state.config.chat.websocket.max_message_size;
        if text.len() > limit {
            let message = format!("the frame has {} bytes; the limit is {limit}", text.len());
            return self
                .refuse(ServerFrame::error(None, "too_large", message, false))
                .await;
        }
        match ClientFrame::parse(text) {
            Err(error) => self.refuse(ServerFrame::refused(error)).await,
            Ok(ClientFrame::Ping { request_id }) => self.send(ServerFrame::pong(request_id)).await,
            Ok(ClientFrame::Conversations { request_id, action }) => {
                let frame = self
                    .state
                    .chat
                    .conversation_action(&request_id, action)
                    .await;
                self.send(frame).await;
            }
            Ok(ClientFrame::Cancel { request_id }) => {
                let token = self
                    .turns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&request_id)
                    .cloned();
                if let Some(token) = token {
                    token.cancel();
                } else {
                    let message = format!("no turn `{request_id}` is in flight on this connection");
                    self.refuse(ServerFrame::error(
                        Some(request_id),
                        "not_found",
                        message,
                        false,
                    ))
                    .await;
                }
            }
            Ok(ClientFrame::Chat {
                request_id,
                payload,
            }) => {
                let Some(token) = self.admit(&request_id) else {
                    let max = self.state.config.chat.websocket.max_turns_per_connection;
                    let message = format!(
                        "turn `{request_id}` is already in flight, or {max} turns are (the limit per connection)"
                    );
                    return self
                        .refuse(ServerFrame::error(Some(request_id), "busy", message, true))
                        .await;
                };
                let (chat, out, turns) = (
                    self.state.chat.clone(),
                    self.out.clone(),
                    self.turns.clone(),
                );
                self.tasks.spawn(async move {
                    chat.run_turn(&request_id, payload, &out, &token).await;
                    turns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&request_id);
                });
            }
        }
    }

    /// Registers a turn unless its id is in flight or the socket is at its turn limit.
    fn admit(&self, request_id: &str) -> Option<CancellationToken> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.state.config.chat.websocket.max_turns_per_connection;
        if turns.contains_key(request_id) || turns.len() >= max {
            return None;
        }
        let token = CancellationToken::new();
        turns.insert(request_id.to_string(), token.clone());
        Some(token)
    }

    async fn send(&self, frame: ServerFrame) {
        let _ = self.out.send(frame).await;
    }

    async fn refuse(&self, frame: ServerFrame) {
        self.state
            .sockets
            .refused_frames
            .fetch_add(1, Ordering::Relaxed);
        self.send(frame).await;
    }

    /// The client left: cancel its turns and wait for them to store what they have.
    async fn end(self) {
        for token in self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            token.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}
