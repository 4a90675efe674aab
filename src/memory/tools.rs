//! The built-in memory tools, `memory_store`, `memory_find` and `memory_delete`: offered to the
//! model beside the MCP tools (same loop, same frames) and served to MCP clients at `/mcp`.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{MemoryError, MemoryService};
use crate::auth::Caller;
use crate::llm::ToolSpec;
use crate::mcp::{ToolOutcome, parse_arguments};

pub const STORE: &str = "memory_store";
pub const FIND: &str = "memory_find";
pub const DELETE: &str = "memory_delete";
pub const NAMES: [&str; 3] = [STORE, FIND, DELETE];

const DEFAULT_K: usize = 5;

/// The three tools' definitions.
pub fn specs(max_k: usize) -> Vec<ToolSpec> {
    // Offered on every turn: built once (for the configured `max_k`) and shared.
    static BUILT: Mutex<Option<(usize, Vec<ToolSpec>)>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    match &*built {
        Some((k, specs)) if *k == max_k => specs.clone(),
        _ => {
            let specs = build_specs(max_k);
            *built = Some((max_k, specs.clone()));
            specs
        }
    }
}

fn build_specs(max_k: usize) -> Vec<ToolSpec> {
    let tags = json!({"type": "array", "items": {"type": "string"}, "maxItems": crate::store::MAX_TAGS,
        "description": "Short lowercase labels, e.g. [\"preferences\", \"project-x\"]"});
    vec![
        ToolSpec {
            name: STORE.into(),
            description: "Remember a fact for later conversations: one self-contained statement."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "text": {"type": "string", "description": "What to remember"},
                "tags": tags}, "required": ["text"]})
            .into(),
        },
        ToolSpec {
            name: FIND.into(),
            description: "Find remembered facts similar to a query, best first, with their ids."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "k": {"type": "integer", "minimum": 1, "maximum": max_k,
                      "description": format!("How many (default {DEFAULT_K})")},
                "tags": tags}, "required": ["query"]})
            .into(),
        },
        ToolSpec {
            name: DELETE.into(),
            description: "Forget a remembered fact by its id (from memory_find).".into(),
            parameters: json!({"type": "object", "properties": {
                "id": {"type": "integer"}}, "required": ["id"]})
            .into(),
        },
    ]
}

#[derive(Deserialize)]
struct StoreArgs {
    text: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct FindArgs {
    query: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct DeleteArgs {
    id: i64,
}

fn typed<T: for<'de> Deserialize<'de>>(
    name: &str,
    arguments: Map<String, Value>,
) -> Result<T, MemoryError> {
    serde_json::from_value(Value::Object(arguments))
        .map_err(|e| MemoryError::Invalid(format!("invalid arguments for {name}: {e}")))
}

/// Runs tool `name` (one of [`NAMES`]) and returns its JSON result.
pub async fn run(
    memory: &MemoryService,
    caller: &Caller,
    name: &str,
    arguments: Map<String, Value>,
    conversation: Option<&str>,
) -> Result<Value, MemoryError> {
    match name {
        STORE => {
            let args: StoreArgs = typed(name, arguments)?;
            let memory = memory
                .remember(
                    caller,
                    &args.text,
                    args.tags,
                    conversation.map(String::from),
                )
                .await?;
            Ok(json!({"id": memory.id, "text": memory.text, "tags": memory.tags}))
        }
        FIND => {
            let args: FindArgs = typed(name, arguments)?;
            let hits = memory
                .recall(
                    caller,
                    &args.query,
                    args.k.unwrap_or(DEFAULT_K),
                    args.tags,
                    None,
                )
                .await?;
            let hits: Vec<Value> = hits
                .into_iter()
                .map(|h| {
                    json!({"id": h.memory.id, "text": h.memory.text, "tags": h.memory.tags,
                                "score": (h.score * 1000.0).round() / 1000.0})
                })
                .collect();
            Ok(json!({"memories": hits}))
        }
        DELETE => {
            let args: DeleteArgs = typed(name, arguments)?;
            memory.forget(caller.id(), args.id).await?;
            Ok(json!({"deleted": args.id}))
        }
        other => Err(MemoryError::Invalid(format!(
            "`{other}` is not a memory tool"
        ))),
    }
}

/// A call from the chat's tool loop: the result, or the error, as the model reads it.
pub async fn call(
    memory: &MemoryService,
    caller: &Caller,
    name: &str,
    arguments: &str,
    conversation: Option<&str>,
) -> ToolOutcome {
    let started = Instant::now();
    let arguments = match parse_arguments(arguments) {
        Ok(arguments) => arguments,
        Err(message) => return ToolOutcome::failed(message, started.elapsed()),
    };
    match run(memory, caller, name, arguments, conversation).await {
        Ok(result) => ToolOutcome {
            ok: true,
            denied: false,
            content: result.to_string(),
            took: started.elapsed(),
        },
        Err(error) => ToolOutcome::failed(format!("{name} failed: {error}"), started.elapsed()),
    }
}
