//! `mcp` section: where the MCP server list comes from, and the entries themselves in the
//! `mcpServers` form desktop MCP clients use (`command`/`args`/`env`/`cwd` for stdio,
//! `url`/`headers` for Streamable HTTP).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// A JSON file `{"mcpServers": {...}}`; a missing file means no servers from it.
    pub servers_file: Option<PathBuf>,
    /// Servers declared inline, same form as the entries of `mcpServers`.
    pub servers: BTreeMap<String, McpServerConfig>,
    /// Timeout of one tool call unless the server's entry sets its own.
    #[serde(with = "super::duration")]
    pub tool_timeout: Duration,
    /// Tool results longer than this (in bytes) are truncated with a note.
    pub max_result_bytes: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            servers_file: Some(PathBuf::from("./servers_config.json")),
            servers: BTreeMap::new(),
            tool_timeout: Duration::from_secs(30),
            max_result_bytes: 32 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Stdio transport: the program to start.
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// The child's environment: only these, plus PATH, HOME, LANG and `inherit_env`.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Variables of our own environment passed through to the child.
    #[serde(default)]
    pub inherit_env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP transport: the endpoint.
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `stdio`, `http` or `streamable-http`; inferred from `command` / `url` when absent.
    #[serde(rename = "type")]
    pub transport: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default, with = "super::duration::option")]
    pub timeout: Option<Duration>,
}

fn enabled_by_default() -> bool {
    true
}
