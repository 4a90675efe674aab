//! `mcp` section: where the MCP server list comes from, and the entries themselves in the
//! `mcpServers` form desktop MCP clients use (`command`/`args`/`env`/`cwd` for stdio,
//! `url`/`headers` for Streamable HTTP).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

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

/// Keys that desktop MCP clients add to their entries and that mean nothing here: accepted
/// and ignored, so users' files load unchanged.
const CLIENT_ONLY_KEYS: &[&str] = &["disabledTools", "description"];

/// Cline's and Roo Code's lists of tools that run without asking: those clients ask before
/// every other tool, so an entry with one asks too (unless it sets `approval` itself).
const AUTO_APPROVE_KEYS: &[&str] = &["autoApprove", "alwaysAllow"];

impl McpConfig {
    /// Every configured server: the entries of `servers_file` (a missing file means none),
    /// then the inline ones. `${VAR}` and `${VAR:-default}` in the file's `env` and `headers`
    /// values are replaced from `env`. A name defined twice is an error.
    pub fn resolve_servers(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, McpServerConfig>, ConfigError> {
        let mut servers = match &self.servers_file {
            Some(path) => load_servers_file(path, env)?,
            None => BTreeMap::new(),
        };
        for (name, server) in &self.servers {
            if servers.contains_key(name) {
                return Err(ConfigError::Invalid {
                    origin: "config.yaml".into(),
                    key: format!("mcp.servers.{name}"),
                    message: "is also defined in mcp.servers_file; keep one".into(),
                });
            }
            servers.insert(name.clone(), server.clone());
        }
        Ok(servers)
    }
}

fn load_servers_file(
    path: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, McpServerConfig>, ConfigError> {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Said in the log once the server is up (McpHost::start), not before a start error.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parse_error = |key: Option<String>, error: &serde_json::Error| ConfigError::Parse {
        origin: origin.clone(),
        key,
        line: Some(error.line() as u64),
        column: Some(error.column() as u64),
        message: error.to_string(),
    };
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| parse_error(None, &e))?;
    let invalid = |key: String, message: String| ConfigError::Invalid {
        origin: origin.clone(),
        key,
        message,
    };
    let Some(entries) = document.get("mcpServers") else {
        return Err(invalid(
            "mcpServers".into(),
            "is missing: the file must be {\"mcpServers\": {\"NAME\": {...}}}".into(),
        ));
    };
    let Some(entries) = entries.as_object() else {
        return Err(invalid("mcpServers".into(), "must be an object".into()));
    };
    let mut servers = BTreeMap::new();
    for (name, entry) in entries {
        let key = format!("mcpServers.{name}");
        let server = file_entry(entry, env).map_err(|message| invalid(key.clone(), message))?;
        super::validate::validate_mcp_server(&key, name, &server)
            .map_err(|(key, message)| invalid(key, message))?;
        servers.insert(name.clone(), server);
    }
    Ok(servers)
}

/// One entry of the file, in the lenient form desktop clients write.
fn file_entry(
    entry: &serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<McpServerConfig, String> {
    let mut entry = entry.as_object().cloned().ok_or("must be an object")?;
    for key in CLIENT_ONLY_KEYS {
        entry.remove(*key);
    }
    auto_approved(&mut entry)?;
    // Roo Code's `transportType` is our `type`.
    if let Some(kind) = entry.remove("transportType") {
        entry.entry("type").or_insert(kind);
    }
    // `"disabled": true` (Cline and others) is `"enabled": false`.
    if let Some(disabled) = entry.remove("disabled") {
        let disabled = disabled
            .as_bool()
            .ok_or("`disabled` must be true or false")?;
        entry
            .entry("enabled")
            .or_insert(serde_json::Value::Bool(!disabled));
    }
    if let Some(serde_json::Value::String(kind)) = entry.get("type")
        && kind == "sse"
    {
        return Err(
            "uses the legacy SSE transport, which is not supported; use the server's \
                    Streamable HTTP endpoint (`\"type\": \"http\"`)"
                .into(),
        );
    }
    for section in ["env", "headers"] {
        if let Some(serde_json::Value::Object(values)) = entry.get_mut(section) {
            for (name, value) in values.iter_mut() {
                if let serde_json::Value::String(text) = value {
                    *text = interpolate(text, env).map_err(|var| {
                        format!("{section}.{name} uses ${{{var}}}, which is not set")
                    })?;
                }
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(entry)).map_err(|e| e.to_string())
}

/// `autoApprove` / `alwaysAllow` (lists of tool names) become `tools: {NAME: "auto"}` with
/// `approval: "ask"` for the others, as in the clients that wrote them.
fn auto_approved(entry: &mut serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    for key in AUTO_APPROVE_KEYS {
        let Some(list) = entry.remove(*key) else {
            continue;
        };
        let names = list
            .as_array()
            .ok_or_else(|| format!("`{key}` must be a list of tool names"))?;
        let tools = entry
            .entry("tools")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
            .as_object_mut()
            .ok_or("`tools` must be an object of tool name to approval")?;
        for name in names {
            let name = name
                .as_str()
                .ok_or_else(|| format!("`{key}` must be a list of tool names"))?;
            tools
                .entry(name)
                .or_insert_with(|| serde_json::Value::String("auto".into()));
        }
        entry
            .entry("approval")
            .or_insert_with(|| serde_json::Value::String("ask".into()));
    }
    Ok(())
}

/// Replaces `${VAR}` and `${VAR:-default}`; an unset `${VAR}` is an error naming it.
fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    fn load(json: &str) -> Result<BTreeMap<String, McpServerConfig>, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(json.as_bytes()).expect("write");
        let config = McpConfig {
            servers_file: Some(file.path().to_path_buf()),
            ..McpConfig::default()
        };
        config.resolve_servers(&env)
    }

    #[test]
    fn a_desktop_client_file_loads_with_interpolation_and_client_keys_ignored() {
        let servers = load(
            r#"{"globalShortcut": "x", "mcpServers": {
                "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "${ZONE:-UTC}"},
                         "autoApprove": [], "disabled": true},
                "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp",
                           "headers": {"Authorization": "Bearer ${TOKEN}"}}}}"#,
        )
        .expect("loads");
        let time = &servers["time"];
        assert_eq!(time.env["TZ"].expose(), "UTC");
        assert!(!time.enabled);
        assert_eq!(
            servers["remote"].headers["Authorization"].expose(),
            "Bearer s3cret"
        );
    }

    #[test]
    fn bad_files_name_the_entry_at_fault() {
        let message = |json: &str| load(json).expect_err("refused").to_string();
        assert!(message("{nope").contains("line 1"));
        assert!(message(r#"{"servers": {}}"#).contains("mcpServers"));
        assert!(
            message(r#"{"mcpServers": {"a": {"url": "http://x/sse", "type": "sse"}}}"#)
                .contains("SSE")
        );
        assert!(
            message(r#"{"mcpServers": {"a": {"command": "x", "env": {"K": "${UNSET}"}}}}"#)
                .contains("UNSET")
        );
        assert!(
            message(r#"{"mcpServers": {"a": {"command": "x", "colour": 1}}}"#).contains("colour")
        );
        assert!(message(r#"{"mcpServers": {"a": {"args": []}}}"#).contains("mcpServers.a"));
    }

    #[test]
    fn cline_and_roo_entries_keep_their_approvals_and_transport() {
        let servers = load(
            r#"{"mcpServers": {
                "files": {"command": "npx", "args": ["server-filesystem"], "transportType": "stdio",
                          "alwaysAllow": ["read_file"], "disabled": false},
                "git": {"command": "uvx", "autoApprove": ["git_status"], "approval": "deny"},
                "time": {"command": "uvx", "approval": "ask", "tools": {"get_time": "auto"}}}}"#,
        )
        .expect("loads");
        let files = &servers["files"];
        assert_eq!(files.transport.as_deref(), Some("stdio"));
        assert_eq!(
            files.approval_for("read_file", Approval::Auto),
            Approval::Auto
        );
        assert_eq!(
            files.approval_for("write_file", Approval::Auto),
            Approval::Ask
        );
        // An explicit `approval` wins over the list's implied `ask`.
        let git = &servers["git"];
        assert_eq!(
            git.approval_for("git_status", Approval::Auto),
            Approval::Auto
        );
        assert_eq!(
            git.approval_for("git_commit", Approval::Auto),
            Approval::Deny
        );
        let time = &servers["time"];
        assert_eq!(
            time.approval_for("get_time", Approval::Deny),
            Approval::Auto
        );
        assert_eq!(time.approval_for("convert", Approval::Auto), Approval::Ask);
    }

    #[test]
    fn a_misspelt_approval_key_or_value_refuses_the_start() {
        let message = |json: &str| load(json).expect_err("refused").to_string();
        let typo = message(r#"{"mcpServers": {"a": {"command": "x", "aproval": "ask"}}}"#);
        assert!(
            typo.contains("aproval") && typo.contains("approval"),
            "{typo}"
        );
        let value = message(r#"{"mcpServers": {"a": {"command": "x", "approval": "sometimes"}}}"#);
        assert!(value.contains("sometimes"), "{value}");
        let list = message(r#"{"mcpServers": {"a": {"command": "x", "autoApprove": "all"}}}"#);
        assert!(list.contains("autoApprove"), "{list}");
    }

    #[test]
    fn a_missing_file_means_no_servers_and_names_must_be_unique() {
        let mut config = McpConfig {
            servers_file: Some("/nonexistent/servers.json".into()),
            ..McpConfig::default()
        };
        assert!(config.resolve_servers(&env).expect("no file").is_empty());
        let server: McpServerConfig = serde_json::from_str(r#"{"command": "x"}"#).expect("entry");
        config.servers.insert("a".into(), server);
        assert_eq!(config.resolve_servers(&env).expect("inline").len(), 1);
    }
}
