//! mcp-platform: a local-first MCP chat server in one process, one binary, one SQLite file.
//!
//! Requests flow one way, from the doors down to the store:
//!
//! ```text
//! http (doors: /ws/chat, /v1, /api, /mcp, /health)  ─┐
//!   └─ chat (the turn engine: typed events out)       │ auth (keys, sessions, quotas)
//!        ├─ llm (providers)    ├─ mcp (MCP host)       │ wire (error codes)
//!        └─ memory (sqlite-vec, embedders) ─ store (SQLite)
//! ```
//!
//! - [`app`]: the one place the parts are built, serving on a bound listener, the shutdown
//!   tree (sockets drain, HTTP requests finish, then everything else), background tasks.
//! - [`http`]: the doors: the accept loop with its limits, the Host and Origin checks,
//!   credentials, `/ws/chat` (frames rendered from turn events), `/v1` (the OpenAI-compatible
//!   API), `/api` (REST), `/mcp` (the memory as an MCP server), `/health`, `/metrics`.
//! - [`chat`]: the turn engine: a chat turn (context from the store, the answer stored) or an
//!   exchange (history from the request), tool rounds, and the [`chat::TurnEvent`]s a door
//!   renders.
//! - [`llm`]: the LLM providers: HTTP clients, enforced limits, retries, circuit breakers,
//!   stream parsing, fallback, model routing, embeddings.
//! - [`mcp`]: the MCP host: servers from the `mcpServers` config, supervised; the tool
//!   catalogue and calls.
//! - [`memory`]: memories and history search on sqlite-vec, the embedders, the built-in
//!   memory tools, the background indexer.
//! - [`auth`]: API keys, browser sessions, roles, per-key quotas, the `keys` CLI.
//! - [`store`]: SQLite in WAL mode behind reader and writer pools, a fair write gate,
//!   migrations, and the repositories (conversations, messages, memories, principals).
//! - [`wire`]: the error codes clients see, and the one place internals are masked.
//! - [`config`]: the typed `config.yaml` tree, `${VAR}` interpolation, validation by key path.
//! - [`loadtest`]: `mcp-platform loadtest`, a load client for `/ws/chat`.
//! - [`mock_provider`]: a scriptable OpenAI-compatible fake, for tests and load tests.
//! - [`stats`]: lock-free histograms and gauges the components keep for `/health`.
//! - [`process`]: the process's own figures (RSS, CPU, descriptors) and its open-files limit.
//! - [`allocator`]: memory the allocator keeps after work, given back when the server is quiet.
//! - [`scrub`]: credentials found in text (logs, `/health`) and redacted.
//! - [`tokens`]: token counting with the model family's tokenizer (tables in the binary).
//! - [`telemetry`]: logging as text or JSON, scrubbed.
pub mod allocator;
pub mod app;
pub mod auth;
pub mod chat;
pub mod config;
pub mod embed;
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
pub mod tokens;
pub mod transfer;
pub mod wire;
