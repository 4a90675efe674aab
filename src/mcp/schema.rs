//! MCP `inputSchema` → a provider's function `parameters`. MCP servers publish full JSON Schema
//! (2020-12, often generated: `$ref`/`$defs`, `oneOf`, type arrays); providers accept a subset
//! (OpenAI, and stricter ones behind OpenRouter or Groq, reject `$ref`, `oneOf`, type arrays or
//! unknown keywords). The conversion:
//!
//! - `$ref` to `#/$defs/…` or `#/definitions/…` is inlined (a recursive one, past
//!   [`MAX_DEPTH`], becomes a free-form object); `$defs`/`definitions` are dropped;
//! - `oneOf` becomes `anyOf`; `allOf` of objects is merged; `const` becomes a one-value `enum`;
//! - `type: ["T", "null"]` becomes `type: "T"` (the field stays optional unless required);
//!   several non-null types become an `anyOf`;
//! - keywords outside the portable subset are dropped; a root without `type` is an object,
//!   and an object always has `properties`; `required` names only existing properties.
//!
//! Conversions are cached by a SHA-256 of the schema text (quick_cache), with hits and misses
//! in `/health` `cache_stats.schema`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::stats::CacheSnapshot;

/// Inlining depth past which a (recursive) `$ref` becomes a free-form object.
pub const MAX_DEPTH: usize = 12;

/// Keywords kept; every other one is dropped.
const PORTABLE: &[&str] = &[
    "type",
    "description",
    "title",
    "properties",
    "required",
    "items",
    "enum",
    "anyOf",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
    "additionalProperties",
];

/// Converts one schema.
pub fn convert(schema: &Value) -> Value {
    let defs = collect_defs(schema);
    let mut root = convert_node(schema, &defs, 0);
    if let Value::Object(object) = &mut root {
        if !object.contains_key("type") && !object.contains_key("anyOf") {
            object.insert("type".into(), json!("object"));
        }
        if object.get("type") == Some(&json!("object")) {
            object
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
        }
    } else {
        root = json!({"type": "object", "properties": {}});
    }
    root
}

fn collect_defs(schema: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["definitions", "$defs"] {
        if let Some(Value::Object(found)) = schema.get(key) {
            for (name, def) in found {
                defs.insert(format!("#/{key}/{name}"), def.clone());
            }
        }
    }
    defs
}

fn convert_node(node: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Value::Object(object) = node else {
        // `true` (anything) or a malformed node: accept anything.
        return json!({});
    };
    if let Some(Value::String(reference)) = object.get("$ref") {
        return match defs.get(reference) {
            Some(target) if depth < MAX_DEPTH => {
                let mut resolved = convert_node(target, defs, depth + 1);
                // Keywords beside a `$ref` (a description, say) refine the target.
                if let (Value::Object(resolved), Value::Object(local)) = (
                    &mut resolved,
                    convert_node(&without_ref(object), defs, depth + 1),
                ) {
                    for (key, value) in local {
                        if key != "type" || !resolved.contains_key("anyOf") {
                            resolved.insert(key, value);
                        }
                    }
                }
                resolved
            }
            _ => {
                json!({"type": "object", "description": "(recursive or external schema, not expanded)"})
            }
        };
    }
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "properties" => {
                if let Value::Object(properties) = value {
                    let converted = properties
                        .iter()
                        .map(|(name, p)| (name.clone(), convert_node(p, defs, depth + 1)))
                        .collect();
                    // `allOf` parts may have brought properties already: unite them.
                    merge(
                        &mut out,
                        Map::from_iter([(key.clone(), Value::Object(converted))]),
                    );
                }
            }
            "items" => {
                out.insert(key.clone(), convert_node(value, defs, depth + 1));
            }
            "additionalProperties" => {
                let converted = match value {
                    Value::Bool(b) => Value::Bool(*b),
                    other => convert_node(other, defs, depth + 1),
                };
                out.insert(key.clone(), converted);
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(options) = value {
                    let options = options
                        .iter()
                        .map(|o| convert_node(o, defs, depth + 1))
                        .collect();
                    out.insert("anyOf".into(), Value::Array(options));
                }
            }
            "allOf" => {
                if let Value::Array(parts) = value {
                    for part in parts {
                        if let Value::Object(part) = convert_node(part, defs, depth + 1) {
                            merge(&mut out, part);
                        }
                    }
                }
            }
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "type" => {
                if let Some((kind, alternatives)) = simplify_type(value) {
                    out.insert("type".into(), kind);
                    if let Some(alternatives) = alternatives {
                        out.remove("type");
                        out.insert("anyOf".into(), alternatives);
                    }
                }
            }
            "required" => merge(&mut out, Map::from_iter([(key.clone(), value.clone())])),
            other if PORTABLE.contains(&other) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    tidy_required(&mut out);
    if out.get("type") == Some(&json!("object")) && !out.contains_key("properties") {
        out.insert("properties".into(), Value::Object(Map::new()));
    }
    Value::Object(out)
}

fn without_ref(object: &Map<String, Value>) -> Value {
    let mut local = object.clone();
    local.remove("$ref");
    Value::Object(local)
}

/// `["T", "null"]` → `"T"`; several non-null types → an `anyOf` of them.
fn simplify_type(value: &Value) -> Option<(Value, Option<Value>)> {
    match value {
        Value::String(_) => Some((value.clone(), None)),
        Value::Array(types) => {
            let kinds: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            match kinds.as_slice() {
                [] => Some((json!("null"), None)),
                [one] => Some(((*one).clone(), None)),
                many => {
                    let options = many.iter().map(|t| json!({"type": t})).collect();
                    Some((Value::Null, Some(Value::Array(options))))
                }
            }
        }
        _ => None,
    }
}

/// Merges an `allOf` part into `out`: properties and required lists unite.
fn merge(out: &mut Map<String, Value>, part: Map<String, Value>) {
    for (key, value) in part {
        match (key.as_str(), out.get_mut(&key), value) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                mine.extend(theirs);
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                for name in theirs {
                    if !mine.contains(&name) {
                        mine.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                out.insert(key, value);
            }
        }
    }
}

/// `required` keeps only names of existing properties, and goes if empty.
fn tidy_required(out: &mut Map<String, Value>) {
    let Some(Value::Array(required)) = out.get("required") else {
        return;
    };
    let properties = out.get("properties").and_then(Value::as_object);
    let kept: Vec<Value> = required
        .iter()
        .filter(|name| {
            name.as_str()
                .is_some_and(|n| properties.is_some_and(|p| p.contains_key(n)))
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        out.remove("required");
    } else {
        out.insert("required".into(), Value::Array(kept));
    }
}

/// Conversions by schema hash.
pub struct SchemaCache {
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Value>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SchemaCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn convert(&self, schema: &Value) -> Arc<Value> {
        let key: [u8; 32] = Sha256::digest(schema.to_string().as_bytes()).into();
        if let Some(found) = self.cache.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return found;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let converted = Arc::new(convert(schema));
        self.cache.insert(key, converted.clone());
        converted
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.len(),
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_inlined_one_of_becomes_any_of_and_nullable_types_simplify() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "shape": {"$ref": "#/$defs/Shape", "description": "what to measure"},
                "precision": {"type": ["integer", "null"], "format": "uint32", "minimum": 0}
            },
            "required": ["shape", "ghost"],
            "$defs": {
                "Shape": {"oneOf": [
                    {"type": "object", "properties": {"kind": {"const": "circle"}, "radius": {"type": "number"}},
                     "required": ["kind", "radius"]},
                    {"type": "object", "properties": {"kind": {"type": "string", "enum": ["rectangle"]}}}
                ]}
            }
        });
        let converted = convert(&schema);
        assert!(converted.get("$defs").is_none() && converted.get("$schema").is_none());
        let shape = &converted["properties"]["shape"];
        assert_eq!(shape["description"], "what to measure");
        assert_eq!(
            shape["anyOf"][0]["properties"]["kind"]["enum"],
            json!(["circle"])
        );
        assert_eq!(converted["properties"]["precision"]["type"], "integer");
        assert_eq!(converted["required"], json!(["shape"]));
        assert!(
            !converted.to_string().contains("$ref") && !converted.to_string().contains("oneOf")
        );
    }

    #[test]
    fn a_missing_type_or_properties_gets_a_portable_object() {
        assert_eq!(
            convert(&json!({})),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            convert(&json!(true)),
            json!({"type": "object", "properties": {}})
        );
        let converted = convert(&json!({"properties": {"q": {"type": "string"}}, "not": {}}));
        assert_eq!(
            converted,
            json!({"type": "object", "properties": {"q": {"type": "string"}}})
        );
    }

    #[test]
    fn recursive_refs_stop_and_all_of_merges() {
        let schema = json!({
            "type": "object",
            "properties": {"tree": {"$ref": "#/definitions/Node"}},
            "definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Node"}}}},
            "allOf": [{"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]}]
        });
        let converted = convert(&schema);
        assert_eq!(converted["properties"]["extra"]["type"], "boolean");
        assert_eq!(converted["required"], json!(["extra"]));
        let text = converted.to_string();
        assert!(text.contains("not expanded") && text.len() < 20_000);
    }

    #[test]
    fn multi_type_fields_become_any_of() {
        let converted =
            convert(&json!({"properties": {"id": {"type": ["string", "integer", "null"]}}}));
        assert_eq!(
            converted["properties"]["id"],
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }

    #[test]
    fn the_cache_counts_hits_and_misses() {
        let cache = SchemaCache::new(16);
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let first = cache.convert(&schema);
        let second = cache.convert(&schema);
        assert!(Arc::ptr_eq(&first, &second));
        let stats = cache.snapshot();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    }
}
