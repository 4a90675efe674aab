//! Memory the allocator keeps after the work that needed it. glibc's malloc keeps freed
//! memory in its arenas and returns it to the system only from the top of each; after a
//! burst of connections closes, the resident size would stay at its peak. Two calls keep it
//! down, both plain glibc API and both no-ops on other allocators: [`release_free_memory`]
//! (`malloc_trim`), which the server calls when it goes quiet (`crate::app`), returns every
//! whole free page inside every arena; [`keep_arena_tops_small`] (`mallopt`), called once at
//! start, stops glibc from raising its trim threshold as the program frees large blocks (to
//! twice the largest unmapped, up to 64 MiB) and from keeping a 128 KiB pad at each arena's
//! top, as `MALLOC_TRIM_THRESHOLD_=131072 MALLOC_TOP_PAD_=0` would. Without it each of a
//! server's threads kept hundreds of kilobytes at its arena's top for good.

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
