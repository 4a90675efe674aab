//! The server as an MCP server: `memory_store`, `memory_find`, `memory_delete` and
//! `conversation_search` for other MCP clients (desktop apps, agents), served by rmcp over
//! Streamable HTTP at `/mcp` (see `http/mcp.rs`). Tool failures are `isError` results with the
//! reason, as MCP wants; a call with an unknown name is a JSON-RPC error.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, DiscoverResult,
    Implementation, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value, json};

use super::{MemoryError, MemoryService, tools};
use crate::auth::Caller;
use crate::store::PrincipalId;

pub const SEARCH: &str = "conversation_search";

/// The protocol versions `/mcp` speaks: the `initialize` era.
pub const VERSIONS: [ProtocolVersion; 2] =
    [ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25];

#[derive(serde::Deserialize)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    conversation_id: Option<String>,
}

#[derive(Clone)]
pub struct MemoryMcpServer {
    memory: Arc<MemoryService>,
}

impl MemoryMcpServer {
    pub fn new(memory: Arc<MemoryService>) -> Self {
        Self { memory }
    }

    fn tools(&self) -> Vec<Tool> {
        let max_k = self.memory.config().max_k;
        let mut specs = tools::specs(max_k);
        specs.push(crate::llm::ToolSpec {
            name: SEARCH.into(),
            description: "Search the stored chat history by similarity: best matching \
                          messages with a snippet, score, conversation and message id."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "k": {"type": "integer", "minimum": 1, "maximum": max_k},
                "conversation_id": {"type": "string", "description": "Only this conversation"}},
                "required": ["query"]}),
        });
        specs
            .into_iter()
            .map(|spec| {
                let schema = match spec.parameters {
                    Value::Object(schema) => schema,
                    _ => Map::new(),
                };
                Tool::new(spec.name, spec.description, Arc::new(schema))
            })
            .collect()
    }

    async fn run(
        &self,
        owner: PrincipalId,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, MemoryError> {
        if name != SEARCH {
            return tools::run(&self.memory, owner, name, arguments, None).await;
        }
        let args: SearchArgs = serde_json::from_value(Value::Object(arguments))
            .map_err(|e| MemoryError::Invalid(format!("invalid arguments for {SEARCH}: {e}")))?;
        let hits = self
            .memory
            .search_history(
                owner,
                &args.query,
                args.k.unwrap_or(10),
                args.conversation_id,
            )
            .await?;
        Ok(json!({"hits": hits}))
    }
}

impl ServerHandler for MemoryMcpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mcp-platform",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "Shared memory of this mcp-platform server; embedder: {}.",
                self.memory.describe()
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(VERSIONS.to_vec())
    }

    /// The `2026-07-28` discovery: not spoken here, so clients fall back to `initialize`.
    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            rmcp::model::DiscoverRequestMethod,
        >())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // The HTTP layer authenticated the request and put its caller in the request parts.
        let owner = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .map(Caller::id)
            .ok_or_else(|| {
                tracing::error!("an /mcp tool call arrived without an authenticated caller");
                ErrorData::internal_error("the request has no authenticated caller", None)
            })?;
        let name = request.name.as_ref();
        if !(tools::NAMES.contains(&name) || name == SEARCH) {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{name}`"),
                None,
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        let result = match self.run(owner, name, arguments).await {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(result.into())
    }
}
