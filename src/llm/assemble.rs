//! Turns the `data:` payloads of an OpenAI-compatible chat stream into [`ChatEvent`]s:
//! text deltas as they come; tool calls assembled by `index` (id and name once, arguments in
//! pieces, several calls interleaved) and emitted whole when the choice finishes; usage; the
//! finish reason last. Anything malformed is a [`StreamFault`], never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::types::{ChatEvent, FinishReason, ToolCall, Usage};

/// Why a stream cannot be read as an answer; becomes `ProviderError::Stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFault(pub String);

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: u32,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// An `{"error": {...}}` object, inside a stream or as an HTTP error body.
#[derive(Deserialize, Debug)]
pub struct ErrorObject {
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A string (`"context_length_exceeded"`) or a number (OpenRouter's HTTP status).
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// llama.cpp's server says its context size beside a context overflow.
    #[serde(default)]
    pub n_ctx: Option<u64>,
}

impl ErrorObject {
    /// Whether the provider says the prompt is longer than the model's context window:
    /// OpenAI's and Groq's `context_length_exceeded`, the "maximum context length" of OpenAI,
    /// OpenRouter and vLLM, Groq's "reduce the length of the messages", llama.cpp's
    /// `exceed_context_size_error`.
    pub fn is_context_overflow(&self) -> bool {
        let code = self.code.as_ref().and_then(serde_json::Value::as_str);
        let message = self
            .message
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        code == Some("context_length_exceeded")
            || self.kind.as_deref() == Some("exceed_context_size_error")
            || [
                "maximum context length",
                "context_length_exceeded",
                "reduce the length of the messages",
                "exceeds the available context size",
            ]
            .iter()
            .any(|known| message.contains(known))
    }

    /// The model's context window in tokens, when the error says it: llama.cpp's `n_ctx`,
    /// "maximum context length is 2048 tokens" (OpenAI, vLLM, llama-cpp-python, OpenRouter),
    /// "context window of 2048" (llama-cpp-python's own words).
    pub fn context_window(&self) -> Option<u32> {
        if let Some(n_ctx) = self.n_ctx {
            return u32::try_from(n_ctx).ok().filter(|&n| n > 0);
        }
        let message = self.message.as_deref()?.to_ascii_lowercase();
        ["maximum context length is ", "context window of "]
            .iter()
            .find_map(|lead| number_after(&message, lead))
    }
}

/// The number (digits, maybe with thousands separators) right after `lead` in `text`.
fn number_after(text: &str, lead: &str) -> Option<u32> {
    let rest = &text[text.find(lead)? + lead.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&n| n > 0)
}

#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// Tool-call arguments larger than this are refused (a runaway or hostile stream).
const MAX_ARGUMENTS_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct Assembler {
    calls: BTreeMap<u32, PartialCall>,
    finish: Option<FinishReason>,
    done: bool,
    /// Whether anything at all has been emitted (retries are only allowed before that).
    pub emitted: bool,
}

impl Assembler {
    /// Feeds one SSE `data:` payload.
    pub fn feed(&mut self, data: &str) -> Result<Vec<ChatEvent>, StreamFault> {
        if self.done {
            return Ok(Vec::new());
        }
        if data.trim() == "[DONE]" {
            return self.end(true);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            StreamFault(format!(
                "a stream event is not valid JSON ({e}): {}",
                excerpt(data)
            ))
        })?;
        if let Some(error) = chunk.error {
            let message = error
                .message
                .or(error.kind)
                .unwrap_or_else(|| "unspecified error".into());
            return Err(StreamFault(format!("error inside the stream: {message}")));
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                events.push(ChatEvent::Text(text));
            }
            for delta in choice.delta.tool_calls.unwrap_or_default() {
                self.merge(delta)?;
            }
            if let Some(reason) = choice.finish_reason {
                events.extend(self.complete_calls()?);
                self.finish = Some(FinishReason::parse(&reason));
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(ChatEvent::Usage(usage));
        }
        self.emitted |= !events.is_empty();
        Ok(events)
    }

    /// The transport ended. Without `[DONE]`, an answer that had its finish reason is still
    /// complete; one that did not was cut off. `[DONE]` after some content but no finish
    /// reason closes the answer as it stands; `[DONE]` with nothing before it, no content and
    /// no finish reason, is a fault (an engine that cut its generation short).
    pub fn end(&mut self, saw_done: bool) -> Result<Vec<ChatEvent>, StreamFault> {
        if self.done {
            return Ok(Vec::new());
        }
        self.done = true;
        let mut events = self.complete_calls()?;
        match self.finish.take() {
            Some(reason) => events.push(ChatEvent::Finish(reason)),
            None if saw_done && !events.is_empty() => {
                events.push(ChatEvent::Finish(FinishReason::ToolCalls));
            }
            None if saw_done && self.emitted => events.push(ChatEvent::Finish(FinishReason::Stop)),
            None if saw_done => {
                return Err(StreamFault(
                    "the stream ended with no content and no finish reason".into(),
                ));
            }
            None => {
                return Err(StreamFault(
                    "the stream ended before the answer was complete".into(),
                ));
            }
        }
        self.emitted = true;
        Ok(events)
    }

    /// Whether the answer has ended (`[DONE]`, or [`Assembler::end`] called): nothing more
    /// will come out of it, so its source need not be read again.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn merge(&mut self, delta: ToolCallDelta) -> Result<(), StreamFault> {
        let call = self.calls.entry(delta.index).or_default();
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            call.id.get_or_insert(id);
        }
        if let Some(function) = delta.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                call.name.get_or_insert(name);
            }
            if let Some(piece) = function.arguments {
                if call.arguments.len() + piece.len() > MAX_ARGUMENTS_BYTES {
                    return Err(StreamFault(format!(
                        "tool call {} arguments exceed {MAX_ARGUMENTS_BYTES} bytes",
                        delta.index
                    )));
                }
                call.arguments.push_str(&piece);
            }
        }
        Ok(())
    }

    fn complete_calls(&mut self) -> Result<Vec<ChatEvent>, StreamFault> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, call)| {
                let name = call.name.ok_or_else(|| {
                    StreamFault(format!("tool call {index} has no function name"))
                })?;
                let id = call.id.unwrap_or_else(|| format!("call_{index}"));
                let arguments = if call.arguments.trim().is_empty() {
                    "{}".into()
                } else {
                    call.arguments
                };
                Ok(ChatEvent::ToolCall(ToolCall {
                    id,
                    name,
                    arguments,
                }))
            })
            .collect()
    }
}

/// The start of a payload for an error message, cut at a character boundary.
pub fn excerpt(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < text.len() { "…" } else { "" };
    format!("{}{more}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(payloads: &[&str]) -> Result<Vec<ChatEvent>, StreamFault> {
        let mut assembler = Assembler::default();
        let mut events = Vec::new();
        for payload in payloads {
            events.extend(assembler.feed(payload)?);
        }
        events.extend(assembler.end(false)?);
        Ok(events)
    }

    fn text(delta: &str) -> String {
        serde_json::json!({"choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": null}]}).to_string()
    }

    fn finish(reason: &str) -> String {
        serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
            .to_string()
    }

    fn call_delta(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> String {
        serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": args}}
        ]}}]})
        .to_string()
    }

    #[test]
    fn text_deltas_usage_and_finish_come_out_in_order() {
        let usage = r#"{"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}"#;
        let events = feed_all(&[&text("Hel"), &text("lo"), &finish("stop"), usage, "[DONE]"])
            .expect("valid");
        assert_eq!(
            events,
            vec![
                ChatEvent::Text("Hel".into()),
                ChatEvent::Text("lo".into()),
                ChatEvent::Usage(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 2,
                    total_tokens: 7,
                    estimated: false,
                }),
                ChatEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn parallel_tool_calls_are_assembled_by_index_from_interleaved_pieces() {
        let events = feed_all(&[
            &call_delta(0, Some("call_a"), Some("weather"), ""),
            &call_delta(1, Some("call_b"), Some("time"), "{\"tz\":"),
            &call_delta(0, None, None, "{\"city\": \"Par"),
            &call_delta(1, None, None, " \"UTC\"}"),
            &call_delta(0, None, None, "is\"}"),
            &finish("tool_calls"),
            "[DONE]",
        ])
        .expect("valid");
        assert_eq!(
            events,
            vec![
                ChatEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "weather".into(),
                    arguments: "{\"city\": \"Paris\"}".into()
                }),
                ChatEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "time".into(),
                    arguments: "{\"tz\": \"UTC\"}".into()
                }),
                ChatEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn an_error_object_inside_the_stream_is_a_fault() {
        let err = feed_all(&[
            &text("partial"),
            r#"{"error": {"message": "overloaded", "type": "server_error"}}"#,
        ])
        .expect_err("fault");
        assert!(err.0.contains("overloaded"), "{err:?}");
    }

    #[test]
    fn garbage_is_a_fault_with_an_excerpt() {
        let err = feed_all(&["<html>bad gateway</html>"]).expect_err("fault");
        assert!(
            err.0.contains("not valid JSON") && err.0.contains("<html>"),
            "{err:?}"
        );
    }

    #[test]
    fn a_stream_cut_before_its_finish_is_a_fault() {
        let err = feed_all(&[&text("Hel")]).expect_err("cut off");
        assert!(err.0.contains("ended before"), "{err:?}");
    }

    #[test]
    fn a_finish_with_no_content_is_a_complete_empty_answer() {
        let role =
            r#"{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}"#;
        let events = feed_all(&[role, &finish("stop"), "[DONE]"]).expect("complete");
        assert_eq!(events, vec![ChatEvent::Finish(FinishReason::Stop)]);
    }

    #[test]
    fn done_with_nothing_before_it_is_a_fault() {
        let role =
            r#"{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}"#;
        let err = feed_all(&[role, "[DONE]"]).expect_err("fault");
        assert!(err.0.contains("no content and no finish reason"), "{err:?}");
    }

    #[test]
    fn an_ended_answer_yields_nothing_more_however_often_it_is_ended() {
        let mut assembler = Assembler::default();
        assert_eq!(
            assembler.feed(&finish("stop")),
            Ok(Vec::new()),
            "held to the end"
        );
        assert!(!assembler.is_done());
        assert_eq!(
            assembler.feed("[DONE]").expect("ok"),
            vec![ChatEvent::Finish(FinishReason::Stop)]
        );
        assert!(assembler.is_done());
        assert_eq!(assembler.end(false), Ok(Vec::new()));
        assert_eq!(assembler.feed(&text("late")), Ok(Vec::new()));
    }

    #[test]
    fn a_finished_stream_without_done_is_complete() {
        let events = feed_all(&[&text("ok"), &finish("length")]).expect("complete");
        assert_eq!(
            events.last(),
            Some(&ChatEvent::Finish(FinishReason::Length))
        );
    }

    #[test]
    fn a_tool_call_without_a_name_is_a_fault() {
        let err = feed_all(&[&call_delta(0, Some("c"), None, "{}"), &finish("tool_calls")])
            .expect_err("fault");
        assert!(err.0.contains("no function name"), "{err:?}");
    }

    #[test]
    fn the_context_window_is_read_from_the_error_when_it_says() {
        let window = |json: &str| {
            serde_json::from_str::<ErrorObject>(json)
                .expect("an error object")
                .context_window()
        };
        assert_eq!(
            window(
                r#"{"message": "This model's maximum context length is 2048 tokens. However, you requested 2311 tokens (2055 in the messages, 256 in the completion).", "code": "context_length_exceeded"}"#
            ),
            Some(2048)
        );
        assert_eq!(
            window(r#"{"message": "Requested tokens (9437) exceed context window of 8192"}"#),
            Some(8192)
        );
        assert_eq!(
            window(
                r#"{"message": "the request exceeds the available context size", "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}"#
            ),
            Some(4096)
        );
        assert_eq!(
            window(r#"{"message": "maximum context length is 128,000 tokens"}"#),
            Some(128_000)
        );
        assert_eq!(window(r#"{"message": "too long"}"#), None);
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        let long = "é".repeat(100);
        assert!(excerpt(&long).ends_with('…'));
    }
}
