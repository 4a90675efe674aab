//! The end of a load test: percentiles, the table people read, the JSON machines read, and the
//! verdict of each SLO.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use super::profile::{Slo, SloMetric};

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Milliseconds, nearest-rank.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |permille: usize| {
            let rank = (samples.len() * permille).div_ceil(1000).max(1) - 1;
            round(samples[rank].as_secs_f64() * 1000.0)
        };
        Self {
            count: samples.len(),
            p50: at(500),
            p95: at(950),
            p99: at(990),
            max: round(samples[samples.len() - 1].as_secs_f64() * 1000.0),
        }
    }
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// What the server itself said, from `/health` before and after.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFigures {
    /// CPU seconds of the server process during the run ÷ completed turns, in milliseconds.
    pub cpu_ms_per_turn: Option<f64>,
    pub rss_bytes_before: Option<u64>,
    pub rss_bytes_after: Option<u64>,
    /// Private memory (RssAnon), the figure that counts: RSS also holds code pages.
    pub rss_anon_bytes_before: Option<u64>,
    pub rss_anon_bytes_after: Option<u64>,
    /// `/health` round trips sampled during the run.
    pub health_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloVerdict {
    pub slo: String,
    pub limit: f64,
    pub actual: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub connections: usize,
    /// The paced rate asked for (`--rate`), turns started per second.
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub turns_completed: u64,
    pub turns_failed: u64,
    pub error_rate: f64,
    pub turns_per_s: f64,
    pub errors: BTreeMap<String, u64>,
    pub ttft_ms: Percentiles,
    pub turn_ms: Percentiles,
    pub server: ServerFigures,
    pub slos: Vec<SloVerdict>,
    /// `--tool-call`: the tool every turn asked for, and how many calls were seen ending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<String>,
    pub tool_calls: u64,
    /// What happened when, for the HTML report (`--report`).
    #[serde(skip)]
    pub timeline: Timeline,
}

/// A run's events over time, in seconds since it began.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Each completed turn: when it ended, and its latency in milliseconds.
    pub turns: Vec<(f64, f64)>,
    /// When each failed turn failed.
    pub failures: Vec<f64>,
    /// The `/health` samples.
    pub health: Vec<HealthPoint>,
}

/// One `/health` sample: its round trip, and the server's CPU and memory when it said them
/// (`process` is shown to admin keys, and to everyone without keys).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthPoint {
    pub at_s: f64,
    pub round_trip: Duration,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<u64>,
}

impl Report {
    pub fn judge(&mut self, slos: &[Slo]) {
        self.slos = slos
            .iter()
            .map(|slo| {
                let actual = match slo.metric {
                    SloMetric::P50Ms => self.turn_ms.p50,
                    SloMetric::P95Ms => self.turn_ms.p95,
                    SloMetric::P99Ms => self.turn_ms.p99,
                    SloMetric::TtftP99Ms => self.ttft_ms.p99,
                    SloMetric::ErrorRate => self.error_rate,
                    SloMetric::TurnsPerS => self.turns_per_s,
                };
                let met = if slo.metric.is_floor() {
                    actual >= slo.limit
                } else {
                    actual <= slo.limit
                };
                SloVerdict {
                    slo: slo.metric.name().to_string(),
                    limit: slo.limit,
                    actual,
                    met,
                }
            })
            .collect();
    }

    pub fn passed(&self) -> bool {
        self.slos.iter().all(|v| v.met)
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "  {name:<26} {value}");
        };
        let pace = self
            .rate
            .map(|rate| format!(", paced at {rate} turns/s"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "load test of {} ({} connections{pace})",
            self.url, self.connections
        );
        row(&mut out, "duration", format!("{:.1} s", self.duration_s));
        row(
            &mut out,
            "turns completed",
            self.turns_completed.to_string(),
        );
        row(
            &mut out,
            "turns failed",
            format!("{} ({:.2}%)", self.turns_failed, self.error_rate * 100.0),
        );
        row(&mut out, "turns/s", format!("{:.1}", self.turns_per_s));
        if let Some(call) = &self.tool_call {
            let warning = if self.tool_calls < self.turns_completed {
                "  (fewer than turns: is the tool offered, and the provider the mock?)"
            } else {
                ""
            };
            row(
                &mut out,
                "tool calls",
                format!("{} of `/tool {call}`{warning}", self.tool_calls),
            );
        }
        let p = |q: &Percentiles| {
            format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms",
                q.p50, q.p95, q.p99, q.max
            )
        };
        row(&mut out, "time to first token", p(&self.ttft_ms));
        row(&mut out, "turn latency", p(&self.turn_ms));
        row(&mut out, "/health latency", p(&self.server.health_ms));
        if let Some(cpu) = self.server.cpu_ms_per_turn {
            row(&mut out, "server CPU per turn", format!("{cpu:.3} ms"));
        }
        if let (Some(before), Some(after)) = (
            self.server.rss_anon_bytes_before,
            self.server.rss_anon_bytes_after,
        ) {
            row(
                &mut out,
                "server private memory before / after",
                format!("{:.1} / {:.1} MB", mb(before), mb(after)),
            );
        }
        if let (Some(before), Some(after)) =
            (self.server.rss_bytes_before, self.server.rss_bytes_after)
        {
            row(
                &mut out,
                "server RSS before / after",
                format!("{:.1} / {:.1} MB", mb(before), mb(after)),
            );
        }
        for (code, count) in &self.errors {
            row(&mut out, &format!("error `{code}`"), count.to_string());
        }
        for verdict in &self.slos {
            let mark = if verdict.met { "met" } else { "MISSED" };
            let bound = if verdict.slo == "turns_per_s" {
                ">="
            } else {
                "<="
            };
            row(
                &mut out,
                &format!("SLO {} {bound} {}", verdict.slo, verdict.limit),
                format!("{mark} ({:.3})", verdict.actual),
            );
        }
        out
    }
}

#[allow(clippy::cast_precision_loss)] // bytes to megabytes for display
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::profile::parse_slos;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(Vec::new()).count, 0);
    }

    #[test]
    fn a_missed_slo_fails_the_run() {
        let mut report = Report {
            rate: None,
            url: "ws://x".into(),
            connections: 1,
            duration_s: 1.0,
            turns_completed: 99,
            turns_failed: 1,
            error_rate: 0.01,
            turns_per_s: 99.0,
            errors: BTreeMap::new(),
            ttft_ms: Percentiles::default(),
            turn_ms: Percentiles::of(vec![Duration::from_millis(30)]),
            server: ServerFigures::default(),
            slos: Vec::new(),
            tool_call: None,
            tool_calls: 0,
            timeline: Timeline::default(),
        };
        report.judge(&parse_slos("p99_ms=50,error_rate=0.02,turns_per_s=50").expect("valid"));
        assert!(report.passed(), "{:?}", report.slos);
        report.judge(&parse_slos("p99_ms=20").expect("valid"));
        assert!(!report.passed());
        assert!(report.table().contains("MISSED"));
    }
}
