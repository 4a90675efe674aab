//! The WebSocket protocol's frames (docs/protocol.md): what a client sends, parsed into a
//! typed [`ClientFrame`] with a clear refusal for every kind of bad input, and the
//! [`ServerFrame`]s the socket writes.

mod client;
mod payloads;
mod server;

pub use client::ClientFrame;
pub use payloads::*;
pub use server::ServerFrame;
