//! Every frame fits the largest frame a socket writes ([`MAX_FRAME_BYTES`]): a frame too large
//! is never the reason a socket closes. A streamed text chunk over it is split into several
//! chunks (the text is whole once joined); any other frame has its longest strings cut, and
//! says so with `chunk.truncated: true`.

use serde_json::Value;

use super::frames::ServerFrame;
use crate::wire::ErrorCode;

/// The largest frame written, in bytes of JSON text.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// The JSON text of `frame`, as one frame or, rarely, several.
pub enum Encoded {
    One(String),
    Many(Vec<String>),
}

impl Encoded {
    pub fn bytes(&self) -> usize {
        match self {
            Self::One(text) => text.len(),
            Self::Many(texts) => texts.iter().map(String::len).sum(),
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(texts) => texts.len(),
        }
    }
}

pub fn encode(frame: &ServerFrame, max: usize) -> Encoded {
    let text = frame.to_json();
    if text.len() <= max {
        return Encoded::One(text);
    }
    if frame.status == "chunk" && frame.chunk.kind == Some("text") {
        return Encoded::Many(split_text(frame, max));
    }
    Encoded::One(shrink(frame, max))
}

/// Text chunks of at most `max / 8` bytes of text each: escaped (six bytes for a control
/// character at worst) and wrapped, each stays under `max`.
fn split_text(frame: &ServerFrame, max: usize) -> Vec<String> {
    let data = frame.chunk.data.as_deref().unwrap_or_default();
    let piece = (max / 8).max(4);
    let mut texts = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let mut cut = floor_char_boundary(rest, piece);
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (head, tail) = rest.split_at(cut);
        let mut part = frame.clone();
        part.chunk.data = Some(head.to_string());
        texts.push(part.to_json());
        rest = tail;
    }
    texts
}

/// Cuts the longest strings of `frame` until it fits; an error frame if it cannot.
fn shrink(frame: &ServerFrame, max: usize) -> String {
    let Ok(mut value) = serde_json::to_value(frame) else {
        return too_large(frame);
    };
    if let Some(chunk) = value.get_mut("chunk").and_then(Value::as_object_mut) {
        chunk.insert("truncated".into(), Value::Bool(true));
    }
    for _ in 0..16 {
        let text = value.to_string();
        if text.len() <= max {
            return text;
        }
        let excess = text.len() - max;
        let Some(longest) = longest_string(&mut value) else {
            break;
        };
        let keep = longest.len().saturating_sub(excess + 64);
        let keep = floor_char_boundary(longest, keep);
        longest.truncate(keep);
        longest.push('…');
    }
    too_large(frame)
}

fn too_large(frame: &ServerFrame) -> String {
    let message = format!(
        "a `{}` frame was too large to send (over {MAX_FRAME_BYTES} bytes)",
        frame.status
    );
    ServerFrame::error(
        frame.request_id.clone(),
        ErrorCode::TooLarge,
        message,
        false,
    )
    .to_json()
}

/// Truncates `value` in place to fit `max` bytes of JSON, cutting its longest strings first.
/// True if anything was cut.
pub fn shrink_value(value: &mut Value, max: usize) -> bool {
    let mut cut = false;
    for _ in 0..16 {
        let size = value.to_string().len();
        if size <= max {
            break;
        }
        let Some(longest) = longest_string(value) else {
            break;
        };
        let keep = floor_char_boundary(longest, longest.len().saturating_sub(size - max + 64));
        longest.truncate(keep);
        longest.push('…');
        cut = true;
    }
    cut
}

fn longest_string(value: &mut Value) -> Option<&mut String> {
    match value {
        Value::String(text) => Some(text),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        Value::Object(map) => map
            .values_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        _ => None,
    }
}

/// The largest index `<= at` that starts a character of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_frame_is_one_unchanged() {
        let frame = ServerFrame::text("r", "hello".into());
        let Encoded::One(text) = encode(&frame, 1024) else {
            panic!("split a small frame");
        };
        assert_eq!(text, frame.to_json());
    }

    #[test]
    fn a_large_text_chunk_is_split_into_chunks_that_join_to_the_whole() {
        let data: String = "añ\"\n".repeat(5_000);
        let frame = ServerFrame::text("r", data.clone());
        let Encoded::Many(texts) = encode(&frame, 4096) else {
            panic!("not split");
        };
        let mut joined = String::new();
        for text in &texts {
            assert!(text.len() <= 4096, "{}", text.len());
            let part: Value = serde_json::from_str(text).expect("json");
            assert_eq!(part["status"], "chunk");
            joined.push_str(part["chunk"]["data"].as_str().expect("data"));
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn another_large_frame_has_its_longest_strings_cut_and_says_so() {
        let frame = ServerFrame::tool_execution(
            "r",
            "x".repeat(3000),
            json!({"arguments": "a".repeat(5000), "tool": "t"}),
        );
        let Encoded::One(text) = encode(&frame, 2048) else {
            panic!("split");
        };
        assert!(text.len() <= 2048, "{}", text.len());
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["chunk"]["truncated"], true);
        assert_eq!(value["chunk"]["metadata"]["tool"], "t");
        assert_eq!(value["status"], "processing");
    }

    #[test]
    fn a_frame_that_cannot_shrink_becomes_a_too_large_error() {
        let many: Vec<u32> = (0..2000).collect();
        let frame = ServerFrame::result("r", "history", json!({"numbers": many}));
        let Encoded::One(text) = encode(&frame, 1024) else {
            panic!("split");
        };
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["status"], "error");
        assert_eq!(value["chunk"]["code"], "too_large");
        assert_eq!(value["request_id"], "r");
    }

    #[test]
    fn shrink_value_cuts_at_a_character_boundary() {
        let mut value = json!({"content": "é".repeat(1000), "id": 1});
        assert!(shrink_value(&mut value, 500));
        assert!(value.to_string().len() <= 500);
        assert_eq!(value["id"], 1);
        let mut small = json!({"content": "hi"});
        assert!(!shrink_value(&mut small, 500));
    }
}
