//! The process's own figures for `/health` `process` and `/metrics`: resident memory, CPU
//! time, open file descriptors (and their limit), threads. On Linux; elsewhere the fields are
//! `null`.
//!
//! `/health` must answer in well under a millisecond while the server is saturated, so a
//! request reads only what costs a system call or one small file (CPU time from `getrusage`,
//! resident memory from `/proc/self/statm`, the limit from `getrlimit`); the figures that walk
//! a directory with one entry per socket (`open_fds`) or parse a larger file (`threads`) are
//! sampled once a second by [`ProcessSampler::run`], off the request path.

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
        Self {
            rss_bytes: rss_bytes(),
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

/// Resident pages (the second field of `/proc/self/statm`) times the page size.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size()?)
}

fn page_size() -> Option<u64> {
    u64::try_from(rustix::param::page_size()).ok()
}

/// User plus system time of every thread, to the microsecond (`/proc/self/stat` counts 10 ms
/// ticks).
#[cfg(unix)]
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given, which points to
    // memory of that type; the struct is read only when the call succeeded.
    #[allow(unsafe_code)]
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| {
        #[allow(clippy::cast_precision_loss)] // seconds of CPU: far below 2^52
        let whole = t.tv_sec as f64;
        #[allow(clippy::cast_precision_loss)]
        let micros = t.tv_usec as f64;
        whole + micros / 1e6
    };
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
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

/// The time slice [`prefer_prompt_wakeups`] asks for (Linux's default is 0.75 ms times
/// 1 + log2(CPUs)): accepting a connection or answering a probe takes a fraction of it.
pub const PROMPT_SLICE: Duration = Duration::from_micros(300);

/// How a thread that must answer promptly ended up scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promptness {
    /// `SCHED_FIFO` priority 1: it runs as soon as it wakes, before every normal thread.
    Realtime,
    /// A normal thread with a short time slice ([`PROMPT_SLICE`]).
    ShortSlice,
    /// Neither was granted (not Linux, or an old kernel).
    Unchanged,
}

/// For a thread that does little per wakeup and must answer promptly while the rest of the
/// process saturates the CPUs (the HTTP front, which answers the probes; the load tester's
/// `/health` sampler): real-time priority when `realtime` and the process may have it, else
/// short time slices ([`prefer_prompt_wakeups`]).
///
/// On a saturated 2-vCPU VM a short slice is not enough: a probe's thread still waited for a
/// CPU in ~5% of requests (`/health` p99 4-5 ms), while `SCHED_FIFO` 1 gave 1.0-1.3 ms. The
/// lowest real-time priority is asked for, and threads this one starts revert to normal
/// (`SCHED_RESET_ON_FORK`). Linux keeps 5% of every second for normal threads even if a
/// real-time one spins (`sched_rt_runtime_us`), and this one sleeps between requests.
pub fn schedule_promptly(realtime: bool) -> Promptness {
    if realtime && set_attributes(libc::SCHED_FIFO, 1, Duration::ZERO) {
        Promptness::Realtime
    } else if prefer_prompt_wakeups(PROMPT_SLICE) {
        Promptness::ShortSlice
    } else {
        Promptness::Unchanged
    }
}

/// Asks the kernel for short time slices for the calling thread: Linux's scheduler (EEVDF, 6.12
/// and later) gives a normal thread that asked for a short slice (`sched_attr.sched_runtime`)
/// an early deadline, so when it wakes it runs before, and preempts, threads that use their
/// default slices. Its niceness is kept. Whether the kernel took it (an older one ignores the
/// field, harmlessly).
pub fn prefer_prompt_wakeups(slice: Duration) -> bool {
    set_attributes(libc::SCHED_OTHER, 0, slice)
}

/// `sched_setattr` on the calling thread: `policy` at `priority` (real-time policies), or a
/// normal thread asking for `slice`; niceness kept; children revert to normal scheduling.
#[cfg(target_os = "linux")]
fn set_attributes(policy: libc::c_int, priority: u32, slice: Duration) -> bool {
    /// `struct sched_attr` as far as `SCHED_ATTR_SIZE_VER0`.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
    // SAFETY: getpriority has no memory effects. sched_setattr reads one `sched_attr` of the
    // size written in it from the pointer, which points to such a struct alive for the call;
    // pid 0 is the calling thread.
    #[allow(unsafe_code)]
    let done = unsafe {
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        let attr = SchedAttr {
            size: u32::try_from(std::mem::size_of::<SchedAttr>()).unwrap_or(48),
            policy: u32::try_from(policy).unwrap_or(0),
            flags: SCHED_FLAG_RESET_ON_FORK,
            nice,
            priority,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            deadline: 0,
            period: 0,
        };
        libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) == 0
    };
    done
}

#[cfg(not(target_os = "linux"))]
fn set_attributes(_policy: libc::c_int, _priority: u32, _slice: Duration) -> bool {
    false
}

/// Tells when a server has gone quiet: fed a count that grows with activity (writes, sockets,
/// frames, turns) at a steady period, it answers `true` when the count has been still for
/// one of `steps` periods in a row (each step once per quiet spell; start counts as activity).
#[derive(Debug)]
pub struct QuietWatch {
    steps: Vec<u32>,
    last: Option<u64>,
    still: u32,
}

impl QuietWatch {
    pub fn new(steps: Vec<u32>) -> Self {
        Self {
            steps,
            last: None,
            still: 0,
        }
    }

    /// Records the activity count now (`busy`: work in progress, whatever the count says);
    /// `true` when memory should be released.
    pub fn observe(&mut self, activity: u64, busy: bool) -> bool {
        if self.last == Some(activity) && !busy {
            self.still = self.still.saturating_add(1);
        } else {
            self.last = Some(activity);
            self.still = 0;
        }
        self.steps.contains(&self.still)
    }
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
    fn a_quiet_watch_answers_at_each_step_of_a_quiet_spell() {
        let mut watch = QuietWatch::new(vec![2, 4]);
        // Start counts as activity: still for two checks, then for four.
        let seen: Vec<bool> = [0; 6].iter().map(|&n| watch.observe(n, false)).collect();
        assert_eq!(seen, [false, false, true, false, true, false]);
        // Busy: never while the count moves; quiet again two checks after it stops.
        let seen: Vec<bool> = [5, 9, 12, 12, 12, 13, 13, 13]
            .iter()
            .map(|&n| watch.observe(n, false))
            .collect();
        assert_eq!(seen, [false, false, false, false, true, false, false, true]);
        // Work in progress (a long tool call, a slow model) is never quiet.
        let seen: Vec<bool> = [true, true, true, false, false]
            .iter()
            .map(|&busy| watch.observe(13, busy))
            .collect();
        assert_eq!(seen, [false, false, false, false, true]);
    }

    /// On a thread of its own: the request and the niceness set here stay with it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_short_slice_keeps_the_thread_niceness() {
        std::thread::spawn(|| {
            // Raising one's own niceness needs no privilege.
            // SAFETY: setpriority has no memory effects; 0 is the calling thread.
            #[allow(unsafe_code)]
            let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 7) };
            assert_eq!(set, 0);
            let took = prefer_prompt_wakeups(PROMPT_SLICE);
            // Field 19 of /proc/<tid>/stat is the niceness (after the parenthesised name).
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .expect("name")
                .1
                .split_whitespace()
                .collect();
            assert_eq!(fields[16], "7", "niceness kept (short slice taken: {took})");
        })
        .join()
        .expect("thread");
    }

    /// The policy of the calling thread (`SCHED_OTHER`, `SCHED_FIFO`, ...).
    #[cfg(target_os = "linux")]
    fn policy() -> libc::c_int {
        // SAFETY: sched_getscheduler has no memory effects; 0 is the calling thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::sched_getscheduler(0)
        }
    }

    /// Real-time where the process may have it (the tests run as root here), else the short
    /// slice; either way the threads it starts are normal ones.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_prompt_thread_is_realtime_when_allowed_and_its_children_are_not() {
        std::thread::spawn(|| {
            let scheduled = schedule_promptly(true);
            let expected = match scheduled {
                Promptness::Realtime => libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
                Promptness::ShortSlice => libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK,
                Promptness::Unchanged => libc::SCHED_OTHER,
            };
            assert_eq!(policy(), expected, "{scheduled:?}");
            let child = std::thread::spawn(policy).join().expect("child");
            assert_eq!(child, libc::SCHED_OTHER, "reset on fork");
        })
        .join()
        .expect("thread");
        std::thread::spawn(|| {
            assert_ne!(schedule_promptly(false), Promptness::Realtime);
            assert_eq!(policy() & !libc::SCHED_RESET_ON_FORK, libc::SCHED_OTHER);
        })
        .join()
        .expect("thread");
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
