//! How a thread that does little per wakeup and must answer promptly (the HTTP front, the
//! load tester's `/health` sampler) is scheduled while the rest of the process saturates the
//! CPUs.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
