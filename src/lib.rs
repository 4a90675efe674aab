//! mcp-platform: a local-first MCP chat server in one process, one binary, one SQLite file.
//!
//! - [`config`]: the typed `config.yaml` tree, `${VAR}` interpolation, validation by key path.
pub mod config;
