//! What a provider sends is read within bounds: an error body is read up to [`MAX_ERROR_BODY`]
//! (the rest is not read), a whole response up to a cap even without `Content-Length`, and one
//! SSE event up to [`MAX_EVENT_BYTES`] (a stream that never ends an event cannot grow memory;
//! `super::sse` keeps that bound).

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Bytes of an error body kept for the message (and the log).
pub const MAX_ERROR_BODY: usize = 64 << 10;
/// Bytes of one server-sent event at most.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Why a body or stream was cut.
#[derive(Debug, thiserror::Error)]
pub enum ReadFault {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("an event of the stream is larger than {MAX_EVENT_BYTES} bytes")]
    EventTooLarge,
    #[error("the stream's data is not UTF-8")]
    NotUtf8,
}

impl ReadFault {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport(e) if e.is_timeout())
    }
}

/// The body, at most `max` bytes: `Err(TooLarge)` past it, whatever `Content-Length` says.
pub async fn read_capped(response: reqwest::Response, max: usize) -> Result<Bytes, ReadFault> {
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > max {
            return Err(ReadFault::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first `max` bytes of the body as text (an error body: the rest is not read).
pub async fn error_text(response: reqwest::Response, max: usize) -> String {
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
