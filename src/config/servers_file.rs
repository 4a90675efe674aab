//! The MCP servers file, in the dialects desktop clients write: `{"mcpServers": {...}}`
//! (Claude Desktop, Cursor, Windsurf, Cline, Roo Code) and VS Code's `{"servers": {...},
//! "inputs": [...]}`. Client-only keys are dropped or translated (`disabled`, `transportType`,
//! `autoApprove` / `alwaysAllow`); `${VAR}`, `${VAR:-default}`, `${env:VAR}` and
//! `${input:ID}` are filled from the environment. A key no dialect knows refuses the start,
//! naming it.

use std::collections::BTreeMap;

use super::ConfigError;
use super::mcp::{McpConfig, McpServerConfig};

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
            Some(path) => load(path, env)?,
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

fn load(
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
    let dialect = match (document.get("mcpServers"), document.get("servers")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "servers".into(),
                "the file has both `mcpServers` and `servers`; keep one".into(),
            ));
        }
        (Some(entries), None) => Dialect::McpServers(entries),
        (None, Some(entries)) => Dialect::VsCode(entries),
        (None, None) => {
            return Err(invalid(
                "mcpServers".into(),
                "is missing: the file must be {\"mcpServers\": {\"NAME\": {...}}} (Claude \
                 Desktop, Cursor, Windsurf, Cline, Roo Code) or {\"servers\": {\"NAME\": {...}}} \
                 (VS Code's mcp.json)"
                    .into(),
            ));
        }
    };
    let (section, entries) = dialect.entries();
    let Some(entries) = entries.as_object() else {
        return Err(invalid(section.into(), "must be an object".into()));
    };
    let mut servers = BTreeMap::new();
    for (name, entry) in entries {
        let key = format!("{section}.{name}");
        let server =
            file_entry(entry, env, &dialect).map_err(|message| invalid(key.clone(), message))?;
        super::validate::validate_mcp_server(&key, name, &server)
            .map_err(|(key, message)| invalid(key, message))?;
        servers.insert(name.clone(), server);
    }
    Ok(servers)
}

/// Which client's form the file has.
enum Dialect<'a> {
    /// `{"mcpServers": {...}}`.
    McpServers(&'a serde_json::Value),
    /// VS Code: `{"servers": {...}, "inputs": [...]}`; variables anywhere in an entry.
    VsCode(&'a serde_json::Value),
}

impl<'a> Dialect<'a> {
    fn entries(&self) -> (&'static str, &'a serde_json::Value) {
        match self {
            Self::McpServers(entries) => ("mcpServers", entries),
            Self::VsCode(entries) => ("servers", entries),
        }
    }

    /// The entry's keys whose strings take `${...}`: VS Code fills them everywhere.
    fn interpolated(&self) -> &'static [&'static str] {
        match self {
            Self::McpServers(_) => &["env", "headers"],
            Self::VsCode(_) => &["env", "headers", "args", "url", "command", "cwd"],
        }
    }
}

/// One entry of the file, in the lenient form desktop clients write.
fn file_entry(
    entry: &serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
    dialect: &Dialect<'_>,
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
    for section in dialect.interpolated() {
        if let Some(value) = entry.get_mut(*section) {
            fill(value, env).map_err(|unset| format!("{section} uses {unset}"))?;
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

/// Fills the variables of every string in `value` (a string, or a list or object of them).
fn fill(value: &mut serde_json::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match value {
        serde_json::Value::String(text) => *text = interpolate(text, env)?,
        serde_json::Value::Array(items) => {
            for item in items {
                fill(item, env)?;
            }
        }
        serde_json::Value::Object(values) => {
            for (name, item) in values.iter_mut() {
                fill(item, env).map_err(|unset| format!("{unset} (in `{name}`)"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `${VAR}`, `${VAR:-default}`, `${env:VAR}` (VS Code) and `${input:ID}` (VS Code's
/// prompts: here the environment variable named like the id, `api-key` → `API_KEY`). An
/// unset variable is an error saying which and what to set.
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
        let (variable, input) = match name.split_once(':') {
            Some(("env", variable)) => (variable.to_string(), false),
            Some(("input", id)) => (input_variable(id), true),
            _ => (name.to_string(), false),
        };
        match (env(&variable).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) if input => {
                return Err(format!(
                    "${{{inner}}}, a VS Code input (VS Code prompts for it): set {variable} in \
                     the environment"
                ));
            }
            (None, None) => return Err(format!("${{{inner}}}, which is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The environment variable answering `${input:ID}`: the id upper-cased, other characters
/// than letters and digits as `_`.
fn input_variable(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{Approval, McpConfig};

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
        let neither = message(r#"{"tools": {}}"#);
        assert!(
            neither.contains("mcpServers") && neither.contains("VS Code"),
            "{neither}"
        );
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

    /// A real file of each client's dialect, from `tests/fixtures/mcp/`.
    fn fixture(name: &str) -> Result<BTreeMap<String, McpServerConfig>, ConfigError> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mcp")
            .join(name);
        let config = McpConfig {
            servers_file: Some(path),
            ..McpConfig::default()
        };
        config.resolve_servers(&|name| match name {
            "GITHUB_TOKEN" => Some("ghp_x".into()),
            "PERPLEXITY_KEY" => Some("pplx_y".into()),
            _ => None,
        })
    }

    #[test]
    fn every_clients_file_loads_as_it_is() {
        let claude = fixture("claude_desktop.json").expect("Claude Desktop");
        assert_eq!(
            claude["github"].env["GITHUB_PERSONAL_ACCESS_TOKEN"].expose(),
            "ghp_x"
        );
        assert_eq!(claude["filesystem"].args.len(), 4);
        let cursor = fixture("cursor.json").expect("Cursor");
        assert!(cursor["remote"].url.is_some());
        let windsurf = fixture("windsurf.json").expect("Windsurf");
        assert!(!windsurf["memory"].enabled);
        let cline = fixture("cline.json").expect("Cline");
        let git = &cline["git"];
        assert_eq!(git.timeout, Some(std::time::Duration::from_secs(60)));
        assert_eq!(git.approval_for("git_diff", Approval::Auto), Approval::Auto);
        assert_eq!(
            git.approval_for("git_commit", Approval::Auto),
            Approval::Ask
        );
        let roo = fixture("roo.json").expect("Roo Code");
        assert_eq!(roo["files"].transport.as_deref(), Some("stdio"));
        assert_eq!(
            roo["files"].approval_for("write_file", Approval::Auto),
            Approval::Ask
        );
        let vscode = fixture("vscode.json").expect("VS Code");
        assert_eq!(
            vscode["perplexity"].env["PERPLEXITY_API_KEY"].expose(),
            "pplx_y"
        );
        assert_eq!(
            vscode["github"].headers["Authorization"].expose(),
            "Bearer ghp_x"
        );
    }

    #[test]
    fn a_vs_code_input_that_is_not_set_says_which_variable_answers_it() {
        let error = load(
            r#"{"inputs": [{"type": "promptString", "id": "api-key"}],
                "servers": {"s": {"command": "x", "args": ["--key", "${input:api-key}"]}}}"#,
        )
        .expect_err("refused")
        .to_string();
        assert!(error.contains("servers.s"), "{error}");
        assert!(error.contains("API_KEY"), "{error}");
        let both = load(r#"{"servers": {}, "mcpServers": {}}"#).expect_err("refused");
        assert!(both.to_string().contains("both"), "{both}");
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
