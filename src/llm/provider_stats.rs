//! A provider's live figures for `/health` `llm_client_stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::error::{ERROR_KINDS, ProviderError};
use crate::stats::{Histogram, LatencySummary};

#[derive(Default)]
pub struct ProviderStats {
    pub requests: AtomicU64,
    pub completed: AtomicU64,
    pub retries: AtomicU64,
    /// 429 answers from the provider, retried or not.
    pub provider_429: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    pub tokens_in: AtomicU64,
    pub tokens_out: AtomicU64,
    /// Request start to the first event reaching the caller.
    pub ttft: Histogram,
    /// Request start to the end of the answer.
    pub latency: Histogram,
}

impl ProviderStats {
    pub fn record_error(&self, error: &ProviderError) {
        if let Some(index) = ERROR_KINDS.iter().position(|kind| *kind == error.kind()) {
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn error_count(&self, kind: &str) -> u64 {
        ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |index| self.errors[index].load(Ordering::Relaxed))
    }
}

/// One provider in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderSnapshot {
    pub configured: bool,
    pub base_url: String,
    pub model: String,
    pub in_flight: usize,
    pub waiting: usize,
    pub concurrent_limit: u32,
    pub rpm_limit: u32,
    pub requests: u64,
    pub completed: u64,
    /// All failed requests, and by kind below.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    pub retries: u64,
    /// Refused by our own limiter (`ours`) or answered 429 by the provider (`provider`).
    pub rate_limited: RateLimited,
    pub circuit: &'static str,
    pub ttft_ms: LatencySummary,
    pub latency_ms: LatencySummary,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Present once the provider's embedder has been used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<super::EmbedderSnapshot>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateLimited {
    pub ours: u64,
    pub provider: u64,
}

impl ProviderStats {
    /// The counters part of a snapshot; the provider fills in the rest.
    pub fn counters(&self) -> (u64, BTreeMap<&'static str, u64>, RateLimited) {
        let by_kind: BTreeMap<&'static str, u64> = ERROR_KINDS
            .iter()
            .map(|kind| (*kind, self.error_count(kind)))
            .filter(|(_, count)| *count > 0)
            .collect();
        let total = by_kind.values().sum();
        let rate_limited = RateLimited {
            ours: self.error_count("rate_limited"),
            provider: self.provider_429.load(Ordering::Relaxed),
        };
        (total, by_kind, rate_limited)
    }
}
