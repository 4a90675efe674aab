//! Credentials out of text meant for people: URL user-info (`https://user:pass@host`) and the
//! values of secret-looking query parameters (`?access_token=...`) in any URL inside a text,
//! and whole query strings where only the endpoint matters.

/// Query parameter names whose values are secrets (compared without case; a name containing
/// one of these counts).
const SECRET_NAMES: [&str; 9] = [
    "token",
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

/// `url` without user-info and query string: what `/health` shows of an endpoint.
pub fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => url
            .split(['?', '#'])
            .next()
            .map(hide_userinfo)
            .unwrap_or_default(),
    }
}

/// `text` with the credentials of every URL in it hidden, cut to `max_chars`.
pub fn text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.contains("://") || word.contains('?') || word.contains('@') {
            out.push_str(&url_in_word(word));
        } else {
            out.push_str(word);
        }
    }
    if out.chars().count() > max_chars {
        let cut: String = out.chars().take(max_chars).collect();
        return format!("{cut}…");
    }
    out
}

/// One whitespace-free piece of text that holds a URL (perhaps quoted or in brackets).
fn url_in_word(word: &str) -> String {
    let hidden = hide_userinfo(word);
    let Some((before, query)) = hidden.split_once('?') else {
        return hidden;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| name.contains(secret))
}

/// `scheme://user:pass@host...` → `scheme://[redacted]@host...`.
fn hide_userinfo(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{HIDDEN}{}", &text[..start], &rest[at..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            scrubbed.contains("mcp.example/mcp?access_token=[redacted]&x=1"),
            "{scrubbed}"
        );
        assert!(scrubbed.ends_with("failed (error: 401)"));
        let quoted = text("url `http://h/p?apiKey=K2`", 300);
        assert!(!quoted.contains("K2"), "{quoted}");
    }

    #[test]
    fn a_long_text_is_cut() {
        let long = "x".repeat(1000);
        assert_eq!(text(&long, 10).chars().count(), 11);
    }
}
