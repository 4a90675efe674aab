//! Admission to the database: a FIFO queue in front of each pool, and the write gate.
//!
//! Waiting happens here, in async code, never on a blocking thread and never in SQLite's
//! busy handler: a caller first takes a permit (bounded by `connection_timeout`), and only then
//! a thread and a connection. tokio's semaphore hands permits out in request order, so the
//! queues are fair.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;
use super::connection::{Pool, PooledConnection};
use crate::stats::{Gauge, Histogram, LatencySummary};

/// A FIFO queue of `size` permits with its wait figures.
pub struct Admission {
    name: &'static str,
    size: u32,
    permits: Arc<Semaphore>,
    waiting: Gauge,
    wait: Histogram,
    timeouts: AtomicU64,
    timeout: Duration,
    closed: AtomicBool,
}

impl Admission {
    pub fn new(name: &'static str, size: u32, timeout: Duration) -> Self {
        Self {
            name,
            size,
            permits: Arc::new(Semaphore::new(size as usize)),
            waiting: Gauge::default(),
            wait: Histogram::new(),
            timeouts: AtomicU64::new(0),
            timeout,
            closed: AtomicBool::new(false),
        }
    }

    /// Waits in line for a permit, at most the configured timeout.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let started = Instant::now();
        let _waiting = self.waiting.enter();
        match tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.wait.record(started.elapsed());
                Ok(permit)
            }
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::PoolTimeout {
                    pool: self.name,
                    waited: self.timeout,
                })
            }
        }
    }

    /// Refuses new callers, then waits up to `deadline` for those admitted to finish.
    /// Returns whether everything drained.
    pub async fn close(&self, deadline: Duration) -> bool {
        self.closed.store(true, Ordering::Release);
        let all = self.permits.acquire_many(self.size);
        matches!(tokio::time::timeout(deadline, all).await, Ok(Ok(_)))
    }

    pub fn queue_depth(&self) -> usize {
        self.waiting.current()
    }

    pub fn wait_summary(&self) -> LatencySummary {
        self.wait.summary()
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }
}

/// One pool of connections behind its admission queue.
pub struct Lane {
    pub admission: Admission,
    pool: Pool,
}

/// `/health` figures for one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
    pub waiting: usize,
    pub acquire_wait_ms: LatencySummary,
    pub timeouts: u64,
}

impl Lane {
    pub fn new(name: &'static str, pool: Pool, timeout: Duration) -> Self {
        Self {
            admission: Admission::new(name, pool.max_size(), timeout),
            pool,
        }
    }

    /// Takes a connection; called on a blocking thread by a caller holding a permit, so a
    /// connection is normally free at once (the pool's own timeout is the safety net).
    pub fn checkout(&self) -> Result<PooledConnection, StoreError> {
        let timeout = self.admission.timeout;
        self.pool.get_timeout(timeout).map_err(|_| {
            self.admission.timeouts.fetch_add(1, Ordering::Relaxed);
            StoreError::PoolTimeout {
                pool: self.admission.name,
                waited: timeout,
            }
        })
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.pool.state();
        PoolStats {
            size: self.pool.max_size(),
            idle: state.idle_connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            waiting: self.admission.queue_depth(),
            acquire_wait_ms: self.admission.wait_summary(),
            timeouts: self.admission.timeouts(),
        }
    }
}

/// `/health` figures for the write gate.
#[derive(Debug, Clone, Serialize)]
pub struct GateStats {
    pub queue_depth: usize,
    pub wait_ms: LatencySummary,
    pub timeouts: u64,
}

impl Admission {
    pub fn gate_stats(&self) -> GateStats {
        GateStats {
            queue_depth: self.queue_depth(),
            wait_ms: self.wait_summary(),
            timeouts: self.timeouts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn the_gate_admits_waiters_in_arrival_order() {
        let gate = Arc::new(Admission::new("writer", 1, Duration::from_secs(5)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.admit().await.expect("free gate admits");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (queued, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = queued.admit().await.expect("admitted");
                order.lock().expect("not poisoned").push(i);
                tokio::task::yield_now().await;
            }));
            // Let task i reach the queue before task i + 1 is spawned.
            while gate.queue_depth() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in tasks {
            task.await.expect("task finished");
        }
        assert_eq!(
            *order.lock().expect("not poisoned"),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(gate.wait_summary().count, 21);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_timeout_is_a_pool_timeout_and_counted() {
        let gate = Admission::new("writer", 1, Duration::from_millis(100));
        let _held = gate.admit().await.expect("free gate admits");
        let err = gate.admit().await.expect_err("second caller times out");
        assert!(
            matches!(err, StoreError::PoolTimeout { pool: "writer", .. }),
            "{err:?}"
        );
        assert_eq!(gate.timeouts(), 1);
        assert_eq!(gate.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_closed_admission_refuses_new_callers() {
        let gate = Admission::new("reader", 2, Duration::from_secs(1));
        assert!(gate.close(Duration::from_secs(1)).await);
        assert!(matches!(gate.admit().await, Err(StoreError::Closed)));
    }
}
