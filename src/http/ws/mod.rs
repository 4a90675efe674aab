//! `GET /ws/chat`: the chat WebSocket (docs/protocol.md).
//!
//! Connections are capped by a semaphore taken before the upgrade: past `max_connections` (or
//! once shutdown has begun) the upgrade is refused with 503 and `Retry-After`. Each socket is
//! a [`session`]: a reader, a [`writer`] fed by a bounded queue, and its turns.

mod actions;
mod close;
mod fit;
mod frames;
mod live;
mod outbox;
mod render;
mod session;
mod sockets;
mod writer;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use sockets::{Rejection, SocketSnapshot, Sockets};

use super::{ApiError, AppState, ConnectionSlot};
use crate::auth::Caller;
use crate::wire::ErrorCode;
use fit::MAX_FRAME_BYTES;

/// Bytes of frames gathered before a send when more are waiting; the writer flushes each
/// batch, so nothing stays here.
const WRITE_BATCH_BYTES: usize = 32 << 10;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws/chat", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    slot: Option<Extension<ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    let permit = match state.sockets.admit() {
        Ok(permit) => permit,
        Err(why) => {
            state.sockets.rejected(why);
            let message = match why {
                Rejection::ShuttingDown => "the server is shutting down".to_string(),
                _ => format!(
                    "the server holds its maximum of {} connections; retry shortly",
                    state.sockets.max()
                ),
            };
            let mut refusal = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                match why {
                    Rejection::ShuttingDown => ErrorCode::ShuttingDown,
                    _ => ErrorCode::TooManyConnections,
                },
                message,
            );
            refusal.retry_after_s = Some(1);
            return refusal.into_response();
        }
    };
    // The default model's tokenizer tables are built when the first socket comes, not at
    // start: a server nobody chats with does not hold them.
    if let Ok(model) = state.providers.default_model(None) {
        crate::tokens::Encoding::for_model(model).preload();
    }
    let limit = state.config.chat.websocket.max_message_size;
    // Frames up to 4x the limit are read and refused with `too_large` (the socket lives on);
    // larger ones close the socket (1009) without being buffered.
    let hard_limit = (limit * 4).max(1 << 20);
    let sessions = state.sockets.sessions().clone();
    // Every socket holds its read buffer while idle: 1 KiB (not tungstenite's 4 KiB here
    // before) keeps 10,000 idle sockets 30 MB smaller. Chat frames are mostly smaller; a
    // larger one is read a KiB at a time (a 1 MiB paste: a millisecond of reads).
    ws.read_buffer_size(1024)
        // The writer feeds every frame waiting in the outbox, then flushes: frames gather in
        // this buffer and leave in one send (one system call per batch, not per frame).
        .write_buffer_size(WRITE_BATCH_BYTES)
        // A batch and one frame beyond what the socket took are buffered at most, and frames
        // are fitted to MAX_FRAME_BYTES: a large frame never overflows the buffer.
        .max_write_buffer_size(WRITE_BATCH_BYTES + 2 * MAX_FRAME_BYTES)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| {
            // A WebSocket counts under chat.websocket.max_connections, not the HTTP cap.
            if let Some(Extension(slot)) = slot {
                slot.release();
            }
            sessions.track_future(session::run(socket, state, caller, permit))
        })
}
