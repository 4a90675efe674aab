//! Load profiles and service-level objectives of `mcp-platform loadtest`.

use std::time::Duration;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// 10 connections × 5 turns: does it work at all.
    Smoke,
    /// 100 connections × 20 turns.
    Load,
    /// 1000 connections × 10 turns, ramped up over 10 s.
    Stress,
    /// 100 connections chatting for 10 minutes.
    Soak,
}

/// What a run does once flags have overridden the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub connections: usize,
    /// Turns per connection; `None` runs until `duration`.
    pub turns: Option<usize>,
    pub duration: Option<Duration>,
    pub ramp_up: Duration,
    /// Turns started per second across all connections (each connection paced to its share);
    /// `None`: each connection starts its next turn as soon as the last one ends.
    pub rate: Option<f64>,
    /// Turns per conversation: a connection then starts a new one, as users do. Each turn reads
    /// its conversation's history, so this sets how much history a turn carries.
    pub conversation_turns: usize,
}

/// Turns per conversation unless `--conversation-turns` says otherwise.
pub const CONVERSATION_TURNS: usize = 10;

impl Plan {
    /// How often one connection starts a turn under `rate`.
    pub fn pace(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| r.is_finite() && *r > 0.0)?;
        #[allow(clippy::cast_precision_loss)] // connection counts are small
        Duration::try_from_secs_f64(self.connections as f64 / rate).ok()
    }
}

impl Profile {
    pub fn plan(self) -> Plan {
        let (connections, turns, duration, ramp_up) = match self {
            Self::Smoke => (10, Some(5), None, 0),
            Self::Load => (100, Some(20), None, 2),
            Self::Stress => (1000, Some(10), None, 10),
            Self::Soak => (100, None, Some(600), 5),
        };
        Plan {
            connections,
            turns,
            duration: duration.map(Duration::from_secs),
            ramp_up: Duration::from_secs(ramp_up),
            rate: None,
            conversation_turns: CONVERSATION_TURNS,
        }
    }
}

/// One objective: `metric <= limit` (or `>=` for `turns_per_s`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub metric: SloMetric,
    pub limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloMetric {
    P50Ms,
    P95Ms,
    P99Ms,
    TtftP99Ms,
    ErrorRate,
    TurnsPerS,
}

impl SloMetric {
    pub fn name(self) -> &'static str {
        match self {
            Self::P50Ms => "p50_ms",
            Self::P95Ms => "p95_ms",
            Self::P99Ms => "p99_ms",
            Self::TtftP99Ms => "ttft_p99_ms",
            Self::ErrorRate => "error_rate",
            Self::TurnsPerS => "turns_per_s",
        }
    }

    /// `turns_per_s` is a floor; the others are ceilings.
    pub fn is_floor(self) -> bool {
        self == Self::TurnsPerS
    }
}

/// Parses `p99_ms=20,error_rate=0.01`.
pub fn parse_slos(text: &str) -> Result<Vec<Slo>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected name=value, e.g. p99_ms=20"))?;
            let metric = match name.trim() {
                "p50_ms" => SloMetric::P50Ms,
                "p95_ms" => SloMetric::P95Ms,
                "p99_ms" => SloMetric::P99Ms,
                "ttft_p99_ms" => SloMetric::TtftP99Ms,
                "error_rate" => SloMetric::ErrorRate,
                "turns_per_s" => SloMetric::TurnsPerS,
                other => {
                    return Err(format!(
                        "unknown SLO `{other}` (p50_ms, p95_ms, p99_ms, ttft_p99_ms, error_rate, turns_per_s)"
                    ));
                }
            };
            let limit: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: `{value}` is not a number"))?;
            if !limit.is_finite() || limit < 0.0 {
                return Err(format!("`{part}`: the limit must be a non-negative number"));
            }
            Ok(Slo { metric, limit })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slos_parse_and_bad_ones_say_why() {
        let slos = parse_slos("p99_ms=20, error_rate=0.01").expect("valid");
        assert_eq!(slos.len(), 2);
        assert_eq!(slos[0].metric, SloMetric::P99Ms);
        assert!((slos[1].limit - 0.01).abs() < f64::EPSILON);
        assert!(
            parse_slos("p99=20")
                .expect_err("unknown")
                .contains("unknown SLO")
        );
        assert!(
            parse_slos("p99_ms")
                .expect_err("no value")
                .contains("name=value")
        );
        assert!(
            parse_slos("p99_ms=fast")
                .expect_err("nan")
                .contains("not a number")
        );
    }

    #[test]
    fn a_rate_is_shared_between_connections() {
        let mut plan = Profile::Load.plan();
        assert_eq!(plan.pace(), None);
        plan.rate = Some(2000.0);
        assert_eq!(plan.pace(), Some(Duration::from_millis(50)));
        plan.rate = Some(0.0);
        assert_eq!(plan.pace(), None);
    }

    #[test]
    fn profiles_have_their_documented_shape() {
        assert_eq!(Profile::Stress.plan().connections, 1000);
        assert_eq!(Profile::Soak.plan().turns, None);
        assert_eq!(Profile::Smoke.plan().turns, Some(5));
    }
}
