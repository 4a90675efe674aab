//! What MCP servers offer besides tools, for the client: `list_resources` / `read_resource`
//! and `list_prompts` / `get_prompt`, across the ready servers, each item naming its server.
//! Each answers with one `complete` frame, or one `error`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ChatService, ServerFrame};
use crate::mcp::library::LibraryError;
use crate::wire::{ErrorCode, WireError};

/// Items per page when the client names no `limit`, and the most it may name.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

/// The library actions, with their typed payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryAction {
    ListResources(ListPage),
    ReadResource(ReadResource),
    ListPrompts(ListPage),
    GetPrompt(GetPrompt),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPage {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadResource {
    pub uri: String,
    /// The server to ask; by default the one that lists `uri`.
    #[serde(default)]
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetPrompt {
    pub name: String,
    /// The server to ask; by default the one that lists `name`.
    #[serde(default)]
    pub server: Option<String>,
    /// The prompt's arguments (strings).
    #[serde(default)]
    pub arguments: Option<Map<String, Value>>,
}

impl From<LibraryError> for WireError {
    fn from(error: LibraryError) -> Self {
        let (code, retryable) = match &error {
            LibraryError::Invalid(_) | LibraryError::Refused { .. } => {
                (ErrorCode::InvalidRequest, false)
            }
            LibraryError::NotFound(_) => (ErrorCode::NotFound, false),
            LibraryError::Unavailable(_) => (ErrorCode::Unavailable, true),
        };
        WireError::new(code, error.to_string(), retryable)
    }
}

/// A prompt's arguments must be strings (MCP's `prompts/get`).
fn string_arguments(
    arguments: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, WireError> {
    let arguments = arguments.unwrap_or_default();
    if let Some((name, _)) = arguments.iter().find(|(_, v)| !v.is_string()) {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            format!("the prompt argument `{name}` must be a string"),
            false,
        ));
    }
    Ok(arguments)
}

impl ChatService {
    pub async fn library_action(&self, request_id: &str, action: LibraryAction) -> ServerFrame {
        self.library_answer(request_id, action)
            .await
            .unwrap_or_else(|error| ServerFrame::failed(Some(request_id.into()), &error))
    }

    async fn library_answer(
        &self,
        request_id: &str,
        action: LibraryAction,
    ) -> Result<ServerFrame, WireError> {
        let limit =
            |page: &ListPage| page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        Ok(match action {
            LibraryAction::ListResources(page) => {
                let listing = self.mcp.resources(page.cursor.as_deref(), limit(&page))?;
                let metadata =
                    json!({"resources": listing.items, "next_cursor": listing.next_cursor});
                ServerFrame::result(request_id, "resources", metadata)
            }
            LibraryAction::ListPrompts(page) => {
                let listing = self.mcp.prompts(page.cursor.as_deref(), limit(&page))?;
                let metadata =
                    json!({"prompts": listing.items, "next_cursor": listing.next_cursor});
                ServerFrame::result(request_id, "prompts", metadata)
            }
            LibraryAction::ReadResource(read) => {
                let (server, contents) = self
                    .mcp
                    .read_resource(read.server.as_deref(), &read.uri)
                    .await?;
                let metadata = json!({"server": server, "uri": read.uri, "contents": contents});
                ServerFrame::result(request_id, "resource", metadata)
            }
            LibraryAction::GetPrompt(get) => {
                let arguments = string_arguments(get.arguments)?;
                let prompt = self
                    .mcp
                    .get_prompt(get.server.as_deref(), &get.name, arguments)
                    .await?;
                ServerFrame::result(request_id, "prompt", json!(prompt))
            }
        })
    }
}
