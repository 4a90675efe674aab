//! mcp-platform: a local-first MCP chat server in one process, one binary, one SQLite file.
//!
//! Data flows one way: a client reaches [`http`], which reads and writes through [`store`].
//! Later parts (LLM providers, the WebSocket chat, the MCP host) slot in between.
//!
//! - [`chat`]: a chat turn: context from the store, the provider's stream out as frames, the
//!   answer stored.
//! - [`app`]: start-up, serving on a bound listener, graceful shutdown, background tasks.
//! - [`config`]: the typed `config.yaml` tree, `${VAR}` interpolation, validation by key path.
//! - [`llm`]: the LLM providers: HTTP clients, enforced limits, retries, circuit breakers,
//!   stream parsing, fallback.
//! - [`mock_provider`]: a scriptable OpenAI-compatible fake, for tests and load tests.
//! - [`http`]: the axum router: `/health` and the conversations REST API, behind an Origin check.
//! - [`store`]: SQLite in WAL mode behind reader and writer pools, a fair write gate,
//!   migrations, and the repositories (conversations and messages).
//! - [`stats`]: lock-free histograms and gauges the components keep for `/health`.
//! - [`telemetry`]: logging as text or JSON.
//! - [`wire`]: the error codes clients see, and where internals are masked.
pub mod app;
pub mod auth;
pub mod chat;
pub mod config;
pub mod http;
pub mod llm;
pub mod loadtest;
pub mod mcp;
pub mod memory;
pub mod mock_provider;
pub mod process;
pub mod scrub;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod wire;
