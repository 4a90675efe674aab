//! The process's own figures for `/health` `process` and `/metrics`: resident memory, CPU
//! time, open file descriptors (and their limit), threads. On Linux; elsewhere the fields are
//! `null`.
//!
//! `/health` must cost the server well under a millisecond of its own work, even while it is
//! saturated (the wait for a CPU comes on top), so a request reads only what costs a system call or one small file (CPU time from the process CPU-time clock,
//! resident memory from `/proc/self/statm`, the limit from `getrlimit`); the figures that walk
//! a directory with one entry per socket (`open_fds`) or parse a larger file (`threads`) are
//! sampled once a second by [`ProcessSampler::run`], off the request path.
//!
//! Beside the figures: the open-files limit the configured caps need ([`files`]).

pub mod files;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// How often the sampled figures are read again.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// "Not sampled yet" in a [`ProcessSampler`] field.
const UNKNOWN: u64 = u64::MAX;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessSnapshot {
    pub rss_bytes: Option<u64>,
    /// Private memory (`RssAnon`): resident pages that are not file-backed or shared, what
    /// the process itself costs. RSS also counts code pages the kernel may drop at any time.
    pub rss_anon_bytes: Option<u64>,
    /// User plus system CPU time since start.
    pub cpu_seconds: Option<f64>,
    /// Sampled at most a second ago.
    pub open_fds: Option<u64>,
    /// The soft limit on open files (each WebSocket is one).
    pub fd_limit: Option<u64>,
    /// Sampled at most a second ago.
    pub threads: Option<u64>,
}

impl ProcessSnapshot {
    /// The figures that are cheap to read now, with the sampled ones from `sampled`.
    pub fn quick(sampled: &ProcessSampler) -> Self {
        let known = |cell: &AtomicU64| Some(cell.load(Ordering::Relaxed)).filter(|v| *v != UNKNOWN);
        let (rss_bytes, rss_anon_bytes) = resident_bytes().unzip();
        Self {
            rss_bytes,
            rss_anon_bytes,
            cpu_seconds: cpu_seconds(),
            open_fds: known(&sampled.open_fds),
            fd_limit: fd_limit(),
            threads: known(&sampled.threads),
        }
    }
}

/// The latest sample of the figures that are too dear to read per request.
#[derive(Debug)]
pub struct ProcessSampler {
    open_fds: AtomicU64,
    threads: AtomicU64,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self {
            open_fds: AtomicU64::new(UNKNOWN),
            threads: AtomicU64::new(UNKNOWN),
        }
    }
}

impl ProcessSampler {
    /// Reads the figures now (on the calling thread).
    pub fn sample(&self) {
        let store = |cell: &AtomicU64, value: Option<u64>| {
            cell.store(value.unwrap_or(UNKNOWN), Ordering::Relaxed);
        };
        store(&self.open_fds, count_open_fds());
        store(&self.threads, count_threads());
    }

    /// Samples once a second until `cancel`, on a thread of its own (10,000 sockets are
    /// 10,000 entries to walk). Not on the runtime's blocking pool: a sample every second
    /// woke its idle threads in turn, so none ever reached its keep-alive and ended, and each
    /// kept its stack and its allocator cache.
    pub async fn run(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        // The thread samples until this sender is dropped: when cancelled, or when this future
        // is dropped with its task.
        let (keep_sampling, sampling_wanted) = std::sync::mpsc::channel::<()>();
        let (ended, has_ended) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("process-sampler".into())
            .stack_size(SAMPLER_STACK)
            .spawn(move || {
                sample_while_wanted(&self, &sampling_wanted);
                drop(ended);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for the process sampler: /health keeps the first open_fds and threads");
            return;
        }
        cancel.cancelled().await;
        drop(keep_sampling);
        let _ = has_ended.await;
    }
}

/// The sampler's stack: reading a directory and a small file needs little.
const SAMPLER_STACK: usize = 128 * 1024;

/// Samples every [`SAMPLE_EVERY`] until the sender of `wanted` is dropped.
fn sample_while_wanted(sampler: &ProcessSampler, wanted: &std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wanted.recv_timeout(SAMPLE_EVERY) {
        // A panic (it would be a bug) costs one sample, not the figures' updates for good.
        let _ = std::panic::catch_unwind(|| sampler.sample());
    }
}

fn count_open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64)
}

fn count_threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field(&status, "Threads:")
}

/// Resident bytes, all and private: `/proc/self/statm`'s resident pages, and those less its
/// shared ones (file-backed and shared memory), times the page size.
fn resident_bytes() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    let page = page_size()?;
    Some((resident * page, resident.saturating_sub(shared) * page))
}

fn page_size() -> Option<u64> {
    u64::try_from(rustix::param::page_size()).ok()
}

/// User plus system time of every thread, to the nanosecond (`/proc/self/stat` counts 10 ms
/// ticks): the process CPU-time clock.
#[cfg(unix)]
#[allow(clippy::unnecessary_wraps)] // `None` where there is no such clock
fn cpu_seconds() -> Option<f64> {
    use rustix::time::{ClockId, clock_gettime};
    let spent = clock_gettime(ClockId::ProcessCPUTime);
    #[allow(clippy::cast_precision_loss)] // seconds of CPU: far below 2^52
    let whole = spent.tv_sec as f64;
    #[allow(clippy::cast_precision_loss)]
    let nanos = spent.tv_nsec as f64;
    Some(whole + nanos / 1e9)
}

#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

/// The soft limit on open files.
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The number after `key` in `/proc/self/status` (`VmRSS:   1234 kB`).
fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_thread_stops_when_the_sender_is_dropped() {
        let sampler = std::sync::Arc::new(ProcessSampler::default());
        let (keep_sampling, sampling_wanted) = std::sync::mpsc::channel::<()>();
        let (ended, has_ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            sample_while_wanted(&sampler, &sampling_wanted);
            let _ = ended.send(());
        });
        drop(keep_sampling);
        // Waiting up to a second between samples, it is woken to stop at once; the limit only
        // keeps a broken build from hanging.
        assert!(has_ended.recv_timeout(Duration::from_secs(30)).is_ok());
        thread.join().expect("join");
    }

    #[tokio::test]
    async fn the_sampler_thread_ends_when_cancelled() {
        let sampler = std::sync::Arc::new(ProcessSampler::default());
        let cancel = CancellationToken::new();
        let running = tokio::spawn(sampler.run(cancel.clone()));
        cancel.cancel();
        // Waiting up to a second between samples, it is woken to stop at once; the limit only
        // keeps a broken build from hanging.
        tokio::time::timeout(Duration::from_secs(30), running)
            .await
            .expect("the sampler stopped")
            .expect("join");
    }

    #[test]
    fn proc_status_is_parsed() {
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(status_field(status, "Threads:"), Some(7));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn sampled_figures_are_unknown_until_sampled() {
        let sampler = ProcessSampler::default();
        let before = ProcessSnapshot::quick(&sampler);
        assert!(
            before.open_fds.is_none() && before.threads.is_none(),
            "{before:?}"
        );
        assert!(before.rss_bytes.unwrap_or(0) > 1024 * 1024, "{before:?}");
        sampler.sample();
        let after = ProcessSnapshot::quick(&sampler);
        assert!(after.open_fds.unwrap_or(0) >= 3, "{after:?}");
        assert!(after.threads.unwrap_or(0) >= 1, "{after:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_time_counts_microseconds() {
        let start = cpu_seconds().unwrap_or(0.0);
        let spin = std::time::Instant::now();
        let mut x = 0_u64;
        while spin.elapsed() < Duration::from_millis(3) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = cpu_seconds().unwrap_or(0.0) - start;
        // /proc's 10 ms ticks would often show 0 for 3 ms of spinning.
        assert!(spent > 0.0, "{spent}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_figures() {
        let sampler = ProcessSampler::default();
        sampler.sample();
        let now = ProcessSnapshot::quick(&sampler);
        assert!(now.rss_bytes.unwrap_or(0) > 1024 * 1024, "{now:?}");
        let private = now.rss_anon_bytes.unwrap_or(0);
        assert!(private > 0 && Some(private) < now.rss_bytes, "{now:?}");
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
