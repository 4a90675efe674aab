//! Failed credential attempts per client address: past `max_failures_per_minute` in a fixed
//! one-minute window, the address gets 429 until the window ends, whatever it sends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; past it, finished windows are dropped first.
const MAX_TRACKED: usize = 100_000;

pub struct Throttle {
    max_failures: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` while `address` is throttled.
    pub fn check(&self, address: IpAddr) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        match windows.get(&address) {
            Some((start, failures)) if *failures >= self.max_failures => {
                let left = WINDOW.saturating_sub(start.elapsed());
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs() + 1)
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt from `address`.
    pub fn failed(&self, address: IpAddr) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let entry = windows.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_its_failures_and_others_are_not() {
        let throttle = Throttle::new(3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(throttle.check(a).is_ok());
            throttle.failed(a);
        }
        let wait = throttle.check(a).expect_err("throttled");
        assert!((59..=60).contains(&wait), "{wait}");
        assert!(throttle.check(b).is_ok());
    }
}
