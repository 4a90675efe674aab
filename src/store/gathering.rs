//! A meeting point for a known number of threads, with a limit on the wait: how each of a
//! lane's workers comes to take exactly one of the jobs queued for all of them (a worker
//! waiting here cannot take another).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

pub struct Gathering {
    /// Threads not arrived yet.
    missing: Mutex<usize>,
    everyone_here: Condvar,
}

impl Gathering {
    pub fn new(expected: usize) -> Self {
        Self {
            missing: Mutex::new(expected),
            everyone_here: Condvar::new(),
        }
    }

    /// Counts the calling thread in and waits until every expected thread has, or `limit`
    /// has passed; true if everyone arrived.
    pub fn arrive_and_wait(&self, limit: Duration) -> bool {
        let mut missing = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        *missing = missing.saturating_sub(1);
        if *missing == 0 {
            self.everyone_here.notify_all();
            return true;
        }
        let (missing, _) = self
            .everyone_here
            .wait_timeout_while(missing, limit, |missing| *missing > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *missing == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn everyone_leaves_once_the_last_arrives() {
        let gathering = Arc::new(Gathering::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let gathering = gathering.clone();
                std::thread::spawn(move || gathering.arrive_and_wait(Duration::from_secs(60)))
            })
            .collect();
        for thread in threads {
            assert!(thread.join().expect("join"), "everyone arrived");
        }
    }

    #[test]
    fn a_thread_stops_waiting_for_one_that_never_comes() {
        let gathering = Gathering::new(2);
        assert!(!gathering.arrive_and_wait(Duration::from_millis(20)));
    }
}
