//! The open-files limit: what the configured caps need, raised at start.

/// Files the configured caps may need open at once: every WebSocket and HTTP connection, each
/// provider's pool, plus `headroom` for the database, MCP servers' pipes and logs.
pub fn files_needed(config: &crate::config::Config, headroom: u64) -> u64 {
    let providers: u64 = config
        .llm
        .providers
        .values()
        .map(|p| u64::from(p.http_client.max_connections))
        .sum();
    config.chat.websocket.max_connections as u64
        + config.server.http.max_connections as u64
        + providers
        + headroom
}

/// What happened to the open-files limit at start.
#[derive(Debug, PartialEq, Eq)]
pub enum FilesLimit {
    /// The soft limit already covered the need.
    Enough {
        soft: u64,
    },
    Raised {
        from: u64,
        to: u64,
    },
    /// The hard limit is below the need: raised to it, and the caps may not all be reachable.
    Short {
        hard: u64,
        needed: u64,
    },
}

/// Raises the soft open-files limit to what the caps need (not blindly to the hard limit: a
/// runaway would exhaust the system's descriptors before our own caps stop it).
pub fn raise_open_files_limit(needed: u64) -> std::io::Result<FilesLimit> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(FilesLimit::Enough { soft });
    }
    let to = needed.min(hard);
    limit.current = Some(to);
    setrlimit(Resource::Nofile, limit)?;
    if to < needed {
        return Ok(FilesLimit::Short { hard, needed });
    }
    Ok(FilesLimit::Raised { from: soft, to })
}
