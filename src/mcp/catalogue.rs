//! The tools offered to the model: every ready server's tools under names valid for function
//! calling (`^[a-zA-Z0-9_-]{1,64}$`). A tool keeps its own name when that is valid and unique;
//! a name two servers share becomes `server__tool` for each of them (deterministically: servers
//! by name, tools in listed order), and a name still taken gets `_2`, `_3`...

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::llm::ToolSpec;

/// One tool as the model sees it, and where it really lives.
#[derive(Debug, Clone)]
pub struct CatalogueTool {
    /// The name offered to the model.
    pub name: String,
    pub server: String,
    /// The tool's name on its server.
    pub tool: String,
    pub description: String,
    pub parameters: Arc<Value>,
}

/// A server's tool, before naming.
#[derive(Debug, Clone)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    pub parameters: Arc<Value>,
}

#[derive(Debug, Default)]
pub struct Catalogue {
    tools: Vec<CatalogueTool>,
    by_name: HashMap<String, usize>,
}

impl Catalogue {
    /// Names every listed tool; `servers` in name order (a `BTreeMap`) keeps it deterministic.
    pub fn build(servers: &BTreeMap<String, Vec<ListedTool>>) -> Self {
        Self::build_reserving(servers, &[])
    }

    /// Like [`Catalogue::build`], never giving a tool one of the `reserved` names as is (the
    /// built-in tools'): such a tool gets its server's prefix, as in a collision.
    pub fn build_reserving(
        servers: &BTreeMap<String, Vec<ListedTool>>,
        reserved: &[String],
    ) -> Self {
        let mut wanted: HashMap<String, usize> =
            reserved.iter().map(|name| (name.clone(), 1)).collect();
        for tools in servers.values() {
            for tool in tools {
                *wanted.entry(sanitize(&tool.name)).or_default() += 1;
            }
        }
        let mut taken: HashSet<String> = reserved.iter().cloned().collect();
        let mut catalogue = Self::default();
        for (server, tools) in servers {
            for tool in tools {
                let plain = sanitize(&tool.name);
                let base = if wanted[&plain] > 1 {
                    sanitize(&format!("{server}__{}", tool.name))
                } else {
                    plain
                };
                let name = unique(&base, &taken);
                taken.insert(name.clone());
                catalogue
                    .by_name
                    .insert(name.clone(), catalogue.tools.len());
                catalogue.tools.push(CatalogueTool {
                    name,
                    server: server.clone(),
                    tool: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                });
            }
        }
        catalogue
    }

    pub fn get(&self, name: &str) -> Option<&CatalogueTool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    pub fn tools(&self) -> &[CatalogueTool] {
        &self.tools
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The function definitions sent to the provider.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            })
            .collect()
    }
}

/// Valid characters kept, others become `_`, at most 64 characters; never empty.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("tool");
    }
    out
}

fn unique(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    // At most one candidate per taken name can be taken, so this ends.
    (2..=taken.len() + 2)
        .map(|n| {
            let suffix = format!("_{n}");
            let keep = 64 - suffix.len();
            let stem: String = base.chars().take(keep).collect();
            format!("{stem}{suffix}")
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn listed(names: &[&str]) -> Vec<ListedTool> {
        names
            .iter()
            .map(|n| ListedTool {
                name: (*n).to_string(),
                description: String::new(),
                parameters: Arc::new(json!({"type": "object", "properties": {}})),
            })
            .collect()
    }

    fn names(catalogue: &Catalogue) -> Vec<(String, String)> {
        catalogue
            .tools()
            .iter()
            .map(|t| (t.name.clone(), format!("{}/{}", t.server, t.tool)))
            .collect()
    }

    #[test]
    fn shared_names_get_their_server_as_prefix_and_unique_ones_stay() {
        let servers = BTreeMap::from([
            ("files".to_string(), listed(&["read", "search"])),
            ("web".to_string(), listed(&["search", "fetch"])),
        ]);
        let catalogue = Catalogue::build(&servers);
        assert_eq!(
            names(&catalogue),
            [
                ("read".into(), "files/read".into()),
                ("files__search".into(), "files/search".into()),
                ("web__search".into(), "web/search".into()),
                ("fetch".into(), "web/fetch".into()),
            ]
        );
        assert_eq!(
            catalogue.get("web__search").map(|t| t.tool.as_str()),
            Some("search")
        );
        // Same input, same names.
        assert_eq!(names(&Catalogue::build(&servers)), names(&catalogue));
    }

    #[test]
    fn a_tool_named_like_a_built_in_one_gets_its_server_prefix() {
        let servers = BTreeMap::from([("notes".to_string(), listed(&["memory_store", "list"]))]);
        let catalogue = Catalogue::build_reserving(&servers, &["memory_store".to_string()]);
        assert_eq!(
            names(&catalogue),
            [
                ("notes__memory_store".into(), "notes/memory_store".into()),
                ("list".into(), "notes/list".into()),
            ]
        );
    }

    #[test]
    fn invalid_names_are_made_valid_and_kept_unique() {
        let long = "x".repeat(80);
        let servers = BTreeMap::from([(
            "s".to_string(),
            listed(&["get weather", "get.weather", "", &long]),
        )]);
        let catalogue = Catalogue::build(&servers);
        let valid = regex_like(&catalogue);
        assert!(valid, "{:?}", names(&catalogue));
        let all: Vec<String> = names(&catalogue).into_iter().map(|(n, _)| n).collect();
        assert_eq!(all[0], "s__get weather".replace(' ', "_"));
        assert_eq!(all[1], "s__get_weather_2");
        assert_eq!(all[2], "tool");
        assert_eq!(all[3].len(), 64);
    }

    fn regex_like(catalogue: &Catalogue) -> bool {
        catalogue.tools().iter().all(|t| {
            (1..=64).contains(&t.name.len())
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    }
}
