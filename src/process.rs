//! The process's own figures for `/health` `process` and `/metrics`: resident memory, CPU
//! time, open file descriptors (and their limit), threads. Read from `/proc/self` on Linux;
//! elsewhere the fields are `null`.

use serde::Serialize;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessSnapshot {
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time since start.
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files (each WebSocket is one).
    pub fd_limit: Option<u64>,
    pub threads: Option<u64>,
}

impl ProcessSnapshot {
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self {
            rss_bytes: status_field(&status, "VmRSS:").map(|kib| kib * 1024),
            cpu_seconds: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|stat| cpu_seconds(&stat)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            fd_limit: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|limits| fd_limit(&limits)),
            threads: status_field(&status, "Threads:"),
        }
    }
}

/// The number after `key` in `/proc/self/status` (`VmRSS:   1234 kB`).
fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime (fields 14 and 15) of `/proc/self/stat`; the command name in parentheses may
/// hold spaces, so fields are counted after its closing parenthesis.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // ticks since start: far below 2^52
    Some((utime + stime) as f64 / USER_HZ)
}

/// Gives the allocator's free pages back to the system. glibc keeps the memory of freed
/// objects in its arenas and returns it only from the top of each heap, so after thousands of
/// sockets close the resident size would stay at its peak; `malloc_trim` releases every whole
/// free page (it is reused either way). A no-op on other allocators.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_formats_are_parsed() {
        let stat = "4242 (mcp platform) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 100 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(status_field(status, "Threads:"), Some(7));
        let limits = "Limit Soft Hard Units\nMax open files            1024                 524288               files\n";
        assert_eq!(fd_limit(limits), Some(1024));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_figures() {
        let now = ProcessSnapshot::read();
        assert!(now.rss_bytes.unwrap_or(0) > 1024 * 1024, "{now:?}");
        assert!(
            now.threads.unwrap_or(0) >= 1 && now.open_fds.unwrap_or(0) >= 3,
            "{now:?}"
        );
        assert!(
            now.fd_limit.unwrap_or(0) > 0 && now.cpu_seconds.is_some(),
            "{now:?}"
        );
    }
}

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
