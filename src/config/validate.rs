//! Range and consistency checks run once after parsing. Each failure names its key path:
//! `database.sqlite.connection_pool.max_readers must be between 1 and 1024 (got 0)`.

use std::fmt::Display;
use std::time::Duration;

use super::{Config, DatabaseConfig, LlmConfig, McpConfig, ProviderConfig, SqliteConfig, chat};

/// The least prompt budget (`context.max_tokens - context.reserve_tokens`) a turn can work
/// with: a short system prompt and one message. Below it every message is refused.
const MIN_PROMPT_BUDGET: u32 = 256;

/// `(key path, what is wrong)`.
pub(super) type Invalid = (String, String);

fn within<T: PartialOrd + Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Invalid> {
    if value < min || value > max {
        return Err((
            key.into(),
            format!("must be between {min} and {max} (got {value})"),
        ));
    }
    Ok(())
}

fn positive(key: &str, value: Duration) -> Result<(), Invalid> {
    if value.is_zero() {
        return Err((key.into(), "must be greater than zero".into()));
    }
    Ok(())
}

fn ensure(ok: bool, key: impl Into<String>, message: impl Into<String>) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((key.into(), message.into()))
    }
}

fn is_http_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        self.validate_server()?;
        validate_database(&self.database, self.sqlite_key())?;
        validate_chat(&self.chat)?;
        validate_retention(&self.retention)?;
        validate_llm(&self.llm)?;
        validate_mcp(&self.mcp)?;
        self.validate_memory()?;
        let level = &self.logging.level;
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
            (
                "logging.level".to_string(),
                format!("is not a valid log filter `{level}` ({e})"),
            )
        })?;
        Ok(())
    }

    fn validate_memory(&self) -> Result<(), Invalid> {
        let memory = &self.memory;
        within("memory.batch_size", memory.batch_size, 1, 2048)?;
        within("memory.snippet_chars", memory.snippet_chars, 20, 10_000)?;
        within("memory.max_k", memory.max_k, 1, 1000)?;
        if let Some(dimensions) = memory.dimensions {
            within("memory.dimensions", dimensions, 2, 8192)?;
        }
        if memory.is_builtin() {
            return Ok(());
        }
        let Some(provider) = self.llm.providers.get(&memory.embedder) else {
            return Err((
                "memory.embedder".into(),
                format!(
                    "`{}` is neither `builtin` nor a provider under llm.providers",
                    memory.embedder
                ),
            ));
        };
        let Some(model) = &provider.embedding_model else {
            return Err((
                "memory.embedder".into(),
                format!(
                    "provider `{}` has no embedding_model; set llm.providers.{}.embedding_model",
                    memory.embedder, memory.embedder
                ),
            ));
        };
        ensure(
            memory.dimensions.is_some() || super::known_dimensions(model).is_some(),
            "memory.dimensions",
            format!("is required: the size of `{model}`'s vectors is not known to this server"),
        )
    }

    fn validate_server(&self) -> Result<(), Invalid> {
        ensure(
            !self.server.host.trim().is_empty(),
            "server.host",
            "must not be empty",
        )?;
        for (i, origin) in self.server.allowed_origins.iter().enumerate() {
            let bare = origin
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.contains('/'));
            ensure(
                is_http_url(origin) && bare,
                format!("server.allowed_origins[{i}]"),
                format!("must be an origin like http://localhost:3000 (got `{origin}`)"),
            )?;
        }
        for (i, host) in self.server.allowed_hosts.iter().enumerate() {
            ensure(
                super::HostPattern::parse(host).is_some(),
                format!("server.allowed_hosts[{i}]"),
                format!(
                    "must be a host name, `name:port` or `*.domain`, without scheme or path (got `{host}`)"
                ),
            )?;
        }
        within("server.worker_threads", self.server.worker_threads, 0, 1024)?;
        let auth = &self.server.auth;
        within(
            "server.auth.max_failures_per_minute",
            auth.max_failures_per_minute,
            1,
            100_000,
        )?;
        positive("server.auth.session_ttl", auth.session_ttl)?;
        let http = &self.server.http;
        positive("server.http.header_read_timeout", http.header_read_timeout)?;
        positive("server.http.body_read_timeout", http.body_read_timeout)?;
        let mcp = &self.server.mcp;
        within("server.mcp.max_sessions", mcp.max_sessions, 1, 100_000)?;
        // Above max_sessions it means max_sessions.
        within(
            "server.mcp.max_sessions_per_key",
            mcp.max_sessions_per_key,
            1,
            100_000,
        )?;
        positive("server.mcp.session_idle_timeout", mcp.session_idle_timeout)?;
        ensure(
            http.socket_send_buffer == 0 || (4096..=64 << 20).contains(&http.socket_send_buffer),
            "server.http.socket_send_buffer",
            "must be 0 (the kernel's autotuning) or between 4096 and 67108864 bytes",
        )?;
        within(
            "server.http.max_connections",
            http.max_connections,
            1,
            1_000_000,
        )?;
        if let Some(token) = &self.server.metrics_token {
            ensure(
                token.expose().len() >= 16,
                "server.metrics_token",
                "must be at least 16 characters",
            )?;
        }
        Ok(())
    }
}

/// How long a turn may go on without a socket, and when its tool loop stops.
fn validate_turn_limits(service: &chat::ServiceConfig) -> Result<(), Invalid> {
    within(
        "chat.service.detached_turn_timeout (seconds)",
        service.detached_turn_timeout.as_secs_f64(),
        0.1,
        86_400.0,
    )?;
    within(
        "chat.service.loop_guard.repeated_calls",
        service.loop_guard.repeated_calls,
        0,
        100,
    )?;
    within(
        "chat.service.loop_guard.consecutive_errors",
        service.loop_guard.consecutive_errors,
        0,
        100,
    )
}

fn validate_chat(chat: &chat::ChatConfig) -> Result<(), Invalid> {
    let ws = &chat.websocket;
    within(
        "chat.websocket.max_connections",
        ws.max_connections,
        1,
        1_000_000,
    )?;
    within(
        "chat.websocket.max_message_size",
        ws.max_message_size,
        1024,
        64 << 20,
    )?;
    positive("chat.websocket.ping_interval", ws.ping_interval)?;
    positive("chat.websocket.ping_timeout", ws.ping_timeout)?;
    positive("chat.websocket.slow_reader_timeout", ws.slow_reader_timeout)?;
    within(
        "chat.websocket.send_buffer",
        ws.send_buffer,
        64 << 10,
        1 << 30,
    )?;
    within("chat.websocket.send_queue", ws.send_queue, 1, 65536)?;
    within(
        "chat.websocket.max_turns_per_connection",
        ws.max_turns_per_connection,
        1,
        1024,
    )?;

    let service = &chat.service;
    within("chat.service.max_tool_hops", service.max_tool_hops, 0, 100)?;
    validate_turn_limits(service)?;
    within(
        "chat.service.max_tool_calls_per_reply",
        service.max_tool_calls_per_reply,
        1,
        1000,
    )?;
    positive("chat.service.turn_timeout", service.turn_timeout)?;
    let context = &service.context;
    within(
        "chat.service.context.max_tokens",
        context.max_tokens,
        256,
        10_000_000,
    )?;
    ensure(
        context.max_tokens.saturating_sub(context.reserve_tokens) >= MIN_PROMPT_BUDGET,
        "chat.service.context.reserve_tokens",
        format!(
            "leaves {} of context.max_tokens ({}) for the prompt; at least {MIN_PROMPT_BUDGET} \
             are needed (the system prompt and one message): lower reserve_tokens or raise \
             max_tokens",
            context.max_tokens.saturating_sub(context.reserve_tokens),
            context.max_tokens
        ),
    )?;
    Ok(())
}

/// The database: its URL names a file or a database, and each backend's settings are in range.
/// `sqlite_key` is where the SQLite keys were written (`database.sqlite`, or the deprecated
/// `chat.service.repository`).
fn validate_database(database: &DatabaseConfig, sqlite_key: &str) -> Result<(), Invalid> {
    if let Some(path) = database.url().sqlite_path() {
        ensure(
            !path.as_os_str().is_empty(),
            "database.url",
            "names an empty SQLite path",
        )?;
    }
    let postgres = &database.postgres;
    within(
        "database.postgres.max_connections",
        postgres.max_connections,
        1,
        1024,
    )?;
    positive(
        "database.postgres.connect_timeout",
        postgres.connect_timeout,
    )?;
    validate_sqlite(&database.sqlite(), sqlite_key)
}

fn validate_sqlite(sqlite: &SqliteConfig, key: &str) -> Result<(), Invalid> {
    positive(&format!("{key}.busy_timeout"), sqlite.busy_timeout)?;
    within(
        &format!("{key}.memory_budget_mib"),
        sqlite.memory_budget_mib,
        4,
        1 << 20,
    )?;
    if let Some(kib) = sqlite.cache_size_kib {
        within(&format!("{key}.cache_size_kib"), kib, 64, 4 << 20)?;
    }
    within(
        &format!("{key}.mmap_size_mib"),
        sqlite.mmap_size_mib,
        0,
        64 << 10,
    )?;
    let quiet = sqlite.release_memory_when_quiet;
    ensure(
        quiet.is_zero()
            || (Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&quiet),
        format!("{key}.release_memory_when_quiet"),
        "must be between 100ms and 1 day, or 0 (never release)",
    )?;
    let pool = &sqlite.connection_pool;
    let key = format!("{key}.connection_pool");
    within(&format!("{key}.max_readers"), pool.max_readers, 1, 1024)?;
    within(&format!("{key}.max_writers"), pool.max_writers, 1, 64)?;
    positive(
        &format!("{key}.connection_timeout"),
        pool.connection_timeout,
    )?;
    ensure(
        pool.health_check_interval >= Duration::from_secs(1),
        format!("{key}.health_check_interval"),
        "must be at least 1s",
    )
}

fn validate_retention(retention: &chat::RetentionConfig) -> Result<(), Invalid> {
    within("retention.max_tokens", retention.max_tokens, 1, u64::MAX)?;
    within(
        "retention.max_messages",
        retention.max_messages,
        1,
        u64::MAX,
    )?;
    ensure(
        retention.max_age >= Duration::from_secs(60),
        "retention.max_age",
        "must be at least 1m",
    )?;
    ensure(
        retention.interval >= Duration::from_secs(1),
        "retention.interval",
        "must be at least 1s",
    )
}

fn validate_llm(llm: &LlmConfig) -> Result<(), Invalid> {
    let known = |name: &str| llm.providers.contains_key(name);
    let names: Vec<&str> = llm.providers.keys().map(String::as_str).collect();
    ensure(
        known(&llm.active),
        "llm.active",
        format!(
            "names `{}`, which is not in llm.providers ({})",
            llm.active,
            names.join(", ")
        ),
    )?;
    for (i, name) in llm.fallback.iter().enumerate() {
        let key = format!("llm.fallback[{i}]");
        ensure(
            known(name),
            &key,
            format!("names `{name}`, which is not in llm.providers"),
        )?;
        ensure(
            !llm.fallback[..i].contains(name),
            &key,
            format!("lists `{name}` twice"),
        )?;
    }
    for (name, provider) in &llm.providers {
        validate_provider(name, provider)?;
    }
    let e = &llm.embeddings;
    within("llm.embeddings.max_batch", e.max_batch, 1, 2048)?;
    within(
        "llm.embeddings.cache_entries",
        e.cache_entries,
        0,
        10_000_000,
    )?;
    ensure(
        e.batch_window <= Duration::from_secs(1),
        "llm.embeddings.batch_window",
        "must be at most 1s",
    )
}

fn validate_provider(name: &str, p: &ProviderConfig) -> Result<(), Invalid> {
    let key = format!("llm.providers.{name}");
    ensure(
        is_name(name),
        &key,
        "name must be letters, digits, `_` or `-` (at most 64)",
    )?;
    ensure(
        is_http_url(&p.base_url),
        format!("{key}.base_url"),
        format!("must be an http(s) URL (got `{}`)", p.base_url),
    )?;
    ensure(
        !p.model.trim().is_empty(),
        format!("{key}.model"),
        "must not be empty",
    )?;
    if let Some(var) = &p.api_key_env {
        let valid = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ensure(
            valid,
            format!("{key}.api_key_env"),
            "must name an environment variable (the key itself never goes in this file)",
        )?;
    }
    if let Some(t) = p.temperature {
        within(&format!("{key}.temperature"), t, 0.0, 2.0)?;
    }
    if let Some(top_p) = p.top_p {
        within(&format!("{key}.top_p"), top_p, 0.0, 1.0)?;
    }
    if let Some(max) = p.max_tokens {
        within(&format!("{key}.max_tokens"), max, 1, 10_000_000)?;
    }
    if let Some(window) = p.context_window {
        within(&format!("{key}.context_window"), window, 512, 100_000_000)?;
    }
    let h = &p.http_client;
    let hk = format!("{key}.http_client");
    within(
        &format!("{hk}.max_connections"),
        h.max_connections,
        1,
        10_000,
    )?;
    within(
        &format!("{hk}.max_keepalive"),
        h.max_keepalive,
        0,
        h.max_connections,
    )?;
    within(
        &format!("{hk}.concurrent_requests"),
        h.concurrent_requests,
        1,
        10_000,
    )?;
    within(
        &format!("{hk}.requests_per_minute"),
        h.requests_per_minute,
        1,
        10_000_000,
    )?;
    within(&format!("{hk}.max_retries"), h.max_retries, 0, 20)?;
    within(&format!("{hk}.backoff_factor"), h.backoff_factor, 0.0, 60.0)?;
    positive(&format!("{hk}.connect_timeout"), h.connect_timeout)?;
    positive(&format!("{hk}.read_timeout"), h.read_timeout)?;
    positive(&format!("{hk}.write_timeout"), h.write_timeout)?;
    positive(&format!("{hk}.pool_timeout"), h.pool_timeout)?;
    let cb = &p.circuit_breaker;
    within(
        &format!("{key}.circuit_breaker.failure_threshold"),
        cb.failure_threshold,
        1,
        10_000,
    )?;
    positive(&format!("{key}.circuit_breaker.open_for"), cb.open_for)
}

fn validate_mcp(mcp: &McpConfig) -> Result<(), Invalid> {
    positive("mcp.tool_timeout", mcp.tool_timeout)?;
    positive("mcp.initialize_timeout", mcp.initialize_timeout)?;
    positive("mcp.approval_timeout", mcp.approval_timeout)?;
    positive("mcp.elicitation_timeout", mcp.elicitation_timeout)?;
    within("mcp.max_result_bytes", mcp.max_result_bytes, 256, 16 << 20)?;
    for (name, server) in &mcp.servers {
        validate_mcp_server(&format!("mcp.servers.{name}"), name, server)?;
    }
    Ok(())
}

/// One `mcpServers` entry, at `key` (inline in config.yaml or in the servers file).
pub(super) fn validate_mcp_server(
    key: &str,
    name: &str,
    server: &super::McpServerConfig,
) -> Result<(), Invalid> {
    let key = key.to_string();
    ensure(
        is_name(name),
        &key,
        "name must be letters, digits, `_` or `-` (at most 64)",
    )?;
    match (&server.command, &server.url) {
        (Some(_), Some(_)) => {
            return Err((key, "has both `command` and `url`; pick one".into()));
        }
        (None, None) => {
            return Err((
                key,
                "needs `command` (stdio) or `url` (Streamable HTTP)".into(),
            ));
        }
        (Some(cmd), None) => ensure(
            !cmd.trim().is_empty(),
            format!("{key}.command"),
            "must not be empty",
        )?,
        (None, Some(url)) => ensure(
            is_http_url(url),
            format!("{key}.url"),
            format!("must be an http(s) URL (got `{url}`)"),
        )?,
    }
    if let Some(transport) = &server.transport {
        let fits = match transport.as_str() {
            "stdio" => server.command.is_some(),
            "http" | "streamable-http" | "streamableHttp" => server.url.is_some(),
            _ => false,
        };
        ensure(
            fits,
            format!("{key}.type"),
            format!(
                "`{transport}` does not fit this entry (stdio needs `command`, http needs `url`)"
            ),
        )?;
    }
    if let Some(timeout) = server.timeout {
        positive(&format!("{key}.timeout"), timeout)?;
    }
    Ok(())
}
