//! What MCP servers offer besides tools, for the client: their resources (listed, read) and
//! prompts (listed, filled in), across the ready servers, each item naming its server.

use serde::Serialize;
use serde_json::{Map, Value};

use super::ChatService;
use crate::mcp::library::{
    FilledPrompt, LibraryError, ListedPrompt, ListedResource, Listing, ResourcePart,
};
use crate::wire::{ErrorCode, WireError};

/// Items per page when the caller names no `limit`, and the most it may name.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

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

/// A resource's contents, as its server gave them.
#[derive(Debug, Serialize)]
pub struct ResourceRead {
    pub server: String,
    pub uri: String,
    pub contents: Vec<ResourcePart>,
}

fn page_size(limit: Option<u32>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize
}

impl ChatService {
    /// The ready servers' resources, a page at `cursor`.
    pub fn resources(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Listing<ListedResource>, WireError> {
        Ok(self.mcp.resources(cursor, page_size(limit))?)
    }

    /// The ready servers' prompts, a page at `cursor`.
    pub fn prompts(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Listing<ListedPrompt>, WireError> {
        Ok(self.mcp.prompts(cursor, page_size(limit))?)
    }

    /// Reads `uri` from `server`, by default the one that lists it.
    pub async fn read_resource(
        &self,
        server: Option<&str>,
        uri: String,
    ) -> Result<ResourceRead, WireError> {
        let (server, contents) = self.mcp.read_resource(server, &uri).await?;
        Ok(ResourceRead {
            server,
            uri,
            contents,
        })
    }

    /// The prompt `name` of `server` (by default the one that lists it), filled in with
    /// `arguments`, which must be strings.
    pub async fn get_prompt(
        &self,
        server: Option<&str>,
        name: &str,
        arguments: Option<Map<String, Value>>,
    ) -> Result<FilledPrompt, WireError> {
        let arguments = string_arguments(arguments)?;
        Ok(self.mcp.get_prompt(server, name, arguments).await?)
    }
}
