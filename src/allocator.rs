//! Memory the allocator keeps after the work that needed it, given back when the server goes
//! quiet. glibc's malloc keeps freed memory in two places: its arenas, whose whole free pages
//! `malloc_trim` returns ([`release_free_memory`]), and a per-thread cache of recently freed
//! small blocks (its "tcache": up to 7 blocks of each size up to 1 KiB) that nothing empties
//! while the thread lives. After a burst, a busy thread's cache holds blocks freed at the peak,
//! scattered over the whole height its arena reached; each keeps its page resident, so trimming
//! alone left ~4 MB more than before a 1,000-connection burst (~1.7 MB with the cache turned
//! off by `GLIBC_TUNABLES=glibc.malloc.tcache_count=0`, which costs every allocation).
//!
//! A thread cannot empty its own cache by freeing: a block it frees goes back into it. But a
//! block it takes out can be freed by another thread, and a thread that ends gives its whole
//! cache back to the arenas. So [`release_thread_cache`] takes this thread's cached blocks out
//! and hands them to a thread that frees them and ends; the cache is left empty, the blocks
//! join their free neighbours in the arena, and `malloc_trim` can return their pages. Only the
//! thread itself can take its blocks out, so a quiet server asks ([`ask_threads_to_release`])
//! and each thread that worked does it the next time it goes idle ([`release_if_asked`]: the
//! runtimes' park hooks, and the store's threads after the job that leaves their queue
//! empty). Everything here is plain `malloc` and `free`: on another allocator it gives nothing
//! back and costs a thread start.
//!
//! The blocks go back to the arenas; what the arenas return is the third part. `malloc_trim`
//! returns the whole free pages inside every arena, but the free space at the top of an arena
//! other than the main one (each thread past the first gets one) only when a free leaves more
//! there than the trim threshold, and then keeps a pad of 128 KiB; and glibc raises that
//! threshold as the program frees large blocks (to twice the largest unmapped, up to 64 MiB).
//! A server's threads then each kept hundreds of kilobytes at their arena's top for good.
//! [`keep_arena_tops_small`] holds the threshold at glibc's default, 128 KiB, and the pad at
//! none, as `MALLOC_TRIM_THRESHOLD_=131072 MALLOC_TOP_PAD_=0` would.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped by each request to give memory back; each thread remembers the last it served.
static ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

/// Asks every thread that calls [`release_if_asked`] to give its cached blocks back the next
/// time it does.
pub fn ask_threads_to_release() {
    ASKED.fetch_add(1, Ordering::Relaxed);
}

/// Empties this thread's cache of freed blocks and trims the arenas, once per request since
/// the thread last did; otherwise one atomic load. For idle moments: the runtimes' park hooks.
pub fn release_if_asked() {
    let asked = ASKED.load(Ordering::Relaxed);
    let due = SERVED.with(|served| served.replace(asked) != asked);
    if due {
        release_thread_cache();
        release_free_memory();
    }
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

/// glibc's default trim threshold, kept from start on by [`keep_arena_tops_small`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Holds glibc's trim threshold at its default and its top pad at none (see the module's
/// note), each unless the environment sets it (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, or
/// in `GLIBC_TUNABLES`). This also holds the size from which blocks get a mapping of their own
/// at its default, 128 KiB. Measured side by side at 1 and 100 connections: the same system
/// calls per turn within a handful per thousand turns (`brk`, `madvise`). Call once at start.
/// A no-op on other allocators.
pub fn keep_arena_tops_small() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let unset = |variable: &str, tunable: &str| {
            std::env::var_os(variable).is_none() && !tunables.contains(tunable)
        };
        if unset("MALLOC_TRIM_THRESHOLD_", "trim_threshold") {
            set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
        if unset("MALLOC_TOP_PAD_", "top_pad") {
            set(libc::M_TOP_PAD, 0);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(parameter: i32, value: i32) {
    // SAFETY: mallopt only sets one of glibc's parameters under its own lock; it has no
    // preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(parameter, value);
    }
}

/// glibc's cache keeps this many blocks of each size (`tcache_count`'s default)...
const CACHED_PER_SIZE: usize = 7;
/// ...for requests of up to this many bytes (`tcache_max`'s default), in size classes 16 bytes
/// apart; 24 bytes is the smallest class's largest request.
const CACHED_SIZES: std::ops::RangeInclusive<usize> = 24..=1032;
/// The freeing thread's stack: it only frees.
const FREEING_STACK: usize = 64 * 1024;

/// Empties this thread's cache of freed blocks (see the module's note): takes out as many
/// blocks of each cached size as the cache can hold, which come from the cache first, and
/// frees them on a thread that ends right after, so that they go back to their arenas (the
/// cache is then empty but for the few small blocks starting that thread freed here).
/// Returns the number of blocks handed over: 0 if no thread could be started (the blocks are
/// then freed here, back into the cache, and nothing is lost), and always 0 on other
/// allocators than glibc's, where it does nothing.
pub fn release_thread_cache() -> usize {
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        hand_cached_blocks_over()
    } else {
        0
    }
}

fn hand_cached_blocks_over() -> usize {
    let blocks: Vec<Vec<u8>> = CACHED_SIZES
        .step_by(16)
        .flat_map(|size| (0..CACHED_PER_SIZE).map(move |_| Vec::with_capacity(size)))
        .collect();
    // Without this the compiler may see allocations nobody uses and leave them out.
    let blocks = std::hint::black_box(blocks);
    let count = blocks.len();
    let freeing = std::thread::Builder::new()
        .name("mem-release".into())
        .stack_size(FREEING_STACK)
        .spawn(move || drop(blocks));
    match freeing.map(std::thread::JoinHandle::join) {
        Ok(Ok(())) => count,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_releases_once_per_request() {
        // The counter is process-wide and other tests may ask too: compare with this thread's
        // own record, which only this thread changes.
        let served = || SERVED.with(Cell::get);
        release_if_asked();
        let before = served();
        ask_threads_to_release();
        release_if_asked();
        let after = served();
        assert!(after > before, "served {after} after {before}");
        // A second call without a new request changes nothing.
        release_if_asked();
        assert!(served() >= after);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_cached_blocks_are_handed_to_a_thread_that_frees_them() {
        // Every size class the cache holds, as many blocks as it holds of each.
        assert_eq!(release_thread_cache(), 64 * CACHED_PER_SIZE);
    }
}
