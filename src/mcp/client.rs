//! Our side of an MCP session: identifies us and what we can do for a server (elicitation
//! always; roots when its entry lists some), turns `notifications/tools/list_changed` into a
//! signal for the server's supervisor, routes progress and questions to the call that caused
//! them ([`super::requests`]), and logs the server's log notifications at debug.

use std::sync::Arc;

// Roots and logging are deprecated for a future protocol version (SEP-2577); the versions we
// negotiate (2025-06-18, 2025-11-25) have them and servers use them.
#[allow(deprecated)]
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability,
    FormElicitationCapability, Implementation, ListRootsResult, LoggingMessageNotificationParam,
    NumberOrString, ProgressNotificationParam, Role, Root, RootsCapabilities, SamplingCapability,
    SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use tokio::sync::Notify;

use super::requests::{CallRegistry, ElicitAnswer, Elicitation, Progress, Sampling};

#[derive(Clone)]
pub struct HostClient {
    pub server: String,
    pub tools_changed: Arc<Notify>,
    /// `notifications/resources/list_changed` or `prompts/list_changed` came.
    pub library_changed: Arc<Notify>,
    /// The server's calls in flight.
    pub calls: Arc<CallRegistry>,
    /// `file://` URIs of the entry's `roots`.
    pub roots: Vec<String>,
    /// The entry says `"sampling": true`: the server may ask our model.
    pub sampling: bool,
}

#[allow(deprecated)]
impl ClientHandler for HostClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        let mut elicitation = ElicitationCapability::default();
        elicitation.form = Some(FormElicitationCapability::default());
        capabilities.elicitation = Some(elicitation);
        if !self.roots.is_empty() {
            capabilities.roots = Some(RootsCapabilities::default());
        }
        if self.sampling {
            capabilities.sampling = Some(SamplingCapability::default());
        }
        let mut info = ClientConfig::default();
        info.capabilities = capabilities;
        info.client_info = Implementation::new("mcp-platform", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.library_changed.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.library_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.calls.progress(
            &token_key(&params.progress_token.0),
            Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            },
        );
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            // We did not advertise URL elicitation.
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
        let answer = self.calls.elicit(Elicitation { message, schema }).await;
        Ok(match answer {
            ElicitAnswer::Accept(content) => ElicitResult::new(ElicitationAction::Accept)
                .with_content(serde_json::Value::Object(content)),
            ElicitAnswer::Decline => ElicitResult::new(ElicitationAction::Decline),
            ElicitAnswer::Cancel => ElicitResult::new(ElicitationAction::Cancel),
        })
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        if !self.sampling {
            return Err(ErrorData::invalid_request(
                "sampling is not enabled for this server (its entry needs \"sampling\": true)",
                None,
            ));
        }
        let request = Sampling {
            system_prompt: params.system_prompt.clone(),
            messages: params
                .messages
                .iter()
                .map(|m| (m.role == Role::User, sampling_text(&m.content)))
                .collect(),
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            hints: params
                .model_preferences
                .as_ref()
                .and_then(|p| p.hints.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|h| h.name.clone())
                .collect(),
        };
        match self.calls.sample(request).await {
            Ok(sampled) => Ok(CreateMessageResult::new(
                SamplingMessage::assistant_text(sampled.text),
                sampled.model,
            )
            .with_stop_reason(sampled.stop_reason)),
            Err(reason) => Err(ErrorData::internal_error(reason, None)),
        }
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(
            self.roots
                .iter()
                .map(|uri| Root::new(uri.clone()))
                .collect(),
        ))
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        tracing::debug!(server = %self.server, level = ?params.level, logger = ?params.logger, data = %params.data, "MCP server log");
    }
}

/// A progress token as the call registry keys it.
pub fn token_key(token: &NumberOrString) -> String {
    match token {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.to_string(),
    }
}

/// The text of a sampling message's content (one block or several); other content becomes a
/// placeholder the model can read.
fn sampling_text(content: &impl serde::Serialize) -> String {
    let value = serde_json::to_value(content).unwrap_or_default();
    let block = |block: &serde_json::Value| match block.get("type").and_then(|t| t.as_str()) {
        Some("text") => block["text"].as_str().unwrap_or_default().to_string(),
        Some(other) => format!("[{other} content]"),
        None => String::new(),
    };
    match &value {
        serde_json::Value::Array(blocks) => blocks.iter().map(block).collect::<Vec<_>>().join("\n"),
        single => block(single),
    }
}
