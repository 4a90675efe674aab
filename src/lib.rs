//! mcp-platform: a local-first MCP chat server in one process, one binary, one SQLite file.
//!
//! Requests flow one way, from the doors down to the store; no module imports one above it:
//!
//! ```text
//! embed ─ app ─ http (the doors: /ws/chat, /v1, /api, /mcp, /health, /metrics, the page)
//!                 │
//!                 ├─ chat (the engine: turns and typed operations, events out)   transfer   loadtest
//!                 │    └─ memory (memories, history search, embedders)
//!                 │         ├─ auth (keys, sessions, quotas)   mcp (the MCP host)
//!                 │         └─ store (SQLite)   llm (providers)   process   telemetry
//!                 └───────────── config   wire (error codes)   mock_provider
//!                                  └─ scrub   stats   tokens   allocator
//! ```
//!
//! The library's API is [`app`], [`config`] and [`embed`]; the other modules are internal
//! (those the binary, the tests or the benchmarks reach are public but hidden from the docs).
//!
//! | module | what it holds |
//! |---|---|
//! | [`embed`] | the server inside another program: start with a config built in code, stop |
//! | [`app`] | the one place the parts are built; serving on a bound listener; the shutdown tree (sockets drain, requests finish, then the rest); background tasks |
//! | `http` | the doors: the accept loop and its limits, Host and Origin checks, credentials; `ws` (`/ws/chat`: frames parsed and rendered, the outbox, live turns), `openai` (`/v1`), `api` (REST), `mcp` (`/mcp`, the server as an MCP server), `logins` (OAuth logins to MCP servers), `/health`, `/metrics`, the page |
//! | `chat` | the engine every door calls: a turn (context from the store, the answer and its tool rounds stored) or an exchange (history from the request), told as `TurnEvent`s; typed operations that take the `Caller` and check it once (conversations, history, search, memories, models, MCP resources and prompts, compaction) |
//! | `transfer` | `mcp-platform export` and `import`: the JSON Lines format and its checks |
//! | `memory` | memories and history search on sqlite-vec, the embedders, the built-in memory tools, the background indexer, `reembed` |
//! | `auth` | API keys, browser sessions, roles, per-key quotas, the `keys` CLI |
//! | `mcp` | the MCP host: servers from the `mcpServers` config, supervised; the tool catalogue, calls, resources and prompts (`library`), OAuth logins (`oauth`) |
//! | `loadtest` | `mcp-platform loadtest`, a load client for `/ws/chat` and `/v1` |
//! | `store` | SQLite in WAL mode behind reader and writer pools, group commit, migrations; the repositories (conversations, messages, memories, principals, MCP logins) |
//! | `llm` | the LLM providers: HTTP clients, limits, retries, circuit breakers, stream parsing, fallback, model routing, embeddings |
//! | `process` | the process's own figures (memory, CPU, descriptors), its open-files limit |
//! | `telemetry` | logging as text or JSON, scrubbed |
//! | [`config`] | the typed `config.yaml` tree, `${VAR}` interpolation, validation by key path |
//! | `wire` | the error codes clients see, and the one place internals are masked |
//! | `mock_provider` | a scriptable OpenAI-compatible fake, for tests and load tests |
//! | `scrub` | credentials found in text (logs, `/health`) and redacted |
//! | `stats` | lock-free histograms and gauges the components keep for `/health` |
//! | `tokens` | token counting with the model family's tokenizer (tables in the binary) |
//! | `allocator` | memory the allocator keeps after work, given back when the server is quiet |

// The library's API: the server built in code, its configuration, and the server embedded
// in another program.
pub mod app;
pub mod config;
pub mod embed;

// Internal: reached only from inside the crate.
mod chat;
mod http;
mod scrub;
mod wire;

// Internal too, but the binary (src/main.rs), the tests and the benchmarks reach into them:
// public for them, hidden from the documentation, and no promise to anyone else.
#[doc(hidden)]
pub mod allocator;
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod llm;
#[doc(hidden)]
pub mod loadtest;
#[doc(hidden)]
pub mod mcp;
#[doc(hidden)]
pub mod memory;
#[doc(hidden)]
pub mod mock_provider;
#[doc(hidden)]
pub mod process;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod telemetry;
#[doc(hidden)]
pub mod tokens;
#[doc(hidden)]
pub mod transfer;
