//! A circuit breaker per provider: `Closed` counts consecutive outages; at the threshold it goes
//! `Open` and fails fast until `open_for` has passed; then `HalfOpen` lets exactly one probe
//! through, whose outcome closes or reopens it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Normal,
    /// The single request allowed while half-open; its outcome decides the state.
    Probe,
}

pub struct CircuitBreaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // The state is plain data; a panic elsewhere cannot leave it half-updated.
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Lets a request through, or says how long until the circuit may let one through.
    pub fn admit(&self) -> Result<Pass, Duration> {
        let now = Instant::now();
        let open_for = self.open_for;
        self.with(|state| match *state {
            State::Closed { .. } => Ok(Pass::Normal),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { probing: true };
                Ok(Pass::Probe)
            }
            State::Open { until } => Err(until - now),
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(Pass::Probe)
            }
            State::HalfOpen { probing: true } => Err(open_for.min(Duration::from_secs(1))),
        })
    }

    pub fn on_success(&self) {
        self.with(|state| *state = State::Closed { failures: 0 });
    }

    /// An outage (connect error, timeout, 5xx, broken stream).
    pub fn on_failure(&self) {
        let until = Instant::now() + self.open_for;
        let threshold = self.threshold;
        self.with(|state| {
            *state = match *state {
                State::Closed { failures } if failures + 1 < threshold => State::Closed {
                    failures: failures + 1,
                },
                State::Closed { .. } | State::HalfOpen { .. } => State::Open { until },
                open @ State::Open { .. } => open,
            };
        });
    }

    /// A request that ended without saying anything about the provider's health (a 400, a
    /// cancelled request): a probe's slot is given back.
    pub fn on_neutral(&self, pass: Pass) {
        if pass == Pass::Probe {
            self.with(|state| {
                if *state == (State::HalfOpen { probing: true }) {
                    *state = State::HalfOpen { probing: false };
                }
            });
        }
    }

    pub fn state_name(&self) -> &'static str {
        self.with(|state| match state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_at_the_threshold_probes_once_and_closes_on_success() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            breaker.on_failure();
        }
        assert_eq!(breaker.state_name(), "closed");
        breaker.on_failure();
        assert_eq!(breaker.state_name(), "open");
        assert_eq!(breaker.admit(), Err(Duration::from_secs(30)));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.admit(), Ok(Pass::Probe));
        assert_eq!(breaker.state_name(), "half_open");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.on_success();
        assert_eq!(breaker.state_name(), "closed");
        assert_eq!(breaker.admit(), Ok(Pass::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_the_circuit() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(10));
        breaker.on_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.admit(), Ok(Pass::Probe));
        breaker.on_failure();
        assert_eq!(breaker.state_name(), "open");
        assert_eq!(breaker.admit(), Err(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_neutral_probe_gives_its_slot_back() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
        breaker.on_failure();
        tokio::time::advance(Duration::from_secs(5)).await;
        let pass = breaker.admit().expect("probe");
        breaker.on_neutral(pass);
        assert_eq!(breaker.admit(), Ok(Pass::Probe));
    }

    #[tokio::test]
    async fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(5));
        breaker.on_failure();
        breaker.on_success();
        breaker.on_failure();
        assert_eq!(breaker.state_name(), "closed");
    }
}
