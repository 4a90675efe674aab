//! The README and the reference pages under docs/ link only to what exists: every relative link
//! or image names a file or directory of the repository, and every `#anchor` a heading of the
//! page it points into, by GitHub's rules. Links to http(s) and mailto are not followed, and
//! text inside fenced code blocks or code spans holds no links. And the README stays a guide:
//! reference material lives in docs/.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 600;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// README.md and every .md file under docs/, at any depth.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repository().join("README.md")];
    let mut folders = vec![repository().join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("docs/ and its folders can be listed") {
            let path = entry.expect("an entry of a docs/ folder").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

/// The lines of a page outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push(line);
        }
    }
    lines
}

/// A line without its code spans (text between backticks).
fn without_code_spans(line: &str) -> String {
    let mut in_span = false;
    let mut kept = String::new();
    for character in line.chars() {
        if character == '`' {
            in_span = !in_span;
        } else if !in_span {
            kept.push(character);
        }
    }
    kept
}

/// The targets of a page's links `[text](target)` and images `![alt](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            let target = after[..close].split_whitespace().next().unwrap_or_default();
            let target = target.trim_start_matches('<').trim_end_matches('>');
            targets.push(target.to_string());
            rest = &after[close + 1..];
        }
    }
    targets
}

/// The title of an ATX heading (`## Title`), without its marks.
fn heading_title(line: &str) -> Option<&str> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.len() - trimmed.trim_start_matches('#').len();
    let rest = &trimmed[level..];
    if level == 0 || level > 6 || !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim())
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation dropped (letters,
/// digits, `-` and `_` stay).
fn slug(title: &str) -> String {
    let mut slug = String::new();
    for character in title.trim().to_lowercase().chars() {
        if character == ' ' {
            slug.push('-');
        } else if character.is_alphanumeric() || character == '-' || character == '_' {
            slug.push(character);
        }
    }
    slug
}

/// The anchors of a page's headings; a repeated one gets `-1`, `-2`… as on GitHub.
fn anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for title in prose_lines(text).into_iter().filter_map(heading_title) {
        let base = slug(title);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// What is wrong with the link `target` on `page`, if anything.
fn problem(page: &Path, target: &str) -> Option<String> {
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let destination = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().expect("a page lies in a folder").join(path)
    };
    if !destination.exists() {
        return Some("no such file or directory".to_string());
    }
    if anchor.is_empty() {
        return None;
    }
    let markdown = destination
        .extension()
        .is_some_and(|extension| extension == "md");
    let is_page = destination.is_file() && markdown;
    if !is_page {
        return Some("an anchor into something that is not a Markdown page".to_string());
    }
    if anchors(&read(&destination)).contains(anchor) {
        None
    } else {
        Some(format!("no heading with the anchor #{anchor}"))
    }
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let root = repository();
    let mut broken = Vec::new();
    for page in pages() {
        for target in link_targets(&read(&page)) {
            let external = ["http://", "https://", "mailto:"]
                .into_iter()
                .any(|scheme| target.starts_with(scheme));
            if target.is_empty() || external {
                continue;
            }
            if let Some(why) = problem(&page, &target) {
                let shown = page.strip_prefix(&root).unwrap_or(page.as_path());
                broken.push(format!("{}: ({target}) {why}", shown.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_readme_stays_a_guide_of_at_most_600_lines() {
    let lines = read(&repository().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}: move reference material to docs/"
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    let page = "# The chat protocol: `/ws/chat`\n## `list_resources`\n## Limits\n## Limits\n\
                ```\n# Not a heading\n```\n";
    let found = anchors(page);
    let expected = [
        "the-chat-protocol-wschat",
        "list_resources",
        "limits",
        "limits-1",
    ];
    for anchor in expected {
        assert!(found.contains(anchor), "{anchor} missing from {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
    let targets = link_targets("[a](one.md#x) `[b](two.md)` ![c](three.png \"title\")");
    assert_eq!(targets, ["one.md#x", "three.png"]);
}
