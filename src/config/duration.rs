//! Durations in config: a number of seconds as the Python original wrote them (`30`, `0.5`)
//! or a humane string (`30s`, `500ms`, `2m`, `1h 30m`). Serialized back as humane strings.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a duration: seconds as a number (30) or a string such as \"30s\", \"500ms\", \"2m\"",
        )
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("a duration cannot be negative ({secs})")))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(secs)
            .map_err(|_| E::custom(format!("`{secs}` is not a valid number of seconds")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return self.visit_f64(secs);
        }
        humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "`{text}` is not a duration ({e}); write e.g. 30s, 500ms, 2m"
            ))
        })
    }
}

/// `Option<Duration>` with the same forms; absent or null is `None`.
pub mod option {
    use super::{Deserializer, Duration, Serializer};
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    struct Wrapped(#[serde(with = "super")] Duration);

    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        value.map(Wrapped).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        d: Duration,
    }

    fn parse(text: &str) -> Result<Duration, String> {
        serde_json::from_str::<Holder>(text)
            .map(|h| h.d)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_are_seconds_and_strings_are_humane() {
        assert_eq!(parse(r#"{"d": 30}"#), Ok(Duration::from_secs(30)));
        assert_eq!(parse(r#"{"d": 0.25}"#), Ok(Duration::from_millis(250)));
        assert_eq!(parse(r#"{"d": "500ms"}"#), Ok(Duration::from_millis(500)));
        assert_eq!(parse(r#"{"d": "2m"}"#), Ok(Duration::from_secs(120)));
        assert_eq!(parse(r#"{"d": "45"}"#), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn negative_and_garbage_durations_are_refused_with_a_hint() {
        assert!(
            parse(r#"{"d": -1}"#)
                .expect_err("refused")
                .contains("negative")
        );
        assert!(
            parse(r#"{"d": "soon"}"#)
                .expect_err("refused")
                .contains("write e.g. 30s")
        );
    }
}
