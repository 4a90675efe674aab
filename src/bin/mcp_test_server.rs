//! `mcp-test-server`: a small MCP server (rmcp) that the tests run as a real child process over
//! stdio, or over Streamable HTTP with `--http 127.0.0.1:0` (it prints `listening on URL`).
//! Its tools cover what a host must handle: plain results, slow calls (with the peak number
//! running at once), a crash, a huge result, an `isError` result, a schema with `$ref`/`anyOf`,
//! non-text content, its own environment, a tool list that changes at run time, and a count of
//! the calls the client cancelled. It offers resources (a text note, a binary logo) and a
//! prompt (`greet`); the `publish` tool adds a resource and a prompt and says both lists
//! changed.
//! Tools are listed three per page, so a client must follow `nextCursor`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
    ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

const PAGE: usize = 3;

#[derive(Clone)]
struct TestServer {
    tool_router: ToolRouter<Self>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    bonus: Arc<AtomicBool>,
    cancelled: Arc<AtomicUsize>,
    published: Arc<AtomicBool>,
}

#[derive(Deserialize, JsonSchema)]
struct Text {
    /// The text to send back.
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct Sum {
    a: f64,
    b: f64,
}

#[derive(Deserialize, JsonSchema)]
struct Sleep {
    /// Milliseconds to sleep.
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Size {
    /// Bytes of text to return.
    bytes: usize,
}

#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shape {
    Circle { radius: f64 },
    Rectangle { width: f64, height: f64 },
}

#[derive(Deserialize, JsonSchema)]
struct Area {
    shape: Shape,
    /// Decimal places, if any.
    precision: Option<u32>,
}

// rmcp's `#[tool]` methods take `&self` whether they use it or not.
#[allow(clippy::unused_self)]
#[tool_router]
impl TestServer {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            running: Arc::default(),
            peak: Arc::default(),
            bonus: Arc::default(),
            cancelled: Arc::default(),
            published: Arc::default(),
        }
    }

    #[tool(description = "Returns its text unchanged")]
    fn echo(&self, Parameters(Text { text }): Parameters<Text>) -> String {
        text
    }

    #[tool(description = "Adds two numbers")]
    fn add(&self, Parameters(Sum { a, b }): Parameters<Sum>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Sleeps, then says how many sleep calls ran at once at most so far")]
    async fn sleep(
        &self,
        Parameters(Sleep { ms }): Parameters<Sleep>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let slept = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => true,
            // `notifications/cancelled` from the client.
            () = context.ct.cancelled() => false,
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        if !slept {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
            return "cancelled".into();
        }
        format!(
            "slept {ms} ms; peak concurrency {}",
            self.peak.load(Ordering::SeqCst)
        )
    }

    #[tool(description = "How many calls the client cancelled so far")]
    fn cancellations(&self) -> String {
        format!("cancelled {}", self.cancelled.load(Ordering::SeqCst))
    }

    #[tool(description = "Exits the server process at once")]
    fn crash(&self) -> String {
        std::process::exit(3)
    }

    #[tool(description = "Returns a text of the given size")]
    fn big(&self, Parameters(Size { bytes }): Parameters<Size>) -> String {
        "x".repeat(bytes)
    }

    #[tool(description = "Always fails with isError and the given text")]
    fn fail(&self, Parameters(Text { text }): Parameters<Text>) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(text)])
    }

    #[tool(description = "Area of a shape (a schema with $ref and oneOf)")]
    fn area(&self, Parameters(Area { shape, precision }): Parameters<Area>) -> String {
        let area = match shape {
            Shape::Circle { radius } => std::f64::consts::PI * radius * radius,
            Shape::Rectangle { width, height } => width * height,
        };
        format!("{area:.*}", precision.unwrap_or(2) as usize)
    }

    #[tool(description = "Returns a 1x1 PNG image and a line of text")]
    fn image(&self) -> CallToolResult {
        const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
        CallToolResult::success(vec![
            ContentBlock::image(PIXEL, "image/png"),
            ContentBlock::text("a red pixel"),
        ])
    }

    #[tool(description = "Returns the names and values of the server's environment variables")]
    fn env(&self) -> String {
        let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        serde_json::to_string(&vars).unwrap_or_default()
    }

    #[tool(description = "Adds the `bonus` tool and tells the client the tool list changed")]
    async fn unlock(&self, context: RequestContext<RoleServer>) -> String {
        self.bonus.store(true, Ordering::SeqCst);
        match context.peer.notify_tool_list_changed().await {
            Ok(()) => "unlocked".into(),
            Err(e) => format!("unlocked, but the notification failed: {e}"),
        }
    }

    #[tool(description = "Adds a resource and a prompt and tells the client both lists changed")]
    async fn publish(&self, context: RequestContext<RoleServer>) -> String {
        self.published.store(true, Ordering::SeqCst);
        let resources = context.peer.notify_resource_list_changed().await;
        let prompts = context.peer.notify_prompt_list_changed().await;
        match resources.and(prompts) {
            Ok(()) => "published".into(),
            Err(e) => format!("published, but a notification failed: {e}"),
        }
    }

    #[tool(description = "Only listed after `unlock`")]
    fn bonus(&self) -> String {
        "bonus".into()
    }
}

#[tool_handler]
impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = vec![
            Resource::new("test://notes/readme", "readme")
                .with_title("Read me")
                .with_mime_type("text/plain"),
            Resource::new("test://notes/logo", "logo").with_mime_type("image/png"),
        ];
        if self.published.load(Ordering::SeqCst) {
            resources.push(Resource::new("test://notes/news", "news").with_mime_type("text/plain"));
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let contents = match uri.as_str() {
            "test://notes/readme" => ResourceContents::text("The launch is on Friday.", &uri),
            "test://notes/news" => ResourceContents::text("Published news.", &uri),
            "test://notes/logo" => {
                ResourceContents::blob("iVBORw0KGgo=", &uri).with_mime_type("image/png")
            }
            _ => {
                return Err(ErrorData::resource_not_found(
                    format!("no resource {uri}"),
                    None,
                ));
            }
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = vec![Prompt::new(
            "greet",
            Some("Greets someone"),
            Some(vec![PromptArgument::new("name").with_required(true)]),
        )];
        if self.published.load(Ordering::SeqCst) {
            prompts.push(Prompt::new("news", Some("Tells the news"), None));
        }
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("no prompt {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| ErrorData::invalid_params("the argument `name` is required", None))?;
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Say hello to {name}."),
        )])
        .with_description("A greeting")
        .into())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        if !self.bonus.load(Ordering::SeqCst) {
            tools.retain(|t| t.name != "bonus");
        }
        let start: usize = request
            .and_then(|r| r.cursor)
            .map(|c| c.parse())
            .transpose()
            .map_err(|_| ErrorData::invalid_params("bad cursor", None))?
            .unwrap_or(0);
        let end = (start + PAGE).min(tools.len());
        let mut page = ListToolsResult::with_all_items(tools[start.min(end)..end].to_vec());
        if end < tools.len() {
            page.next_cursor = Some(end.to_string());
        }
        Ok(page)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let service = TestServer::new().serve(rmcp::transport::stdio()).await?;
            service.waiting().await?;
        }
        [flag, addr] if flag == "--http" => serve_http(addr).await?,
        _ => {
            eprintln!("usage: mcp-test-server [--http 127.0.0.1:PORT]");
            std::process::exit(2);
        }
    }
    Ok(())
}

async fn serve_http(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let server = TestServer::new();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    let router = axum::Router::new().nest_service("/mcp", service);
    axum::serve(listener, router).await?;
    Ok(())
}
