//! Memory the allocator keeps after the work that needed it, given back when the server goes
//! quiet. glibc's malloc keeps freed memory in two places: its arenas, whose whole free pages
//! `malloc_trim` returns ([`release_free_memory`]), and a per-thread cache of recently freed
//! small blocks (its "tcache": up to 7 blocks of each size up to 1 KiB) that nothing empties
//! while the thread lives. After a burst, each runtime thread's cache holds blocks freed at the
//! peak, scattered over the whole height its arena reached; each keeps its page resident, so
//! trimming left ~4 MB more than before the burst on 2 runtime threads (and none with the cache
//! turned off, `GLIBC_TUNABLES=glibc.malloc.tcache_count=0`, which costs every allocation).
//!
//! A thread cannot empty its cache, but it can renew it ([`release_thread_cache`]): take its
//! blocks out, take as many fresh ones from the arena, and free the fresh ones first, so that
//! they fill the cache and the old ones go back to the arena, where they join their free
//! neighbours and `malloc_trim` can return their pages. Only the thread itself can do this, so
//! a quiet server asks ([`ask_threads_to_release`]) and each thread that worked does it the
//! next time it goes idle ([`release_if_asked`]: the runtimes' park hook, and the store's
//! threads after the job that leaves their queue empty). Everything here is plain
//! `malloc` and `free`: on another allocator it gives nothing back and costs a few microseconds.

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

/// Renews this thread's cache of freed blocks and trims the arenas, once per request since the
/// thread last did; otherwise one atomic load. For idle moments: the runtimes' park hooks.
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

/// glibc's cache keeps this many blocks of each size (`tcache_count`'s default)...
const CACHED_PER_SIZE: usize = 7;
/// ...for requests of up to this many bytes (`tcache_max`'s default), in size classes 16 bytes
/// apart; 24 bytes is the smallest class's largest request.
const CACHED_SIZES: std::ops::RangeInclusive<usize> = 24..=1032;

/// Replaces the blocks in this thread's allocator cache by fresh ones from the arena (see the
/// module's note): per size class, takes the cached blocks out, takes as many fresh, frees the
/// fresh first (they refill the cache) and the old ones last (the cache is full, so they go to
/// the arena). Plain allocations and frees, safe on any allocator.
pub fn release_thread_cache() {
    for size in CACHED_SIZES.step_by(16) {
        let old: [Vec<u8>; CACHED_PER_SIZE] = std::array::from_fn(|_| Vec::with_capacity(size));
        let fresh: [Vec<u8>; CACHED_PER_SIZE] = std::array::from_fn(|_| Vec::with_capacity(size));
        // Without this the compiler may see allocations nobody uses and leave them out.
        drop(std::hint::black_box(fresh));
        drop(std::hint::black_box(old));
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
}
