//! A provider's request limits, enforced: at most `concurrent_requests` in flight and at most
//! `requests_per_minute` started per rolling minute, spaced evenly (a GCRA limiter from
//! `governor`, burst 1). Waiting for both is bounded by `pool_timeout`.
//!
//! The limiter reads tokio's clock, so tests can drive it with a paused clock.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::stats::Gauge;

/// governor's view of tokio's clock: time since the limiter was made.
#[derive(Clone)]
struct TokioClock(Instant);

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Concurrency,
    Rate { retry_after: Duration },
}

/// A request slot; the request may run while it is held (for a stream, until it ends).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub struct Limits {
    concurrency: Arc<Semaphore>,
    pub concurrent_limit: u32,
    pub rpm_limit: u32,
    rate: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    clock: TokioClock,
    pool_timeout: Duration,
    waiting: Gauge,
}

impl Limits {
    pub fn new(concurrent_requests: u32, requests_per_minute: u32, pool_timeout: Duration) -> Self {
        let clock = TokioClock(Instant::now());
        let rpm = NonZeroU32::new(requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rpm).allow_burst(NonZeroU32::MIN);
        Self {
            concurrency: Arc::new(Semaphore::new(concurrent_requests.max(1) as usize)),
            concurrent_limit: concurrent_requests,
            rpm_limit: requests_per_minute,
            rate: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            pool_timeout,
            waiting: Gauge::default(),
        }
    }

    /// Waits for a concurrency slot and a rate token, at most `pool_timeout` in all. A rate
    /// wait that would end past the deadline fails at once rather than sleeping first.
    pub async fn acquire(&self) -> Result<Slot, Refused> {
        let deadline = Instant::now() + self.pool_timeout;
        let _waiting = self.waiting.enter();
        let permit = tokio::time::timeout_at(deadline, self.concurrency.clone().acquire_owned())
            .await
            .map_err(|_| Refused::Concurrency)?
            .map_err(|_| Refused::Concurrency)?;
        loop {
            match self.rate.check() {
                Ok(()) => return Ok(Slot { _permit: permit }),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if Instant::now() + wait > deadline {
                        return Err(Refused::Rate { retry_after: wait });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        (self.concurrent_limit as usize).saturating_sub(self.concurrency.available_permits())
    }

    pub fn waiting(&self) -> usize {
        self.waiting.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_requests_evenly() {
        let limits = Limits::new(10, 60, Duration::from_secs(30));
        let start = Instant::now();
        let mut admitted = Vec::new();
        for _ in 0..5 {
            drop(limits.acquire().await.expect("admitted"));
            admitted.push((Instant::now() - start).as_millis());
        }
        assert_eq!(admitted, vec![0, 1000, 2000, 3000, 4000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_wait_past_the_pool_timeout_is_refused_at_once() {
        let limits = Limits::new(10, 6, Duration::from_secs(5));
        let _first = limits.acquire().await.expect("first");
        let before = Instant::now();
        let refused = limits.acquire().await.err().expect("refused");
        assert_eq!(
            refused,
            Refused::Rate {
                retry_after: Duration::from_secs(10)
            }
        );
        assert_eq!(Instant::now(), before, "no sleep before refusing");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped_and_a_waiter_times_out() {
        let limits = Arc::new(Limits::new(2, 6000, Duration::from_millis(500)));
        let a = limits.acquire().await.expect("a");
        let _b = limits.acquire().await.expect("b");
        assert_eq!(limits.in_flight(), 2);
        assert_eq!(limits.acquire().await.err(), Some(Refused::Concurrency));
        drop(a);
        assert!(limits.acquire().await.is_ok(), "a freed slot is taken");
    }
}
