//! Quotas of one principal: turns per minute (a sliding window), provider tokens per UTC day,
//! concurrent turns. The counts live here, in memory, and are written to the database in the
//! background (`Auth::flush`); a restart reads today's usage back.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::{Quotas, Usage, day_of, now_ms};

const MINUTE: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

/// A quota a turn ran into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; retry in {retry_after_s} s")]
pub struct QuotaExceeded {
    pub what: String,
    pub retry_after_s: u64,
}

impl crate::wire::WireFault for QuotaExceeded {
    fn code(&self) -> crate::wire::ErrorCode {
        crate::wire::ErrorCode::QuotaExceeded
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(self.retry_after_s.max(1)))
    }
}

#[derive(Debug, Default)]
pub struct Meter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Start times of the turns of the last minute, kept only under a `turns_per_minute`
    /// quota (so never more than it allows).
    recent: VecDeque<Instant>,
    in_flight: u32,
    day: i64,
    today: Usage,
    /// Usage not yet written to the database.
    unflushed: Usage,
    last_used_ms: Option<i64>,
}

/// Held for the length of a turn: counts it as in flight.
#[must_use]
pub struct TurnPermit<'a> {
    meter: &'a Meter,
}

impl Drop for TurnPermit<'_> {
    fn drop(&mut self) {
        let mut state = self.meter.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl Meter {
    /// A meter that starts from `today` (read from the database at start).
    pub fn with_usage(today: Usage) -> Self {
        Self {
            state: Mutex::new(State {
                day: day_of(now_ms()),
                today,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a turn within `quotas` (counting it), or says which quota it would pass.
    pub fn admit(&self, quotas: &Quotas) -> Result<TurnPermit<'_>, QuotaExceeded> {
        self.admit_beyond(quotas, 0)
    }

    /// Admits a model call made inside a running turn (an MCP server's sampling): it counts
    /// as a turn (per minute, tokens, in flight), and may take one slot beyond
    /// `concurrent_turns`, since the turn that holds a slot waits for it; so a key runs at
    /// most `concurrent_turns + 1` model calls at once, however many its servers ask for.
    pub fn admit_nested(&self, quotas: &Quotas) -> Result<TurnPermit<'_>, QuotaExceeded> {
        self.admit_beyond(quotas, 1)
    }

    fn admit_beyond(&self, quotas: &Quotas, extra: u32) -> Result<TurnPermit<'_>, QuotaExceeded> {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut state = self.lock();
        state.roll_day(now_ms);
        while state
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            state.recent.pop_front();
        }
        if let Some(limit) = quotas.concurrent_turns
            && state.in_flight >= limit.saturating_add(extra)
        {
            return Err(QuotaExceeded {
                what: format!(
                    "{limit} turns are already in flight for this key (concurrent_turns)"
                ),
                retry_after_s: 1,
            });
        }
        if let Some(limit) = quotas.turns_per_minute
            && state.recent.len() >= limit as usize
        {
            let oldest = state.recent.front().copied().unwrap_or(now);
            let wait = MINUTE.saturating_sub(now.duration_since(oldest));
            return Err(QuotaExceeded {
                what: format!("this key's {limit} turns per minute are used (turns_per_minute)"),
                retry_after_s: wait.as_secs() + 1,
            });
        }
        tokens_left(&state, quotas, now_ms)?;
        if quotas.turns_per_minute.is_some() {
            state.recent.push_back(now);
        } else if state.recent.capacity() > 0 {
            // Without the quota nothing reads them, yet a key admitting thousands of turns a
            // minute would keep a list that long (its capacity stays after the pruning above).
            // One given the quota later starts counting then.
            state.recent = VecDeque::new();
        }
        state.in_flight += 1;
        state.today.turns += 1;
        state.unflushed.turns += 1;
        state.last_used_ms = Some(now_ms);
        Ok(TurnPermit { meter: self })
    }

    /// Whether the day's tokens are not used up (a model call within a turn, such as a
    /// server's sampling, checks this before it runs).
    pub fn within_tokens(&self, quotas: &Quotas) -> Result<(), QuotaExceeded> {
        let now_ms = now_ms();
        let mut state = self.lock();
        state.roll_day(now_ms);
        tokens_left(&state, quotas, now_ms)
    }

    /// Adds the provider's token counts of one model reply.
    pub fn spent(&self, prompt_tokens: u64, completion_tokens: u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.roll_day(now_ms());
        for usage in [&mut state.today, &mut state.unflushed] {
            usage.prompt_tokens += prompt_tokens;
            usage.completion_tokens += completion_tokens;
        }
    }

    /// Records a use of the key that is not a turn (a REST call, a login).
    pub fn used(&self) {
        self.lock().last_used_ms = Some(now_ms());
    }

    pub fn today(&self) -> Usage {
        let mut state = self.lock();
        state.roll_day(now_ms());
        state.today
    }

    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Takes what is not yet written: `(day, usage, last used)`.
    pub fn take_unflushed(&self) -> (i64, Usage, Option<i64>) {
        let mut state = self.lock();
        let usage = std::mem::take(&mut state.unflushed);
        (state.day, usage, state.last_used_ms.take())
    }

    /// Gives back what a failed write did not store.
    pub fn restore_unflushed(&self, usage: Usage, last_used: Option<i64>) {
        let mut state = self.lock();
        state.unflushed.turns += usage.turns;
        state.unflushed.prompt_tokens += usage.prompt_tokens;
        state.unflushed.completion_tokens += usage.completion_tokens;
        state.last_used_ms = state.last_used_ms.max(last_used);
    }
}

fn tokens_left(state: &State, quotas: &Quotas, now_ms: i64) -> Result<(), QuotaExceeded> {
    let Some(limit) = quotas.tokens_per_day else {
        return Ok(());
    };
    if state.today.tokens() < limit {
        return Ok(());
    }
    let until_midnight = DAY_MS - now_ms.rem_euclid(DAY_MS);
    Err(QuotaExceeded {
        what: format!("this key's {limit} tokens for today (UTC) are used (tokens_per_day)"),
        retry_after_s: u64::try_from(until_midnight / 1000 + 1).unwrap_or(1),
    })
}

impl State {
    /// A new UTC day starts from zero (what was not flushed is kept for yesterday's row by
    /// being flushed under the day it was counted in, the usual case within a second).
    fn roll_day(&mut self, now_ms: i64) {
        let day = day_of(now_ms);
        if day != self.day {
            self.day = day;
            self.today = Usage::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_quotas_admit_everything() {
        let meter = Meter::default();
        let permits: Vec<_> = (0..100)
            .map(|_| meter.admit(&Quotas::default()).expect("admitted"))
            .collect();
        assert_eq!(meter.in_flight(), 100);
        drop(permits);
        assert_eq!(meter.in_flight(), 0);
        assert_eq!(meter.today().turns, 100);
    }

    #[test]
    fn concurrent_turns_are_capped_and_freed_when_a_turn_ends() {
        let meter = Meter::default();
        let quotas = Quotas {
            concurrent_turns: Some(2),
            ..Quotas::default()
        };
        let a = meter.admit(&quotas).expect("first");
        let _b = meter.admit(&quotas).expect("second");
        let refused = meter.admit(&quotas).err().expect("third refused");
        assert_eq!(refused.retry_after_s, 1);
        assert!(refused.what.contains("concurrent_turns"));
        drop(a);
        assert!(meter.admit(&quotas).is_ok());
    }

    #[test]
    fn a_sampling_inside_a_turn_counts_as_a_turn_with_one_slot_beyond_the_cap() {
        let meter = Meter::default();
        let quotas = Quotas {
            concurrent_turns: Some(1),
            turns_per_minute: Some(3),
            ..Quotas::default()
        };
        let _turn = meter.admit(&quotas).expect("the turn");
        let sampling = meter.admit_nested(&quotas).expect("its sampling");
        assert!(
            meter.admit_nested(&quotas).is_err(),
            "a second at once is refused"
        );
        drop(sampling);
        drop(meter.admit_nested(&quotas).expect("one after the other"));
        assert_eq!(meter.today().turns, 3);
        let refused = meter.admit_nested(&quotas).err().expect("per minute");
        assert!(
            refused.what.contains("turns_per_minute"),
            "{}",
            refused.what
        );
    }

    #[test]
    fn turns_per_minute_are_a_sliding_window_with_a_retry_after() {
        let meter = Meter::default();
        let quotas = Quotas {
            turns_per_minute: Some(3),
            ..Quotas::default()
        };
        for _ in 0..3 {
            drop(meter.admit(&quotas).expect("within the minute"));
        }
        let refused = meter.admit(&quotas).err().expect("fourth refused");
        assert!((59..=61).contains(&refused.retry_after_s), "{refused:?}");
        // A refused turn is not counted.
        assert_eq!(meter.today().turns, 3);
    }

    #[test]
    fn a_key_without_a_per_minute_quota_keeps_no_list_of_its_turns() {
        let meter = Meter::default();
        let quotas = Quotas {
            turns_per_minute: Some(2),
            ..Quotas::default()
        };
        drop(meter.admit(&quotas).expect("counted"));
        assert_eq!(meter.lock().recent.len(), 1);
        for _ in 0..1000 {
            drop(meter.admit(&Quotas::default()).expect("unlimited"));
        }
        assert_eq!(meter.lock().recent.capacity(), 0);
        // The quota given again counts from then: two more, not one.
        drop(meter.admit(&quotas).expect("first of the new minute"));
        drop(meter.admit(&quotas).expect("second"));
        assert!(meter.admit(&quotas).is_err());
        assert_eq!(meter.today().turns, 1003);
    }

    #[test]
    fn tokens_per_day_stop_turns_once_spent_until_midnight_utc() {
        let meter = Meter::default();
        let quotas = Quotas {
            tokens_per_day: Some(100),
            ..Quotas::default()
        };
        drop(meter.admit(&quotas).expect("nothing spent yet"));
        meter.spent(60, 39);
        drop(meter.admit(&quotas).expect("99 of 100 spent"));
        meter.spent(1, 0);
        let refused = meter.admit(&quotas).err().expect("100 spent");
        assert!(refused.retry_after_s >= 1 && refused.retry_after_s <= 86_401);
        let (_, unflushed, last_used) = meter.take_unflushed();
        assert_eq!(unflushed.tokens(), 100);
        assert_eq!(unflushed.turns, 2);
        assert!(last_used.is_some());
        assert_eq!(meter.take_unflushed().1, Usage::default());
    }
}
