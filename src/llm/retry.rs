//! When and how long to wait before trying a provider request again: exponential backoff with
//! jitter, or the provider's `Retry-After` (seconds or an HTTP date), capped.

use std::time::{Duration, SystemTime};

/// The longest wait honoured from a `Retry-After`; longer ones fail the request instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (0 for the first retry): `factor * 2^attempt`
/// seconds scaled by a random factor in [0.5, 1.5), or the server's `Retry-After`.
pub fn delay(attempt: u32, backoff_factor: f64, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(MAX_RETRY_AFTER);
    }
    let base = backoff_factor * f64::from(2u32.saturating_pow(attempt.min(16)));
    let jittered = base * (0.5 + fastrand::f64());
    Duration::try_from_secs_f64(jittered)
        .unwrap_or(MAX_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// Parses a `Retry-After` value: delta-seconds (`120`, or `1.5` as some providers send) or an
/// HTTP date. A date in the past means now.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 0..4 {
            let base = 0.5 * f64::from(1u32 << attempt);
            let wait = delay(attempt, 0.5, None).as_secs_f64();
            assert!(
                wait >= base * 0.5 && wait < base * 1.5,
                "attempt {attempt}: {wait}"
            );
        }
        assert_eq!(delay(30, 10.0, None), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        assert_eq!(
            delay(0, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            delay(0, 0.5, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:09 GMT", now),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
