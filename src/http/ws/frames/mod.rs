//! The WebSocket protocol's frames (docs/protocol.md): what a client sends, parsed into a
//! typed [`ClientFrame`] with a clear refusal for every kind of bad input, and the
//! [`ServerFrame`]s the socket writes.

mod inbound;
mod outbound;
mod payloads;

pub use inbound::ClientFrame;
pub use outbound::ServerFrame;
pub use payloads::*;
