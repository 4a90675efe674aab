//! Safe to share: what a hostile user with a key tries, one file per class of attack. Each new
//! door (the MCP gateway next) adds its cases here.
//!
//! - [`hosts`]: a foreign `Host` (DNS rebinding) or `Origin`, on every route.
//! - [`quotas`]: every path that calls a model passes the key's quotas.
//! - [`revocation`]: a revoked key's turns, `/v1` answers, compactions and `/mcp` sessions end
//!   at once.
//! - [`secrets`]: credentials in configured URLs never reach a result, a frame, the history or
//!   a model.
//! - [`sessions`]: a socket ends with the session it was opened under; one key cannot crowd
//!   the others out of `/mcp` sessions.
//! - [`throttling`]: guessed credentials are throttled on every door, per client address.

mod hosts;
mod quotas;
mod revocation;
mod secrets;
mod sessions;
mod throttling;
