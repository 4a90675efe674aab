//! Memory given back when the server goes quiet (`database.sqlite.release_memory_when_quiet`):
//! the store's caches and the allocator's free pages, once the server has seen no activity for
//! that long, and again once idle provider connections have closed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{App, every};
use crate::chat::ChatService;
use crate::http;
use crate::store::Store;

/// Gives memory back when the server goes quiet (`release_memory_when_quiet`), and again
/// once idle provider connections have closed: they close after their keep-alive (hyper
/// looks every keep-alive period), so twice the longest keep-alive later.
pub(super) fn spawn(
    app: &App,
    tasks: &TaskTracker,
    sockets: &Arc<http::Sockets>,
    cancel: &CancellationToken,
) {
    let quiet = app.config.database.sqlite().release_memory_when_quiet;
    if quiet.is_zero() {
        return;
    }
    let keepalive = app
        .config
        .llm
        .providers
        .values()
        .map(|p| p.http_client.keepalive_expiry)
        .max()
        .unwrap_or_default();
    let activity = Activity {
        store: app.store.clone(),
        sockets: sockets.clone(),
        chat: app.chat.clone(),
    };
    let later = quiet.saturating_add(keepalive.saturating_mul(2));
    tasks.spawn(release_memory_when_quiet(
        activity,
        [quiet, later],
        cancel.child_token(),
    ));
}

/// What tells a quiet server from a busy one.
struct Activity {
    store: Store,
    sockets: Arc<http::Sockets>,
    chat: Arc<ChatService>,
}

impl Activity {
    /// A count that grows with writes, sockets opened and closed, frames, turns started and
    /// ended and tool calls (either door); and whether a socket's turn is running now.
    fn now(&self) -> (u64, bool) {
        let count = self
            .store
            .writes_committed()
            .wrapping_add(self.sockets.activity())
            .wrapping_add(self.chat.turn_events());
        (count, self.sockets.live_turns() > 0)
    }
}

/// Once the server has been quiet for `after[0]` (no write committed, no socket opened or
/// closed, no frame, no turn started, ended or running), and again at `after[1]`, gives back
/// the memory it held for speed and for the work just done: the store's caches, then every
/// free page of the allocator.
async fn release_memory_when_quiet(
    activity: Activity,
    after: [Duration; 2],
    cancel: CancellationToken,
) {
    let period = (after[0] / 2).max(Duration::from_millis(50));
    let checks = |quiet: Duration| {
        u32::try_from(quiet.as_millis().div_ceil(period.as_millis()))
            .unwrap_or(u32::MAX)
            .max(1)
    };
    let mut watch = QuietWatch::new(after.iter().map(|&d| checks(d)).collect());
    every(period, cancel, move || {
        let (count, busy) = activity.now();
        let release = watch.observe(count, busy).then(|| activity.store.clone());
        async move {
            let Some(store) = release else { return };
            match store.release_memory().await {
                Ok(connections) => tracing::debug!(connections, "quiet: caches released"),
                Err(error) => tracing::warn!(%error, "releasing the store's caches failed"),
            }
            // Here, not on a blocking thread: starting one would cost more than it gives back
            // (a quiet server's runtime has little else to do).
            crate::allocator::release_free_memory();
        }
    })
    .await;
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
}
