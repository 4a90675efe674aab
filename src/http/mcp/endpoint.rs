//! The server as an MCP server: `memory_store`, `memory_find`, `memory_delete` and
//! `conversation_search` for other MCP clients (desktop apps, agents), served by rmcp over
//! Streamable HTTP at `/mcp` (see [`super`]); the caller's conversations and memories as
//! resources, two prompts and completion ([`super::resources`]); `logging/setLevel`. Tool
//! failures are `isError` results with the reason, as MCP wants; a call with an unknown name
//! or malformed params is a JSON-RPC error (-32602). Everything is scoped to the caller's key.
// Logging is deprecated for a future protocol version (SEP-2577); the versions `/mcp` speaks
// (2025-06-18, 2025-11-25) have it and clients use it.
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, CustomRequest, CustomResult, DiscoverResult, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value, json};
use std::sync::Mutex;

use super::resources;
use crate::auth::Caller;
use crate::chat::ChatService;
use crate::memory::{MemoryService, tools};
use crate::wire::{ErrorCode, WireError};

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

/// One `/mcp` session's handler ([`McpEndpoint::session`] makes a fresh one per session).
#[derive(Clone)]
pub struct McpEndpoint {
    chat: Arc<ChatService>,
    memory: Arc<MemoryService>,
    /// The level the client asked for with `logging/setLevel`: log messages at or above it
    /// are sent to it; none before it asks.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

/// The caller the HTTP layer authenticated, from the request's parts.
fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| {
            tracing::error!("an /mcp request arrived without an authenticated caller");
            ErrorData::internal_error("the request has no authenticated caller", None)
        })
}

/// The methods whose params rmcp reads into a type: one that could not be read arrives as a
/// custom request, and is answered -32602 (invalid params), not -32601.
const TYPED_METHODS: [&str; 12] = [
    "initialize",
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl McpEndpoint {
    pub fn new(chat: Arc<ChatService>, memory: Arc<MemoryService>) -> Self {
        Self {
            chat,
            memory,
            log_level: Arc::default(),
        }
    }

    /// A handler for a new session: the same services, its own log level.
    #[must_use]
    pub fn session(&self) -> Self {
        Self::new(self.chat.clone(), self.memory.clone())
    }

    /// Sends `message` to the client if it asked for logs at `level` or below.
    async fn log(
        &self,
        context: &RequestContext<RoleServer>,
        level: LoggingLevel,
        message: String,
    ) {
        let wanted = *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if wanted.is_some_and(|wanted| severity(level) >= severity(wanted)) {
            let param = LoggingMessageNotificationParam::new(level, Value::String(message))
                .with_logger("mcp-platform");
            let _ = context.peer.notify_logging_message(param).await;
        }
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
                "required": ["query"]})
            .into(),
        });
        specs
            .into_iter()
            .map(|spec| {
                let schema = match &*spec.parameters {
                    Value::Object(schema) => schema.clone(),
                    _ => Map::new(),
                };
                Tool::new(spec.name, spec.description, Arc::new(schema))
            })
            .collect()
    }

    async fn run(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, String> {
        if name != SEARCH {
            return tools::run(&self.memory, caller, name, arguments, None)
                .await
                .map_err(|error| WireError::from(error).message);
        }
        let args: SearchArgs = serde_json::from_value(Value::Object(arguments))
            .map_err(|e| format!("invalid arguments for {SEARCH}: {e}"))?;
        let scoped = args.conversation_id.is_some();
        match self
            .chat
            .search_history(caller, args.query, args.k, args.conversation_id)
            .await
        {
            Ok(results) => Ok(json!({"hits": results.hits})),
            // A tool's answer about a conversation the caller cannot see: no hits, as in
            // one it can see with nothing matching (the socket's `search` says not_found).
            Err(error) if scoped && error.code == ErrorCode::NotFound => Ok(json!({"hits": []})),
            Err(error) => Err(error.message),
        }
    }
}

impl ServerHandler for McpEndpoint {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .enable_logging()
                .build(),
        )
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
        let who = caller(&context)?;
        let name = request.name.as_ref();
        if !(tools::NAMES.contains(&name) || name == SEARCH) {
            return Err(ErrorData::invalid_params(
                format!("no tool named `{name}`"),
                None,
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        let result = match self.run(&who, name, arguments).await {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(error) => {
                self.log(&context, LoggingLevel::Warning, format!("{name}: {error}"))
                    .await;
                CallToolResult::error(vec![ContentBlock::text(error)])
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        resources::list(&self.chat, &caller(&context)?, cursor).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&self.chat, &caller(&context)?, &request.uri)
            .await
            .map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(resources::prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        resources::prompt(
            &self.chat,
            &self.memory,
            &caller(&context)?,
            &request.name,
            request.arguments.as_ref(),
        )
        .await
        .map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let completion = resources::complete(
            &self.chat,
            &caller(&context)?,
            &request.r#ref,
            &request.argument.name,
            &request.argument.value,
        )
        .await?;
        Ok(CompleteResult::new(completion))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(request.level);
        Ok(())
    }

    /// A known method whose params could not be read arrives here: -32602 with the reason.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method.as_str();
        if TYPED_METHODS.contains(&method) {
            return Err(ErrorData::invalid_params(
                format!("invalid params for {method}: see the MCP schema of this method"),
                None,
            ));
        }
        Err(ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
            None,
        ))
    }
}
