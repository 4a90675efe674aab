//! Tool calls for models without function calling (`tool_calls: text` on a provider entry).
//!
//! Out, [`to_text`]: the offered tools are described in the system message, the assistant's
//! earlier calls are written back as `<tool_call>` markup in its text, and tool results go
//! to the model as a user message of `<tool_response>` elements: the format Hermes, Qwen,
//! Llama 3 and many other open models are trained on. Nothing reaches the provider in the
//! `tools` / `tool_calls` / `tool` fields it may not understand.
//!
//! In, [`read_calls`]: `<tool_call>{"name": …, "arguments": {…}}</tool_call>` in the answer's
//! text, split across chunks in any way, becomes [`ChatEvent::ToolCall`]s, and the markup never
//! reaches the text. A call that cannot be read becomes a call of [`MALFORMED_CALL`], whose
//! arguments say why; the chat answers it with an error result the model reads. Small models
//! also repeat the `<tool_response>` elements they were given: those are our markup, not an
//! answer, and are dropped from the text with what they hold.

use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use serde_json::{Value, json};

use super::assemble::excerpt;
use super::types::{
    ChatEvent, ChatMessage, ChatRequest, ChatStream, FinishReason, MessageRole, ToolCall,
};

/// The name a call gets when its markup cannot be read; its arguments are
/// `{"error": why, "text": the start of what the model wrote}`.
pub const MALFORMED_CALL: &str = "malformed_tool_call";

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const ECHO_OPEN: &str = "<tool_response>";
const ECHO_CLOSE: &str = "</tool_response>";

/// A call's body larger than this is not read (a runaway or hostile answer).
const MAX_CALL_BYTES: usize = 1 << 20;

/// The request as a text-mode model reads it: no `tools`, no `tool_calls`, no `tool` role.
pub fn to_text(request: &ChatRequest) -> ChatRequest {
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(request.messages.len() + 1);
    // Which tool a result belongs to: its call's id names it.
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut after_result = false;
    for message in &request.messages {
        let result = message.role == MessageRole::Tool;
        match message.role {
            MessageRole::Assistant if !message.tool_calls.is_empty() => {
                for call in &message.tool_calls {
                    names.insert(&call.id, &call.name);
                }
                messages.push(ChatMessage::new(
                    MessageRole::Assistant,
                    calls_as_text(message),
                ));
            }
            MessageRole::Tool => {
                let name = message
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| names.get(id).copied())
                    .unwrap_or("unknown");
                let element = response_markup(name, message.content.as_deref().unwrap_or(""));
                match messages.last_mut() {
                    // The results of one round go together, as one user message.
                    Some(last) if after_result => {
                        let text = last.content.get_or_insert_with(String::new);
                        text.push('\n');
                        text.push_str(&element);
                    }
                    _ => messages.push(ChatMessage::new(MessageRole::User, element)),
                }
            }
            _ => messages.push(message.clone()),
        }
        after_result = result;
    }
    if let Some(prompt) = tools_prompt(request) {
        match messages.first_mut() {
            Some(first) if first.role == MessageRole::System => {
                let text = first.content.get_or_insert_with(String::new);
                text.push_str("\n\n");
                text.push_str(&prompt);
            }
            _ => messages.insert(0, ChatMessage::new(MessageRole::System, prompt)),
        }
    }
    ChatRequest {
        messages,
        tools: Vec::new(),
        tool_choice: None,
        model: request.model.clone(),
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        top_p: request.top_p,
        stream: request.stream,
    }
}

/// The system prompt's tool section (Hermes' wording, which these models know), or `None`
/// when no tool is offered.
fn tools_prompt(request: &ChatRequest) -> Option<String> {
    let choice = request.tool_choice.as_ref();
    if request.tools.is_empty() || choice == Some(&json!("none")) {
        return None;
    }
    let signatures: Vec<String> = request
        .tools
        .iter()
        .map(|tool| {
            json!({"type": "function", "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            }})
            .to_string()
        })
        .collect();
    let must = match choice {
        Some(Value::String(required)) if required == "required" => {
            "\nCall at least one function in this reply.".to_string()
        }
        Some(Value::Object(named)) => named["function"]["name"]
            .as_str()
            .map(|name| format!("\nCall the function `{name}` in this reply."))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n\
         <tools>\n{}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within \
         <tool_call></tool_call> XML tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>\n\n\
         The results come back in the next user message, within <tool_response></tool_response> \
         XML tags.{must}",
        signatures.join("\n")
    ))
}

/// An assistant message's text followed by its calls as markup.
fn calls_as_text(message: &ChatMessage) -> String {
    let mut text = message.content.clone().unwrap_or_default();
    for call in &message.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        let arguments = serde_json::from_str::<Value>(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        let body = json!({"name": call.name, "arguments": arguments});
        text.push_str(OPEN);
        text.push('\n');
        text.push_str(&body.to_string());
        text.push('\n');
        text.push_str(CLOSE);
    }
    text
}

fn response_markup(name: &str, content: &str) -> String {
    let body = json!({"name": name, "content": content});
    format!("<tool_response>\n{body}\n</tool_response>")
}

/// Reads the calls out of a text-mode answer: text events lose their markup, calls come out
/// as [`ChatEvent::ToolCall`]s, and an answer that called a tool finishes with `tool_calls`.
pub fn read_calls(stream: ChatStream) -> ChatStream {
    let state = Reading {
        inner: stream,
        reader: CallReader::default(),
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, Reading::next))
}

type Item = Result<ChatEvent, super::ProviderError>;

struct Reading {
    inner: ChatStream,
    reader: CallReader,
    pending: VecDeque<Item>,
    done: bool,
}

impl Reading {
    async fn next(mut self) -> Option<(Item, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let mut out = Vec::new();
            match self.inner.next().await {
                Some(Ok(ChatEvent::Text(text))) => self.reader.text(&text, &mut out),
                Some(Ok(ChatEvent::Finish(reason))) => {
                    self.reader.finish(&mut out);
                    let called = self.reader.calls > 0;
                    out.push(ChatEvent::Finish(match reason {
                        FinishReason::Stop if called => FinishReason::ToolCalls,
                        other => other,
                    }));
                }
                Some(Ok(other)) => out.push(other),
                Some(Err(error)) => {
                    // What was said stays said; a call cut off is not run.
                    self.reader.flush_text(&mut out);
                    self.pending.extend(out.drain(..).map(Ok));
                    self.pending.push_back(Err(error));
                    self.done = true;
                }
                None => {
                    self.reader.finish(&mut out);
                    self.done = true;
                }
            }
            self.pending.extend(out.into_iter().map(Ok));
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    /// Inside `<tool_call>`: the body so far is held.
    Call,
    /// Inside a call too large to read: dropped up to its `</tool_call>`.
    Skip,
    /// Inside a `<tool_response>` the model repeated: dropped up to its end.
    Echo,
}

/// The markup parser, fed text in pieces of any size.
#[derive(Debug, Default)]
struct CallReader {
    state: State,
    /// Text that may be the start of a tag, or the body of the call being read.
    held: String,
    calls: usize,
    /// A call just ended: the whitespace models put between and after calls is dropped.
    after_call: bool,
    /// The id prefix of this answer's calls (unique per answer).
    ids: String,
}

impl CallReader {
    fn text(&mut self, text: &str, out: &mut Vec<ChatEvent>) {
        self.held.push_str(text);
        loop {
            match self.state {
                State::Text => {
                    if let Some((start, tag, next)) = first_tag(&self.held) {
                        let before: String = self.held.drain(..start).collect();
                        self.emit_text(&before, out);
                        self.held.drain(..tag.len());
                        self.state = next;
                        // A stray `</tool_response>` is dropped like a whole element.
                        self.after_call |= next != State::Call;
                        continue;
                    }
                    // Held back: a tail that may be the start of a tag.
                    let keep = [OPEN, ECHO_OPEN, ECHO_CLOSE]
                        .iter()
                        .map(|tag| tag_start_len(&self.held, tag))
                        .max()
                        .unwrap_or(0);
                    let sure: String = self.held.drain(..self.held.len() - keep).collect();
                    self.emit_text(&sure, out);
                    return;
                }
                State::Echo => {
                    if let Some(end) = self.held.find(ECHO_CLOSE) {
                        self.held.drain(..end + ECHO_CLOSE.len());
                        self.state = State::Text;
                        self.after_call = true;
                        continue;
                    }
                    let keep = tag_start_len(&self.held, ECHO_CLOSE);
                    self.held.drain(..self.held.len() - keep);
                    return;
                }
                State::Call | State::Skip => {
                    if let Some(end) = self.held.find(CLOSE) {
                        let body: String = self.held.drain(..end).collect();
                        self.held.drain(..CLOSE.len());
                        if self.state == State::Call {
                            out.push(self.call(&body, true));
                        }
                        self.state = State::Text;
                        self.after_call = true;
                        continue;
                    }
                    if self.held.len() > MAX_CALL_BYTES {
                        if self.state == State::Call {
                            let reason =
                                format!("the call is longer than {} KiB", MAX_CALL_BYTES >> 10);
                            out.push(self.malformed(&reason, &self.held.clone()));
                            self.state = State::Skip;
                        }
                        let keep = tag_start_len(&self.held, CLOSE);
                        self.held.drain(..self.held.len() - keep);
                    }
                    return;
                }
            }
        }
    }

    /// The answer ended: held text goes out as text, an unclosed call is read as it is.
    fn finish(&mut self, out: &mut Vec<ChatEvent>) {
        match self.state {
            State::Text => self.flush_text(out),
            State::Call => {
                let body = std::mem::take(&mut self.held);
                out.push(self.call(&body, false));
                self.state = State::Text;
            }
            State::Skip | State::Echo => {
                self.held.clear();
                self.state = State::Text;
            }
        }
    }

    fn flush_text(&mut self, out: &mut Vec<ChatEvent>) {
        if self.state == State::Text {
            let rest = std::mem::take(&mut self.held);
            self.emit_text(&rest, out);
        }
    }

    fn emit_text(&mut self, text: &str, out: &mut Vec<ChatEvent>) {
        let text = if self.after_call {
            text.trim_start()
        } else {
            text
        };
        if !text.is_empty() {
            self.after_call = false;
            out.push(ChatEvent::Text(text.to_string()));
        }
    }

    /// One call's body read: `{"name": …, "arguments": {…}}` (arguments may also come as a
    /// JSON string holding the object, or be left out for a call without any).
    fn call(&mut self, body: &str, closed: bool) -> ChatEvent {
        let parsed = serde_json::from_str::<Value>(body.trim());
        let unclosed = if closed {
            ""
        } else {
            " (the answer ended before </tool_call>)"
        };
        let object = match parsed {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return self.malformed(&format!("the call is not a JSON object{unclosed}"), body);
            }
            Err(error) => {
                return self.malformed(
                    &format!("the call is not valid JSON ({error}){unclosed}"),
                    body,
                );
            }
        };
        let Some(name) = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return self.malformed("the call has no \"name\" string", body);
        };
        let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
            None | Some(Value::Null) => "{}".to_string(),
            Some(Value::Object(arguments)) => Value::Object(arguments.clone()).to_string(),
            Some(Value::String(text))
                if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) =>
            {
                text.clone()
            }
            Some(_) => {
                return self.malformed("\"arguments\" is not a JSON object", body);
            }
        };
        ChatEvent::ToolCall(ToolCall {
            id: self.next_id(),
            name: name.to_string(),
            arguments,
        })
    }

    fn malformed(&mut self, reason: &str, body: &str) -> ChatEvent {
        ChatEvent::ToolCall(ToolCall {
            id: self.next_id(),
            name: MALFORMED_CALL.to_string(),
            arguments: json!({"error": reason, "text": excerpt(body.trim())}).to_string(),
        })
    }

    fn next_id(&mut self) -> String {
        if self.ids.is_empty() {
            self.ids = format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        }
        self.calls += 1;
        format!("{}_{}", self.ids, self.calls)
    }
}

/// The first tag in `text` that changes the reader's state: where it starts, the tag, and the
/// state after it.
fn first_tag(text: &str) -> Option<(usize, &'static str, State)> {
    [
        (OPEN, State::Call),
        (ECHO_OPEN, State::Echo),
        (ECHO_CLOSE, State::Text),
    ]
    .into_iter()
    .filter_map(|(tag, next)| text.find(tag).map(|at| (at, tag, next)))
    .min_by_key(|(at, _, _)| *at)
}

/// How many bytes at the end of `text` could be the start of `tag` (held back until the
/// next piece says whether it is).
fn tag_start_len(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&tag[..n]))
        .unwrap_or(0)
}

/// What the model reads when its call could not be read.
pub fn malformed_message(arguments: &str) -> String {
    let why = serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| "it could not be read".into());
    format!(
        "This tool call was not run: {why}. Write each call as \
         <tool_call>{{\"name\": \"TOOL_NAME\", \"arguments\": {{...}}}}</tool_call> \
         with the arguments as a JSON object."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolSpec;

    fn read(pieces: &[&str]) -> Vec<ChatEvent> {
        let mut reader = CallReader::default();
        let mut out = Vec::new();
        for piece in pieces {
            reader.text(piece, &mut out);
        }
        reader.finish(&mut out);
        out
    }

    fn texts(events: &[ChatEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                ChatEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn calls(events: &[ChatEvent]) -> Vec<(String, Value)> {
        events
            .iter()
            .filter_map(|e| match e {
                ChatEvent::ToolCall(c) => Some((
                    c.name.clone(),
                    serde_json::from_str(&c.arguments).expect("arguments are JSON"),
                )),
                _ => None,
            })
            .collect()
    }

    const ANSWER: &str = "Let me check.\n<tool_call>\n{\"name\": \"add\", \"arguments\": \
        {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>{\"name\": \"now\", \"arguments\": {}}\
        </tool_call>\n";

    #[test]
    fn calls_split_anywhere_read_the_same() {
        let whole = read(&[ANSWER]);
        assert_eq!(texts(&whole), "Let me check.\n");
        let expected = vec![
            ("add".to_string(), json!({"a": 1, "b": 2})),
            ("now".to_string(), json!({})),
        ];
        assert_eq!(calls(&whole), expected);
        for size in 1..=ANSWER.len() {
            let pieces: Vec<&str> = ANSWER
                .as_bytes()
                .chunks(size)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            let events = read(&pieces);
            assert_eq!(texts(&events), "Let me check.\n", "pieces of {size}");
            assert_eq!(calls(&events), expected, "pieces of {size}");
        }
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_kept() {
        let events = read(&["a <tool", "_cal", "x> b <", "tool_call"]);
        assert_eq!(texts(&events), "a <tool_calx> b <tool_call");
        assert!(calls(&events).is_empty());
        let multibyte = read(&["é<", "tool_call>{\"name\":\"t\"}</tool_call>ü"]);
        assert_eq!(texts(&multibyte), "éü");
        assert_eq!(calls(&multibyte), vec![("t".to_string(), json!({}))]);
    }

    #[test]
    fn tool_responses_the_model_repeats_are_dropped_with_what_they_hold() {
        let answer = "The sum is 3.\n<tool_response>\n{\"name\": \"add\", \"content\": \
            \"Error: tool failed\"}\n</tool_response>\nDone.</tool_response> Bye";
        let expected = "The sum is 3.\nDone.Bye";
        assert_eq!(texts(&read(&[answer])), expected);
        for size in 1..=answer.len() {
            let pieces: Vec<&str> = answer
                .as_bytes()
                .chunks(size)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            assert_eq!(texts(&read(&pieces)), expected, "pieces of {size}");
        }
        // Cut off inside one: nothing of it shows.
        assert_eq!(texts(&read(&["ok <tool_response>{\"name\": \"x\""])), "ok ");
        assert!(calls(&read(&[answer])).is_empty());
    }

    #[test]
    fn malformed_calls_become_calls_that_say_why() {
        for (body, why) in [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            ("{\"arguments\": {}}", "no \"name\""),
            ("{\"name\": \"t\", \"arguments\": 3}", "not a JSON object"),
        ] {
            let events = read(&[&format!("{OPEN}{body}{CLOSE} after")]);
            let found = calls(&events);
            assert_eq!(found.len(), 1, "{body}");
            assert_eq!(found[0].0, MALFORMED_CALL);
            let error = found[0].1["error"].as_str().expect("error");
            assert!(error.contains(why), "{body}: {error}");
            assert!(malformed_message(&json!(found[0].1).to_string()).contains(why));
            assert_eq!(texts(&events), "after");
        }
    }

    #[test]
    fn an_unclosed_call_is_read_at_the_end_and_arguments_may_be_a_string() {
        let events = read(&["<tool_call>{\"name\": \"t\", \"arguments\": \"{\\\"x\\\": 1}\"}"]);
        assert_eq!(calls(&events), vec![("t".to_string(), json!({"x": 1}))]);
        let cut = read(&["<tool_call>{\"name\": \"t\", \"argu"]);
        let found = calls(&cut);
        assert_eq!(found[0].0, MALFORMED_CALL);
        assert!(found[0].1["error"].as_str().expect("e").contains("ended"));
    }

    #[test]
    fn a_huge_call_is_refused_and_skipped() {
        let mut reader = CallReader::default();
        let mut out = Vec::new();
        reader.text(
            "<tool_call>{\"name\": \"t\", \"arguments\": {\"x\": \"",
            &mut out,
        );
        let block = "y".repeat(64 << 10);
        for _ in 0..20 {
            reader.text(&block, &mut out);
        }
        assert!(reader.held.len() <= MAX_CALL_BYTES + block.len());
        reader.text("\"}}</tool_call>done", &mut out);
        reader.finish(&mut out);
        let found = calls(&out);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, MALFORMED_CALL);
        assert_eq!(texts(&out), "done");
    }

    #[test]
    fn requests_carry_tools_in_the_prompt_and_results_as_user_text() {
        let mut assistant = ChatMessage::new(MessageRole::Assistant, "");
        assistant.content = None;
        assistant.tool_calls = vec![
            ToolCall {
                id: "c1".into(),
                name: "add".into(),
                arguments: "{\"a\":1}".into(),
            },
            ToolCall {
                id: "c2".into(),
                name: "now".into(),
                arguments: "{}".into(),
            },
        ];
        let result = |id: &str, text: &str| ChatMessage {
            role: MessageRole::Tool,
            content: Some(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
        };
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(MessageRole::System, "Be brief."),
                ChatMessage::new(MessageRole::User, "hi"),
                assistant,
                result("c1", "2"),
                result("c2", "noon"),
            ],
            tools: vec![ToolSpec {
                name: "add".into(),
                description: "Adds".into(),
                parameters: json!({"type": "object"}).into(),
            }],
            tool_choice: Some(json!("auto")),
            stream: true,
            ..ChatRequest::default()
        };
        let text = to_text(&request);
        assert!(text.tools.is_empty() && text.tool_choice.is_none());
        assert_eq!(text.messages.len(), 4);
        let system = text.messages[0].content.as_deref().expect("system");
        assert!(system.starts_with("Be brief.\n\n# Tools"), "{system}");
        assert!(system.contains("\"name\":\"add\""), "{system}");
        let said = text.messages[2].content.as_deref().expect("calls");
        assert_eq!(calls(&read(&[said])).len(), 2, "{said}");
        assert!(text.messages[2].tool_calls.is_empty());
        assert_eq!(text.messages[3].role, MessageRole::User);
        let results = text.messages[3].content.as_deref().expect("results");
        assert!(
            results.contains("{\"content\":\"2\",\"name\":\"add\"}")
                && results.contains("\"name\":\"now\""),
            "{results}"
        );
        let none = ChatRequest {
            tool_choice: Some(json!("none")),
            ..request
        };
        assert!(
            !to_text(&none).messages[0]
                .content
                .as_deref()
                .expect("system")
                .contains("# Tools")
        );
    }
}
