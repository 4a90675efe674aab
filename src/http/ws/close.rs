//! Why a socket closes, and the close frame that says so. The first reason given wins.

use std::sync::OnceLock;

use axum::extract::ws::{CloseFrame, close_code};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, left, or broke the protocol.
    Client,
    /// A frame over the hard size limit, which is not read: 1009.
    TooLarge,
    /// The send queue stayed full for `slow_reader_timeout`: 1008.
    SlowReader,
    /// No pong within `ping_timeout` of a ping: 1011, as other WebSocket servers do.
    PingTimeout,
    /// The server is stopping: 1001 once the socket's turns have ended.
    Shutdown,
    /// The socket's API key was revoked, its browser session was logged out or expired, or it
    /// was opened without a key and keys are now required: 4401 at once, its turns cancelled.
    Revoked,
}

impl CloseReason {
    pub fn frame(self) -> CloseFrame {
        let (code, reason) = match self {
            Self::Client => (close_code::NORMAL, "bye"),
            Self::TooLarge => (
                close_code::SIZE,
                "a frame over the size limit; see chat.websocket.max_message_size",
            ),
            Self::SlowReader => (
                close_code::POLICY,
                "the client read too slowly; its turns were cancelled",
            ),
            Self::PingTimeout => (close_code::ERROR, "keepalive ping timeout"),
            Self::Shutdown => (close_code::AWAY, "the server is shutting down"),
            Self::Revoked => (
                4401,
                "the credentials of this connection are no longer valid (key revoked, session ended, or keys now required)",
            ),
        };
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}

/// Shared by a socket's reader and writer: records the reason, and `abort` stops both at once
/// (without writing what is still queued).
#[derive(Default)]
pub struct Closer {
    reason: OnceLock<CloseReason>,
    abort: CancellationToken,
}

impl Closer {
    pub fn set(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
    }

    pub fn abort(&self, reason: CloseReason) {
        self.set(reason);
        self.abort.cancel();
    }

    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    pub fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::Client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_maps_to_its_close_code() {
        let closer = Closer::default();
        assert_eq!(closer.reason(), CloseReason::Client);
        closer.abort(CloseReason::SlowReader);
        closer.set(CloseReason::Shutdown);
        assert_eq!(closer.reason(), CloseReason::SlowReader);
        assert_eq!(closer.reason().frame().code, 1008);
        assert_eq!(CloseReason::Shutdown.frame().code, 1001);
        assert_eq!(CloseReason::PingTimeout.frame().code, 1011);
    }
}
