//! Credentials out of text meant for people: URL user-info (`https://user:pass@host`) and the
//! values of secret-looking query parameters (`?access_token=...`) wherever they appear in a
//! text (an error message, a log line, JSON included), and whole query strings where only the
//! endpoint matters. Every log line passes through [`credentials`] (see `telemetry`). And
//! [`html`], text made safe inside an HTML page (the OAuth callback's, the load test report).

use std::borrow::Cow;

/// Query parameter names whose values are secrets (compared without case; a name containing
/// one of these counts).
const SECRET_NAMES: [&str; 10] = [
    "token",
    // An OAuth authorization code (`/oauth/callback?code=`), good once but for minutes.
    "code",
    "key",
    "secret",
    "password",
    "passwd",
    "auth",
    "signature",
    "sig",
    "credential",
];

/// Replacement for what was removed.
pub const HIDDEN: &str = "[redacted]";

/// `url` without user-info and query string: what `/health` and `check-config` show of an
/// endpoint.
pub fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => credentials(url.split(['?', '#']).next().unwrap_or_default()).into_owned(),
    }
}

/// `text` with `&`, `<`, `>` and `"` escaped, for HTML text and attribute values.
pub fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` with credentials hidden, cut to `max_chars` characters.
pub fn text(text: &str, max_chars: usize) -> String {
    let clean = credentials(text);
    if clean.chars().count() > max_chars {
        let cut: String = clean.chars().take(max_chars).collect();
        return format!("{cut}…");
    }
    clean.into_owned()
}

/// Prefixes of this server's own secrets (API keys, session tokens) and of bearer tokens.
const TOKEN_PREFIXES: [&str; 4] = ["mcpp_", "mcps_", "Bearer ", "bearer "];

/// `text` with URL user-info, secret query values, bearer tokens and this server's keys
/// hidden; borrowed when there is nothing to hide (the common case, one cheap scan).
pub fn credentials(text: &str) -> Cow<'_, str> {
    let suspicious = text.contains("://")
        || text.contains('=')
        || text.contains("mcp")
        || text.contains("earer ");
    if !suspicious {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut changed = false;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(after) = rest.strip_prefix("://") {
            out.push_str("://");
            let end = after.find(ends_authority).unwrap_or(after.len());
            match after[..end].rfind('@') {
                Some(at) => {
                    out.push_str(HIDDEN);
                    out.push_str(&after[at..end]);
                    changed = true;
                }
                None => out.push_str(&after[..end]),
            }
            i += 3 + end;
            continue;
        }
        if let Some(prefix) = TOKEN_PREFIXES.iter().find(|p| rest.starts_with(**p)) {
            let token = &rest[prefix.len()..];
            let end = token
                .find(|c: char| {
                    !(c.is_ascii_alphanumeric()
                        || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '='))
                })
                .unwrap_or(token.len());
            if end >= 8 {
                out.push_str(prefix);
                out.push_str(HIDDEN);
                i += prefix.len() + end;
                changed = true;
                continue;
            }
        }
        if (rest.starts_with('?') || rest.starts_with('&'))
            && let Some(skip) = secret_parameter(&rest[1..])
        {
            let name_and_equals = &rest[..=skip.0];
            out.push_str(name_and_equals);
            out.push_str(HIDDEN);
            i += skip.1 + 1;
            changed = true;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// For `name=value…` whose name is secret: (index of `=`, index past the value), both counted
/// from the start of `name`.
fn secret_parameter(text: &str) -> Option<(usize, usize)> {
    let equals =
        text.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))?;
    if equals == 0 || !text[equals..].starts_with('=') || !is_secret_name(&text[..equals]) {
        return None;
    }
    let value = &text[equals + 1..];
    let end = value.find(ends_value).unwrap_or(value.len());
    Some((equals + 1, equals + 1 + end))
}

fn ends_authority(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '/' | '?' | '#' | '"' | '\'' | ')' | ']' | '>' | ',' | '\\' | '`'
        )
}

fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | '#' | '"' | '\'' | ')' | ']' | '>' | ',' | '\\' | '`' | ';'
        )
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| name.contains(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(html("<b a=\"1\">&"), "&lt;b a=&quot;1&quot;&gt;&amp;");
    }

    #[test]
    fn an_endpoint_loses_its_credentials_and_query() {
        assert_eq!(
            endpoint("https://user:pw@api.example.com/v1?api_key=sk-123"),
            "https://api.example.com/v1"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8081/v1"),
            "http://127.0.0.1:8081/v1"
        );
    }

    #[test]
    fn urls_inside_a_text_lose_secrets_but_keep_the_rest() {
        let scrubbed = text(
            "connect to https://bob:hunter2@mcp.example/mcp?access_token=SECRET1&x=1 failed (error: 401)",
            300,
        );
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        assert!(!scrubbed.contains("SECRET1"), "{scrubbed}");
        assert!(
            scrubbed
                .contains("https://[redacted]@mcp.example/mcp?access_token=[redacted]&x=1 failed"),
            "{scrubbed}"
        );
        let quoted = text("url `http://h/p?apiKey=K2`", 300);
        assert_eq!(quoted, "url `http://h/p?apiKey=[redacted]`");
        let callback = text("GET /oauth/callback?code=C0DE&state=s", 300);
        assert_eq!(callback, "GET /oauth/callback?code=[redacted]&state=s");
    }

    #[test]
    fn a_json_log_line_stays_json() {
        let line = r#"{"level":"WARN","error":"error sending request for url (http://u:p@h:1/mcp?token=T0K&a=b)","server":"t"}"#;
        let clean = credentials(line);
        let parsed: serde_json::Value = serde_json::from_str(&clean).expect("still JSON");
        assert_eq!(
            parsed["error"],
            "error sending request for url (http://[redacted]@h:1/mcp?token=[redacted]&a=b)"
        );
        assert_eq!(parsed["server"], "t");
    }

    #[test]
    fn text_without_credentials_is_borrowed_unchanged() {
        for plain in [
            "no urls here",
            "a=b and key_count=3 ok",
            "http://127.0.0.1:8000/health",
            "é=ü",
        ] {
            let clean = credentials(plain);
            assert_eq!(clean, plain);
        }
        assert!(matches!(credentials("x = 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn keys_sessions_and_bearer_tokens_are_hidden() {
        let key = "mcpp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3";
        let text = format!("auth with {key} failed; header Bearer sk-live-123456789 sent");
        let clean = credentials(&text);
        assert!(!clean.contains(&key[5..]), "{clean}");
        assert!(!clean.contains("sk-live"), "{clean}");
        assert!(clean.contains("mcpp_[redacted] failed"), "{clean}");
        // Words that only start like a prefix are left alone.
        assert_eq!(
            credentials("the mcp_platform crate"),
            "the mcp_platform crate"
        );
    }

    #[test]
    fn a_long_text_is_cut() {
        let long = "x".repeat(1000);
        assert_eq!(text(&long, 10).chars().count(), 11);
    }
}
