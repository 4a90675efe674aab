//! The store's health: a periodic probe of both pools, faults seen by ordinary calls, and the
//! figures `/health` shows under `repository_stats`.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::{PoolStats, RetentionSnapshot, Store, StoreError};
use crate::stats::LatencySummary;

/// `/health` figures for the write gate: the writer lane's queue.
#[derive(Debug, Clone, Serialize)]
pub struct GateStats {
    pub queue_depth: usize,
    pub wait_ms: LatencySummary,
    pub timeouts: u64,
    /// Write transactions committed; each carries the write jobs that were queued together
    /// (group commit), `writes_committed` in all.
    pub commits: u64,
    pub writes_committed: u64,
}

/// The outcome of the last health probe, or the last database fault seen since.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub healthy: bool,
    /// Unix milliseconds of the probe or fault; `None` before the first probe.
    pub checked_at_ms: Option<i64>,
    pub took_ms: f64,
    pub error: Option<String>,
}

pub(super) struct HealthState(Mutex<HealthReport>);

impl Default for HealthState {
    fn default() -> Self {
        // The store just opened and migrated, so it was usable a moment ago.
        Self(Mutex::new(HealthReport {
            healthy: true,
            checked_at_ms: None,
            took_ms: 0.0,
            error: None,
        }))
    }
}

impl HealthState {
    fn set(&self, report: HealthReport) {
        // A poisoned lock only means a panic elsewhere while setting; the value is plain data.
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = report;
    }

    fn get(&self) -> HealthReport {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn record_fault(&self, error: &StoreError) {
        tracing::error!(%error, "database fault");
        self.set(HealthReport {
            healthy: false,
            checked_at_ms: Some(super::now_ms()),
            took_ms: 0.0,
            error: Some(error.to_string()),
        });
    }
}

/// `/health` `repository_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub readers: PoolStats,
    pub writers: PoolStats,
    pub write_gate: GateStats,
    pub wal_bytes: u64,
    pub healthy: bool,
    pub last_health_check: HealthReport,
    pub retention: RetentionSnapshot,
}

const MIGRATION_COUNT: &str = "SELECT count(*) FROM schema_migrations";

impl Store {
    /// Probes the file by path with a fresh connection (pooled connections keep working on a
    /// deleted or replaced file, whose data would be lost when they close), then a pooled
    /// reader and a writer (through the gate, like any write), and records the result.
    pub async fn check_health(&self) -> HealthReport {
        let started = Instant::now();
        let path = self.inner.path.clone();
        let outcome = async {
            self.inner
                .readers
                .run(move |_pooled| {
                    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    let fresh = rusqlite::Connection::open_with_flags(&path, flags)?;
                    fresh.query_row(MIGRATION_COUNT, [], |r| r.get::<_, i64>(0))?;
                    Ok(())
                })
                .await?;
            self.read(|conn| Ok(conn.query_row(MIGRATION_COUNT, [], |r| r.get::<_, i64>(0))?))
                .await?;
            self.write(|_tx| Ok(())).await
        }
        .await;
        // A probe that waited too long in a busy queue says the store is busy, not broken.
        let healthy = match &outcome {
            Ok(()) => true,
            Err(StoreError::PoolTimeout { .. }) => self.health().healthy,
            Err(_) => false,
        };
        let report = HealthReport {
            healthy,
            checked_at_ms: Some(super::now_ms()),
            took_ms: crate::stats::millis(started.elapsed()),
            error: outcome.err().map(|e| e.to_string()),
        };
        if let Some(error) = &report.error {
            tracing::warn!(%error, "database health check failed");
        }
        self.inner.health.set(report.clone());
        report
    }

    pub fn health(&self) -> HealthReport {
        self.inner.health.get()
    }

    /// Live figures; cheap (atomics, one `stat` of the WAL file).
    pub fn stats(&self) -> StoreStats {
        let mut wal = self.inner.path.clone().into_os_string();
        wal.push("-wal");
        let last = self.health();
        let writers = self.inner.writers.stats();
        let (commits, writes_committed) = self.inner.writers.commits();
        StoreStats {
            readers: self.inner.readers.stats(),
            write_gate: GateStats {
                queue_depth: writers.waiting,
                wait_ms: writers.acquire_wait_ms,
                timeouts: writers.timeouts,
                commits,
                writes_committed,
            },
            writers,
            wal_bytes: std::fs::metadata(&wal).map_or(0, |m| m.len()),
            healthy: last.healthy,
            last_health_check: last,
            retention: self.inner.retention.snapshot(),
        }
    }
}
