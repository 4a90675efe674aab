//! The typed `config.yaml` tree: loading, `${VAR}` / `${VAR:-default}` interpolation from the
//! environment, and validation whose every error names the key at fault.
//!
//! The shipped `config.yaml` is embedded in the binary and is the default when no file is
//! found; [`Config::default`] matches it (a unit test holds the two together).

mod args;
mod chat;
mod database;
mod database_url;
mod duration;
mod host_pattern;
mod interpolate;
mod llm;
mod mcp;
mod memory;
mod secret;
mod server;
mod servers_file;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use args::ConfigArgs;
pub use chat::{
    ChatConfig, ContextConfig, LoopGuardConfig, OnDisconnect, RetentionConfig, RetentionPolicy,
    ServiceConfig, StreamingConfig, WebSocketConfig,
};
pub use database::{
    DATABASE_URL_VARIABLE, DEFAULT_SQLITE_PATH, DatabaseConfig, DatabaseUrl, PoolConfig,
    PostgresConfig, PostgresUrl, RepositoryConfig, SqliteConfig, Synchronous,
};
pub use host_pattern::{HostPattern, split_authority};
pub use llm::{
    CircuitBreakerConfig, EmbeddingsConfig, HttpClientConfig, LOCAL_PRESETS, LlmConfig,
    LocalPreset, Models, ProviderConfig, ToolCallMode,
};
pub use mcp::{Approval, McpConfig, McpServerConfig};
pub use memory::{
    BUILTIN_DIMENSIONS, BUILTIN_EMBEDDER, BUILTIN_LABEL, MemoryConfig, VectorSpace,
    known_dimensions,
};
pub use secret::Secret;
pub use server::{
    AuthConfig, AuthMode, HttpConfig, LogFormat, LoggingConfig, McpEndpointConfig, ServerConfig,
};

/// The shipped `config.yaml`, used when no file is given or found.
pub const EMBEDDED_CONFIG: &str = include_str!("../../config.yaml");

/// Where the configuration came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Embedded => f.write_str("built-in defaults"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Absent from a file: nothing named there (the deprecated keys or the default decide).
    #[serde(default = "DatabaseConfig::unset")]
    pub database: DatabaseConfig,
    pub chat: ChatConfig,
    pub retention: RetentionConfig,
    pub llm: LlmConfig,
    pub mcp: McpConfig,
    pub memory: MemoryConfig,
    pub logging: LoggingConfig,
    /// The values `${VAR}` placeholders took, hidden wherever the configuration is shown.
    #[serde(skip)]
    pub interpolated: Vec<Secret>,
    /// Deprecated keys the file set, each with what to write instead: said at start and by
    /// `check-config`.
    #[serde(skip)]
    pub deprecated: Vec<String>,
    /// The SQLite keys came from the deprecated `chat.service.repository`.
    #[serde(skip)]
    legacy_repository: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {}{message}{}", key_prefix(key.as_deref()), location_suffix(*line, *column))]
    Parse {
        origin: String,
        key: Option<String>,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    #[error("{origin}: {key} {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

fn key_prefix(key: Option<&str>) -> String {
    key.filter(|k| !k.is_empty() && *k != ".")
        .map(|k| format!("{k}: "))
        .unwrap_or_default()
}

fn location_suffix(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl Config {
    /// Keys the file set that this version accepts but no longer reads, each with what to do:
    /// said at start and by `check-config`.
    pub fn ignored_keys(&self) -> Vec<String> {
        let mut ignored = self.deprecated.clone();
        if self.server.http.realtime_front.is_some() {
            ignored.push(
                "server.http.realtime_front is ignored (no thread asks for real-time priority \
                 any more); remove it from the file"
                    .to_string(),
            );
        }
        ignored
    }

    /// Loads `path`, or `./config.yaml` when `path` is `None` and that file exists, or the
    /// embedded defaults. Interpolates from the process environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<(Self, ConfigSource), ConfigError> {
        Self::load_with_env(path, std::env::vars().collect())
    }

    /// [`Config::load`] with `env` for the process environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<(Self, ConfigSource), ConfigError> {
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("config.yaml")).filter(|p| p.is_file()),
        };
        match chosen {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    source,
                })?;
                let config = Self::from_yaml(&text, &file.display().to_string(), env)?;
                Ok((config, ConfigSource::File(file)))
            }
            None => Ok((
                Self::from_yaml(EMBEDDED_CONFIG, "built-in config.yaml", env)?,
                ConfigSource::Embedded,
            )),
        }
    }

    /// Parses and validates YAML text; `origin` names it in errors, `env` feeds `${VAR}`.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        if let Some((name, line)) = interpolate::first_unset_variable(text, &env) {
            return Err(ConfigError::Parse {
                origin: origin.to_string(),
                key: None,
                line: Some(line),
                column: None,
                message: format!(
                    "environment variable `{name}` is not set (write ${{{name}:-default}} to give a default)"
                ),
            });
        }
        let interpolated = interpolate::used_values(text, &env);
        let env_database_url = env.get(DATABASE_URL_VARIABLE).cloned();
        let mut options = serde_saphyr::Options::default().with_properties(env);
        options.property_syntax = serde_saphyr::options::PropertySyntax::DockerCompose;
        options.with_snippet = false;
        let mut key = None;
        let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize::<_, Option<Config>>(de).map_err(|e| {
                key = Some(e.path().to_string());
                e.into_inner()
            })
        });
        let mut config: Self = parsed
            .map_err(|e| parse_error(origin, key, &e))?
            .unwrap_or_default();
        config.interpolated = interpolated.into_iter().map(Secret::new).collect();
        config
            .settle_database(env_database_url.as_deref())
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin.to_string(),
                key,
                message,
            })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin.to_string(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Settles where the data lives, once parsed: the deprecated `chat.service.repository`
    /// read as `database.url` and `database.sqlite` (refused beside them), then the URL the
    /// environment names over the file's.
    fn settle_database(&mut self, env_url: Option<&str>) -> Result<(), (String, String)> {
        if let Some(legacy) = self.chat.service.repository.take() {
            if let Some(path) = legacy.path.clone() {
                if self.database.url.is_some() {
                    return Err((
                        "database.url".into(),
                        "and chat.service.repository.path are both set: keep database.url \
                         (chat.service.repository.path is deprecated)"
                            .into(),
                    ));
                }
                self.deprecated.push(format!(
                    "chat.service.repository.path is deprecated: write database.url: sqlite:{}",
                    path.display()
                ));
                self.database.url = Some(DatabaseUrl::Sqlite(path));
            }
            if let Some(sqlite) = legacy.sqlite() {
                if self.database.sqlite.is_some() {
                    return Err((
                        "database.sqlite".into(),
                        "and chat.service.repository are both set: move the keys of \
                         chat.service.repository (deprecated) to database.sqlite"
                            .into(),
                    ));
                }
                self.deprecated.push(
                    "chat.service.repository is deprecated: its keys belong under database.sqlite"
                        .into(),
                );
                self.database.sqlite = Some(sqlite);
                self.legacy_repository = true;
            }
        }
        self.database
            .sqlite
            .get_or_insert_with(SqliteConfig::default);
        if let Some(text) = env_url.filter(|t| !t.trim().is_empty()) {
            let url = DatabaseUrl::parse(text)
                .map_err(|message| (DATABASE_URL_VARIABLE.to_string(), message))?;
            self.database.url = Some(url);
        }
        self.database.url = Some(self.database.url());
        Ok(())
    }

    /// Where the file wrote the SQLite keys, for errors that name them.
    fn sqlite_key(&self) -> &'static str {
        if self.legacy_repository {
            "chat.service.repository"
        } else {
            "database.sqlite"
        }
    }

    /// Points the server at the database `text` names (the `--database` flag, which wins
    /// over everything); the error names the flag.
    pub fn use_database(&mut self, text: &str) -> Result<(), ConfigError> {
        let url = DatabaseUrl::parse(text).map_err(|message| ConfigError::Invalid {
            origin: "--database".into(),
            key: "URL".into(),
            message,
        })?;
        self.database.url = Some(url);
        Ok(())
    }

    /// The SQLite store to open; PostgreSQL is refused, naming the URL, until its backend is
    /// built.
    pub fn sqlite_store(&self) -> Result<RepositoryConfig, ConfigError> {
        self.database
            .sqlite_store()
            .ok_or_else(|| ConfigError::Invalid {
                origin: "database".into(),
                key: self.database.url().to_string(),
                message: "names PostgreSQL, which this version cannot use yet: its backend is \
                          being built (issue 43); use sqlite:PATH"
                    .into(),
            })
    }

    /// The effective configuration as YAML, secrets redacted (`check-config`).
    ///
    /// Hidden: secrets (`Secret` fields), every inline MCP server's `args` (they often carry
    /// tokens), credentials in URLs (user-info, secret-named query parameters), and any value
    /// that came from a `${VAR}` placeholder, wherever it appears.
    pub fn to_redacted_yaml(&self) -> String {
        let mut shown = self.clone();
        for server in shown.mcp.servers.values_mut() {
            server.args = vec![secret::REDACTED.to_string(); server.args.len()];
            server.url = server
                .url
                .as_deref()
                .map(|url| crate::scrub::credentials(url).into_owned());
        }
        for provider in shown.llm.providers.values_mut() {
            provider.base_url = crate::scrub::credentials(&provider.base_url).into_owned();
        }
        let mut text = serde_saphyr::to_string(&shown)
            .unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"));
        for value in &self.interpolated {
            text = text.replace(value.expose(), secret::REDACTED);
        }
        text
    }
}

fn parse_error(origin: &str, key: Option<String>, err: &serde_saphyr::Error) -> ConfigError {
    let location = err.location();
    let rendered = err.to_string();
    let first_line = rendered.lines().next().unwrap_or_default();
    let message = first_line.trim_start_matches("error: ");
    // The rendered text repeats the location we report separately, as a prefix or a suffix.
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") => rest,
        _ => message,
    };
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(text, _)| text);
    ConfigError::Parse {
        origin: origin.to_string(),
        key: key.filter(|k| !k.is_empty() && k != "."),
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests;
