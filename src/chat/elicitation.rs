//! A tool call seen from its turn: the server's progress becomes `ToolCallProgress` events (a
//! few per second at most) and its questions (`elicitation/create`) become `Elicitation`
//! events the client answers with `elicit`, checked against the requested schema.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::ChatService;
use super::answer::{Asks, Turn};
use super::events::TurnEvent;
use crate::mcp::{CallHandler, ElicitAnswer, Elicitation, Progress, Sampled, Sampling};

/// Progress of one call is shown at most this often (the last step always).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub(super) struct TurnCall<'t, 'a> {
    pub service: &'t ChatService,
    pub turn: &'t Turn<'a>,
    pub call_id: &'t str,
    pub tool: &'t str,
    last_progress: Mutex<Shown>,
}

/// What progress of a call was shown, to throttle it.
#[derive(Default)]
struct Shown {
    at: Option<Instant>,
    /// The last step (`progress >= total`) was shown: it is let through the throttle once.
    last_step: bool,
}

impl<'t, 'a> TurnCall<'t, 'a> {
    pub fn new(
        service: &'t ChatService,
        turn: &'t Turn<'a>,
        call_id: &'t str,
        tool: &'t str,
    ) -> Self {
        Self {
            service,
            turn,
            call_id,
            tool,
            last_progress: Mutex::new(Shown::default()),
        }
    }

    async fn ask(&self, server: &str, question: Elicitation) -> ElicitAnswer {
        // No one to ask through this door (the OpenAI-compatible API).
        if self.turn.asks != Asks::User {
            return ElicitAnswer::Decline;
        }
        let schema = question.schema.clone();
        let check = Box::new(move |answer: &ElicitAnswer| match answer {
            ElicitAnswer::Accept(content) => check_content(&schema, content),
            ElicitAnswer::Decline | ElicitAnswer::Cancel => Ok(()),
        });
        let mut waiting = self.service.elicitations.open(
            self.turn.caller.id().0,
            self.turn.request_id,
            Some(check),
        );
        self.turn.sink.emit(TurnEvent::Elicitation {
            elicitation_id: waiting.id.clone(),
            call_id: self.call_id.to_string(),
            server: server.to_string(),
            message: question.message,
            schema: question.schema,
        });
        let limit = self.service.config.mcp.elicitation_timeout;
        tokio::select! {
            answer = &mut waiting.answer => answer.unwrap_or(ElicitAnswer::Cancel),
            () = tokio::time::sleep(limit) => {
                self.turn.sink.emit(TurnEvent::QuestionClosed {
                    question_id: waiting.id.clone(),
                    message: format!(
                        "no answer within {}: the question was withdrawn",
                        humantime::format_duration(limit)
                    ),
                });
                ElicitAnswer::Cancel
            }
            () = self.turn.cancel.cancelled() => ElicitAnswer::Cancel,
        }
    }
}

impl CallHandler for TurnCall<'_, '_> {
    fn owner(&self) -> String {
        self.turn.caller.id().0.to_string()
    }

    fn progress(&self, progress: Progress) {
        let now = Instant::now();
        let last_step = progress
            .total
            .is_some_and(|total| progress.progress >= total);
        {
            let mut shown = self
                .last_progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let recent = shown
                .at
                .is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY);
            // Throttled, except the first last step (so the end is always shown once).
            let first_last_step = last_step && !shown.last_step;
            if recent && !first_last_step {
                return;
            }
            shown.at = Some(now);
            shown.last_step |= last_step;
        }
        self.turn.sink.emit(TurnEvent::ToolCallProgress {
            call_id: self.call_id.to_string(),
            tool: self.tool.to_string(),
            progress: progress.progress,
            total: progress.total,
            message: progress.message,
        });
    }

    fn sample<'s>(
        &'s self,
        _server: &'s str,
        request: Sampling,
    ) -> Pin<Box<dyn Future<Output = Result<Sampled, String>> + Send + 's>> {
        Box::pin(
            self.service
                .sample_for(self.turn, self.call_id, self.tool, request),
        )
    }

    fn elicit<'s>(
        &'s self,
        server: &'s str,
        question: Elicitation,
    ) -> Pin<Box<dyn Future<Output = ElicitAnswer> + Send + 's>> {
        Box::pin(self.ask(server, question))
    }
}

/// Whether `content` answers an elicitation's `schema` (an object of primitive properties:
/// string with length, format or enum; number and integer with bounds; boolean; a list of
/// enum strings).
pub fn check_content(schema: &Value, content: &Map<String, Value>) -> Result<(), String> {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !content.contains_key(name) {
            return Err(format!("`{name}` is required"));
        }
    }
    for (name, value) in content {
        let property = properties
            .get(name)
            .ok_or_else(|| format!("`{name}` is not asked for"))?;
        check_value(property, value).map_err(|why| format!("`{name}` {why}"))?;
    }
    Ok(())
}

fn allowed(property: &Value) -> Option<Vec<&str>> {
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        return Some(values.iter().filter_map(Value::as_str).collect());
    }
    let options = property
        .get("oneOf")
        .or_else(|| property.get("anyOf"))?
        .as_array()?;
    Some(
        options
            .iter()
            .filter_map(|o| o.get("const").and_then(Value::as_str))
            .collect(),
    )
}

fn check_value(property: &Value, value: &Value) -> Result<(), String> {
    let kind = property
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let bound = |key: &str| property.get(key).and_then(Value::as_f64);
    match kind {
        "string" => {
            let text = value.as_str().ok_or("must be a string")?;
            let length = f64::from(u32::try_from(text.chars().count()).unwrap_or(u32::MAX));
            if bound("minLength").is_some_and(|min| length < min) {
                return Err("is too short".into());
            }
            if bound("maxLength").is_some_and(|max| length > max) {
                return Err("is too long".into());
            }
            if let Some(options) = allowed(property)
                && !options.contains(&text)
            {
                return Err(format!("must be one of {options:?}"));
            }
            check_format(property.get("format").and_then(Value::as_str), text)
        }
        "number" | "integer" => {
            let number = value.as_f64().ok_or("must be a number")?;
            if kind == "integer" && number.fract() != 0.0 {
                return Err("must be a whole number".into());
            }
            if bound("minimum").is_some_and(|min| number < min) {
                return Err("is below the minimum".into());
            }
            if bound("maximum").is_some_and(|max| number > max) {
                return Err("is above the maximum".into());
            }
            Ok(())
        }
        "boolean" => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| "must be true or false".into()),
        "array" => {
            let items = value.as_array().ok_or("must be a list")?;
            let options = property.get("items").and_then(allowed).unwrap_or_default();
            if let Some(item) = items
                .iter()
                .find(|i| !i.as_str().is_some_and(|s| options.contains(&s)))
            {
                return Err(format!("has {item}, not one of {options:?}"));
            }
            let count = f64::from(u32::try_from(items.len()).unwrap_or(u32::MAX));
            if bound("minItems").is_some_and(|min| count < min) {
                return Err("has too few items".into());
            }
            if bound("maxItems").is_some_and(|max| count > max) {
                return Err("has too many items".into());
            }
            Ok(())
        }
        other => Err(format!("has a type this host cannot check (`{other}`)")),
    }
}

fn check_format(format: Option<&str>, text: &str) -> Result<(), String> {
    let fits = match format {
        Some("email") => text
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.')),
        Some("uri") => url::Url::parse(text).is_ok(),
        Some("date") => is_date(text),
        Some("date-time") => {
            text.get(..10).is_some_and(is_date) && text.as_bytes().get(10) == Some(&b'T')
        }
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(format!("is not a valid {}", format.unwrap_or("value")))
    }
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(schema: &Value, content: &Value) -> Result<(), String> {
        check_content(schema, content.as_object().expect("object"))
    }

    #[test]
    fn answers_are_checked_against_the_requested_schema() {
        let schema = json!({"type": "object", "required": ["name", "age"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "email": {"type": "string", "format": "email"},
            "color": {"type": "string", "enum": ["red", "green"]},
            "size": {"type": "string", "oneOf": [{"const": "S", "title": "Small"}, {"const": "L", "title": "Large"}]},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "born": {"type": "string", "format": "date"}}});
        assert_eq!(check(&schema, &json!({"name": "Ada", "age": 36})), Ok(()));
        let good = json!({"name": "Ada", "age": 36, "email": "ada@example.com", "color": "red",
                          "size": "L", "ok": true, "tags": ["a"], "born": "1815-12-10"});
        assert_eq!(check(&schema, &good), Ok(()));
        for (bad, why) in [
            (json!({"name": "Ada"}), "`age` is required"),
            (json!({"name": "Ada", "age": 36.5}), "whole number"),
            (json!({"name": "Ada", "age": -1}), "minimum"),
            (json!({"name": "", "age": 1}), "too short"),
            (json!({"name": 7, "age": 1}), "must be a string"),
            (json!({"name": "A", "age": 1, "email": "nope"}), "email"),
            (json!({"name": "A", "age": 1, "color": "blue"}), "one of"),
            (json!({"name": "A", "age": 1, "size": "M"}), "one of"),
            (json!({"name": "A", "age": 1, "ok": "yes"}), "true or false"),
            (json!({"name": "A", "age": 1, "tags": ["c"]}), "not one of"),
            (json!({"name": "A", "age": 1, "born": "10/12/1815"}), "date"),
            (json!({"name": "A", "age": 1, "extra": 1}), "not asked for"),
        ] {
            let error = check(&schema, &bad).expect_err("refused");
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_date_time_is_checked_without_slicing_inside_a_character() {
        let schema = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"}}});
        assert_eq!(
            check(&schema, &json!({"at": "2026-12-01T10:00:00.000Z"})),
            Ok(())
        );
        // Multi-byte characters across byte 10 once panicked the turn.
        for bad in [
            "2026-12-0éT10:00",
            "ééééééééé",
            "2026-12-01",
            "2026-12-01 10:00",
        ] {
            let error = check(&schema, &json!({ "at": bad })).expect_err(bad);
            assert!(error.contains("date-time"), "{bad}: {error}");
        }
    }
}
