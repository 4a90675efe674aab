//! Interpolation is done by serde-saphyr in Docker Compose mode (`${VAR}`, `${VAR:-default}`,
//! inside quoted strings too). Compose turns an unset `${VAR}` into an empty string; for a server
//! config that silently empties a URL or a token, so this check refuses it first, by line.

use std::collections::HashMap;

/// The first `${NAME}` (no default, no `?`) whose variable is unset, with its 1-based line.
pub(super) fn first_unset_variable(
    text: &str,
    env: &HashMap<String, String>,
) -> Option<(String, u64)> {
    for (index, line) in text.lines().enumerate() {
        let code = strip_comment(line);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let inner = &after[..end];
            let is_plain = inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if is_plain && !inner.is_empty() && !env.contains_key(inner) {
                return Some((inner.to_string(), index as u64 + 1));
            }
            rest = &after[end + 1..];
        }
    }
    None
}

/// The values of the variables `${NAME}` / `${NAME:-default}` placeholders took (set and at
/// least 4 characters: shorter ones would hide unrelated text), longest first.
pub(super) fn used_values(text: &str, env: &HashMap<String, String>) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut rest = strip_comment(line);
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let name: String = after[..end]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(value) = env.get(&name)
                && value.chars().count() >= 4
                && !values.contains(value)
            {
                values.push(value.clone());
            }
            rest = &after[end + 1..];
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// The line without its YAML comment: a `#` at the start or after whitespace, outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && previous != '\\' => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn an_unset_plain_variable_is_found_with_its_line() {
        let text = "a: 1\nb: \"x-${TOKEN}\"\n";
        assert_eq!(
            first_unset_variable(text, &env(&[])),
            Some(("TOKEN".into(), 2))
        );
        assert_eq!(first_unset_variable(text, &env(&[("TOKEN", "t")])), None);
    }

    #[test]
    fn defaults_and_comments_are_not_reported() {
        let text =
            "a: ${PORT:-80}\n# b: ${IN_COMMENT}\nc: 1 # ${TRAILING}\nd: \"# ${QUOTED_HASH:-x}\"\n";
        assert_eq!(first_unset_variable(text, &env(&[])), None);
    }
}
