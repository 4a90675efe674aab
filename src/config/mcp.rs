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
    /// A server that has not answered `initialize` within this is restarted with the reason.
    #[serde(with = "super::duration")]
    pub initialize_timeout: Duration,
    /// Whether a tool call runs at once (`auto`), waits for the user (`ask`) or never runs
    /// (`deny`), for servers and tools whose entry says nothing.
    pub default_approval: Approval,
    /// An `ask` left unanswered this long is denied (the tool's own timeout starts once it is
    /// allowed).
    #[serde(with = "super::duration")]
    pub approval_timeout: Duration,
    /// A server's question (`elicitation/create`) left unanswered this long is cancelled.
    #[serde(with = "super::duration")]
    pub elicitation_timeout: Duration,
}

/// A tool call's approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Runs without asking.
    #[default]
    Auto,
    /// The user allows or denies each call (or remembers the decision for a conversation).
    Ask,
    /// Never runs: the model reads that it is not allowed.
    Deny,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            servers_file: Some(PathBuf::from("./servers_config.json")),
            servers: BTreeMap::new(),
            tool_timeout: Duration::from_secs(30),
            max_result_bytes: 32 * 1024,
            initialize_timeout: Duration::from_secs(30),
            default_approval: Approval::Auto,
            approval_timeout: Duration::from_secs(120),
            elicitation_timeout: Duration::from_secs(300),
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
    /// The approval policy of this server's tools; `None`: `mcp.default_approval`.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// Per-tool approval, by the server's own tool name: overrides `approval`.
    #[serde(default)]
    pub tools: BTreeMap<String, Approval>,
    /// Directories the server may work in, advertised to it (`roots/list`).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// The server may ask our model (`sampling/createMessage`), on the turn's account.
    #[serde(default)]
    pub sampling: bool,
}

impl McpServerConfig {
    /// The policy of a call of `tool` (the server's own name for it).
    pub fn approval_for(&self, tool: &str, default: Approval) -> Approval {
        self.tools
            .get(tool)
            .copied()
            .or(self.approval)
            .unwrap_or(default)
    }
}

fn enabled_by_default() -> bool {
    true
}
