//! The pool figures `/health` shows without r2d2's lock: r2d2 counts its connections under the
//! mutex every checkout takes, which a `/health` request must not wait on while the database
//! threads are busy. The lane's workers count them instead, off the request path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::connection::Pool;

/// A pool's open connections as its lane's workers last counted them: read at most every
/// [`POOL_STATE_EVERY`] while the lane is busy, and after every job that leaves the queue
/// empty.
pub(super) struct SeenPoolState {
    open: AtomicU32,
    born: Instant,
    /// When it was read, in milliseconds since `born`.
    at_ms: AtomicU64,
}

pub(super) const POOL_STATE_EVERY: Duration = Duration::from_millis(100);

impl SeenPoolState {
    pub(super) fn new(pool: &Pool) -> Self {
        let seen = Self {
            open: AtomicU32::new(0),
            born: Instant::now(),
            at_ms: AtomicU64::new(0),
        };
        seen.read(pool);
        seen
    }

    pub(super) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    fn read(&self, pool: &Pool) {
        self.open.store(pool.state().connections, Ordering::Relaxed);
        self.at_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Reads it again if the lane went idle or the last reading is old.
    pub(super) fn refresh(&self, pool: &Pool, idle: bool) {
        let old = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.at_ms.load(Ordering::Relaxed)),
        ) >= POOL_STATE_EVERY;
        if idle || old {
            self.read(pool);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
