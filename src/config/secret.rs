//! A string that must never reach a log line, `/health` or `check-config` output.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret value (an MCP server's env var, an HTTP header). `Debug` and `Serialize` redact it;
/// only [`Secret::expose`] gives the text, at the one place that must send it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

pub const REDACTED: &str = "[redacted]";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_in_debug_and_serialization() {
        let secret = Secret::new("sk-live-123");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"[redacted]\"")
        );
        assert_eq!(secret.expose(), "sk-live-123");
    }
}
