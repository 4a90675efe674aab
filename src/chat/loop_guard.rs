//! The loop guard: a turn whose model calls the same tool with the same arguments again and
//! again, or whose tools keep failing, is going in circles (small models do). Past the limits
//! of `chat.service.loop_guard` the tool loop ends: the model is asked to answer without
//! tools, and the client gets a `tool_loop_stopped` notice.

use std::collections::HashMap;

use serde_json::Value;

use super::events::ToolStatus;
use crate::config::LoopGuardConfig;
use crate::llm::ToolCall;

/// Told to the model when the loop is stopped.
pub const LOOP_STOPPED_NOTICE: &str = "Tool calls are stopped for this request: they were \
    going in circles. Answer now with what you have, without calling tools, and say what you \
    could not do.";

/// What one turn's tool rounds did so far.
#[derive(Debug)]
pub struct LoopGuard {
    limits: LoopGuardConfig,
    /// (tool, arguments as canonical JSON) → calls so far.
    calls: HashMap<(String, String), u32>,
    /// Tool errors since the last call that succeeded.
    errors_in_a_row: u32,
}

/// Arguments compared by meaning: `{"b":1,"a":2}` is `{"a":2,"b":1}` (object keys sorted,
/// spacing gone); text that is not JSON is compared as it is.
fn canonical(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .map_or_else(|_| arguments.to_string(), |v| v.to_string())
}

impl LoopGuard {
    pub fn new(limits: LoopGuardConfig) -> Self {
        Self {
            limits,
            calls: HashMap::new(),
            errors_in_a_row: 0,
        }
    }

    /// Records one round's calls and how each ended (in order); why the loop must stop, if
    /// it must. A denied call (the user's or the policy's decision) is neither a success nor
    /// an error.
    pub fn record(&mut self, calls: &[ToolCall], statuses: &[ToolStatus]) -> Option<String> {
        let mut stop = None;
        for (call, status) in calls.iter().zip(statuses) {
            let seen = self
                .calls
                .entry((call.name.clone(), canonical(&call.arguments)))
                .or_insert(0);
            *seen += 1;
            let repeated = self.limits.repeated_calls;
            if repeated > 0 && *seen >= repeated && stop.is_none() {
                stop = Some(format!(
                    "`{}` was called {seen} times with the same arguments \
                     (chat.service.loop_guard.repeated_calls); the model answers without tools",
                    call.name
                ));
            }
            match status {
                ToolStatus::Ok => self.errors_in_a_row = 0,
                ToolStatus::Error => self.errors_in_a_row += 1,
                ToolStatus::Denied => {}
            }
            let errors = self.limits.consecutive_errors;
            if errors > 0 && self.errors_in_a_row >= errors && stop.is_none() {
                stop = Some(format!(
                    "{} tool calls failed in a row (chat.service.loop_guard.consecutive_errors); \
                     the model answers without tools",
                    self.errors_in_a_row
                ));
            }
        }
        stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn guard() -> LoopGuard {
        LoopGuard::new(LoopGuardConfig::default())
    }

    #[test]
    fn the_third_identical_call_stops_the_loop() {
        let mut guard = guard();
        let ok = [ToolStatus::Ok];
        assert_eq!(guard.record(&[call("echo", r#"{"a":1,"b":2}"#)], &ok), None);
        // Other arguments, another tool: counted apart.
        assert_eq!(guard.record(&[call("echo", r#"{"a":2}"#)], &ok), None);
        assert_eq!(guard.record(&[call("add", r#"{"a":1,"b":2}"#)], &ok), None);
        // The same arguments written otherwise are the same call.
        assert_eq!(
            guard.record(&[call("echo", r#"{ "b": 2, "a": 1 }"#)], &ok),
            None
        );
        let stop = guard.record(&[call("echo", r#"{"b":2,"a":1}"#)], &ok);
        assert!(stop.is_some_and(|s| s.contains("`echo` was called 3 times")));
    }

    #[test]
    fn three_errors_in_a_row_stop_it_and_a_success_resets_the_count() {
        let mut guard = guard();
        let err = [ToolStatus::Error];
        assert_eq!(guard.record(&[call("a", "1")], &err), None);
        assert_eq!(guard.record(&[call("b", "1")], &err), None);
        assert_eq!(guard.record(&[call("c", "1")], &[ToolStatus::Ok]), None);
        assert_eq!(guard.record(&[call("d", "1")], &err), None);
        // A denial neither resets nor counts.
        assert_eq!(guard.record(&[call("e", "1")], &[ToolStatus::Denied]), None);
        assert_eq!(guard.record(&[call("f", "1")], &err), None);
        let stop = guard.record(&[call("g", "1"), call("h", "1")], &[ToolStatus::Error; 2]);
        assert!(stop.is_some_and(|s| s.contains("3 tool calls failed in a row")));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let mut guard = LoopGuard::new(LoopGuardConfig {
            repeated_calls: 0,
            consecutive_errors: 0,
        });
        for _ in 0..10 {
            assert_eq!(guard.record(&[call("x", "{}")], &[ToolStatus::Error]), None);
        }
    }
}
