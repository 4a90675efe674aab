//! mcp-platform: a local-first MCP chat server in one process, one binary, one SQLite file.
//!
//! - [`config`]: the typed `config.yaml` tree, `${VAR}` interpolation, validation by key path.
//! - [`store`]: SQLite in WAL mode behind reader and writer pools, a fair write gate,
//!   migrations, and the repositories (conversations and messages).
//! - [`stats`]: lock-free histograms and gauges the components keep for `/health`.
pub mod config;
pub mod stats;
pub mod store;
