//! Live figures for `/health`: a lock-free latency histogram, gauges, and a cache's counts.
//! Each component owns its own instances (the store its pool waits, the WebSocket layer its
//! turn latencies); this module only provides the types.
//!
//! The histogram keeps counts in log-linear buckets (8 per power of two, so a reported
//! percentile is within 12.5% of the true value) over microseconds, from 1 µs to days.
//! Recording is two relaxed atomic adds; reading walks 312 counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

const LINEAR: usize = 16;
const SUB_BUCKETS: usize = 8;
const MAX_EXP: usize = 40;
const BUCKETS: usize = LINEAR + (MAX_EXP - 3) * SUB_BUCKETS;

/// A cache's figures: hits and misses since start, entries now, and its capacity.
#[derive(Debug, Clone, Serialize)]
pub struct CacheSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
}

/// Cumulative latency distribution since start.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

/// A histogram read out in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Ordering::Relaxed);
        let quantile = |q: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            // The rank of the q-quantile, 1-based; the bucket holding it gives the value.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return us_to_ms(bucket_value(index).min(max_us));
                }
            }
            us_to_ms(max_us)
        };
        let count = self.count.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let mean = if count == 0 {
            0.0
        } else {
            us_to_ms(self.sum_us.load(Ordering::Relaxed)) / count as f64
        };
        LatencySummary {
            count,
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max: us_to_ms(max_us),
            mean: round3(mean),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR as u64 {
        #[allow(clippy::cast_possible_truncation)]
        return us as usize;
    }
    let exp = us.ilog2() as usize; // >= 4 here
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    #[allow(clippy::cast_possible_truncation)]
    let sub = ((us >> (exp - 3)) & 7) as usize;
    LINEAR + (exp - 4) * SUB_BUCKETS + sub
}

/// The midpoint of a bucket, in microseconds.
fn bucket_value(index: usize) -> u64 {
    if index < LINEAR {
        return index as u64;
    }
    let exp = (index - LINEAR) / SUB_BUCKETS + 4;
    let sub = ((index - LINEAR) % SUB_BUCKETS) as u64;
    let width = 1u64 << (exp - 3);
    (1u64 << exp) + sub * width + width / 2
}

/// A duration in milliseconds, rounded to the microsecond, for JSON figures.
pub fn millis(elapsed: Duration) -> f64 {
    round3(elapsed.as_secs_f64() * 1000.0)
}

#[allow(clippy::cast_precision_loss)]
fn us_to_ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A count of things in progress (waiters, sockets) with its high-water mark.
#[derive(Default)]
pub struct Gauge {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Counts one in until the guard drops.
    pub fn enter(&self) -> GaugeGuard<'_> {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        GaugeGuard(self)
    }

    /// Adds (or with a negative `delta`, removes) without a guard, for counts that are
    /// incremented on one thread and decremented on another.
    pub fn add(&self, delta: isize) {
        if delta >= 0 {
            let now = self
                .current
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed)
                + delta.unsigned_abs();
            self.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            self.current
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let summary = Histogram::new().summary();
        assert_eq!(
            (summary.count, summary.p50, summary.p99, summary.max),
            (0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn percentiles_are_within_the_bucket_resolution() {
        let histogram = Histogram::new();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50 - 50.0).abs() <= 50.0 * 0.125, "{summary:?}");
        assert!((summary.p99 - 99.0).abs() <= 99.0 * 0.125, "{summary:?}");
        assert!((summary.max - 100.0).abs() < f64::EPSILON, "{summary:?}");
        assert!((summary.mean - 50.5).abs() < 0.01, "{summary:?}");
    }

    #[test]
    fn a_percentile_never_exceeds_the_maximum_seen() {
        let histogram = Histogram::new();
        histogram.record(Duration::from_micros(1030));
        let summary = histogram.summary();
        assert!(summary.p99 <= summary.max, "{summary:?}");
    }

    #[test]
    fn buckets_are_monotonic_and_in_range() {
        let mut last = 0;
        for us in (0..5_000_000u64).step_by(997).chain([u64::MAX]) {
            let bucket = bucket_of(us);
            assert!(bucket >= last && bucket < BUCKETS);
            last = bucket;
        }
    }

    #[test]
    fn a_gauge_tracks_current_and_peak() {
        let gauge = Gauge::default();
        {
            let _a = gauge.enter();
            let _b = gauge.enter();
            assert_eq!(gauge.current(), 2);
        }
        assert_eq!((gauge.current(), gauge.peak()), (0, 2));
    }
}
