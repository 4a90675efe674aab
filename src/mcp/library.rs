//! What servers offer besides tools: resources a user can attach and prompts they can pick.
//! Each server's lists are read when it becomes ready and again on
//! `notifications/resources/list_changed` / `prompts/list_changed` (by its supervisor), kept
//! with the server, and served from memory, across servers, in pages. Reading a resource or
//! getting a prompt asks the server that has it.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    GetPromptRequestParams, PaginatedRequestParams, ReadResourceRequestParams, ResourceContents,
    Role,
};
use rmcp::{Peer, RoleClient};
use serde::Serialize;
use serde_json::{Map, Value};

/// Items of each kind kept per server (a server listing more is cut, with a warning).
pub const MAX_ITEMS: usize = 1000;
/// Listing, reading or getting takes at most this long.
pub const LIBRARY_TIMEOUT: Duration = Duration::from_secs(30);
/// A resource's text is cut past this many bytes.
pub const MAX_TEXT: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedResource {
    pub server: String,
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptArgument {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedPrompt {
    pub server: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub arguments: Vec<PromptArgument>,
}

/// One server's lists.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub resources: Arc<Vec<ListedResource>>,
    pub prompts: Arc<Vec<ListedPrompt>>,
}

/// A resource's contents: text, or binary (not read into the model's context).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourcePart {
    pub uri: String,
    pub mime_type: Option<String>,
    /// The text (cut at [`MAX_TEXT`] bytes); `None` for binary contents.
    pub text: Option<String>,
    /// Bytes of binary contents (decoded size, approximately).
    pub blob_bytes: Option<usize>,
    /// The text was longer and was cut.
    pub truncated: bool,
}

/// A prompt filled in: messages of text (other content becomes a placeholder).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptMessage {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilledPrompt {
    pub server: String,
    pub name: String,
    pub description: Option<String>,
    pub messages: Vec<PromptMessage>,
}

/// Why a resource or prompt could not be had: a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// `message` names the server and says why in plain words (`call::failure_reason`).
    #[error("{message}")]
    Refused { server: String, message: String },
}

/// Reads every page of a server's resources (when it offers them), up to [`MAX_ITEMS`].
pub async fn list_resources(
    server: &str,
    peer: &Peer<RoleClient>,
) -> Result<Vec<ListedResource>, String> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let params = PaginatedRequestParams::default().with_cursor(cursor);
        let page = tokio::time::timeout(LIBRARY_TIMEOUT, peer.list_resources(Some(params)))
            .await
            .map_err(|_| "resources/list took too long".to_string())?
            .map_err(|e| format!("resources/list failed: {e}"))?;
        items.extend(page.resources.into_iter().map(|r| ListedResource {
            server: server.to_string(),
            uri: r.uri.clone(),
            name: r.name.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            mime_type: r.mime_type.clone(),
        }));
        if items.len() >= MAX_ITEMS {
            tracing::warn!(%server, "the server lists over {MAX_ITEMS} resources; the rest are not offered");
            items.truncate(MAX_ITEMS);
            return Ok(items);
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(items),
        }
    }
}

/// Reads every page of a server's prompts (when it offers them), up to [`MAX_ITEMS`].
pub async fn list_prompts(
    server: &str,
    peer: &Peer<RoleClient>,
) -> Result<Vec<ListedPrompt>, String> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let params = PaginatedRequestParams::default().with_cursor(cursor);
        let page = tokio::time::timeout(LIBRARY_TIMEOUT, peer.list_prompts(Some(params)))
            .await
            .map_err(|_| "prompts/list took too long".to_string())?
            .map_err(|e| format!("prompts/list failed: {e}"))?;
        items.extend(page.prompts.into_iter().map(|p| {
            ListedPrompt {
                server: server.to_string(),
                name: p.name.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                arguments: p
                    .arguments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| PromptArgument {
                        name: a.name,
                        description: a.description,
                        required: a.required.unwrap_or(false),
                    })
                    .collect(),
            }
        }));
        if items.len() >= MAX_ITEMS {
            tracing::warn!(%server, "the server lists over {MAX_ITEMS} prompts; the rest are not offered");
            items.truncate(MAX_ITEMS);
            return Ok(items);
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(items),
        }
    }
}

/// Reads `uri` from `server`.
pub async fn read(
    server: &str,
    peer: &Peer<RoleClient>,
    uri: &str,
) -> Result<Vec<ResourcePart>, LibraryError> {
    let request = ReadResourceRequestParams::new(uri);
    let result = tokio::time::timeout(LIBRARY_TIMEOUT, peer.read_resource(request))
        .await
        .map_err(|_| {
            LibraryError::Unavailable(format!("the server `{server}` did not answer in time"))
        })?
        .map_err(|e| refused(server, &e))?;
    Ok(result.contents.into_iter().map(part).collect())
}

fn part(contents: ResourceContents) -> ResourcePart {
    match contents {
        ResourceContents::TextResourceContents {
            uri,
            mime_type,
            mut text,
            ..
        } => {
            let truncated = text.len() > MAX_TEXT;
            if truncated {
                let mut end = MAX_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            ResourcePart {
                uri,
                mime_type,
                text: Some(text),
                blob_bytes: None,
                truncated,
            }
        }
        ResourceContents::BlobResourceContents {
            uri,
            mime_type,
            blob,
            ..
        } => ResourcePart {
            uri,
            mime_type,
            text: None,
            blob_bytes: Some(blob.len() / 4 * 3),
            truncated: false,
        },
        other => ResourcePart {
            uri: serde_json::to_value(&other)
                .ok()
                .and_then(|v| v["uri"].as_str().map(String::from))
                .unwrap_or_default(),
            mime_type: None,
            text: None,
            blob_bytes: None,
            truncated: false,
        },
    }
}

/// Gets the prompt `name` of `server` with `arguments`.
pub async fn get_prompt(
    server: &str,
    peer: &Peer<RoleClient>,
    name: &str,
    arguments: Map<String, Value>,
) -> Result<FilledPrompt, LibraryError> {
    let mut request = GetPromptRequestParams::new(name);
    request.arguments = Some(arguments);
    let result = tokio::time::timeout(LIBRARY_TIMEOUT, peer.get_prompt(request))
        .await
        .map_err(|_| {
            LibraryError::Unavailable(format!("the server `{server}` did not answer in time"))
        })?
        .map_err(|e| refused(server, &e))?;
    Ok(FilledPrompt {
        server: server.to_string(),
        name: name.to_string(),
        description: result.description,
        messages: result
            .messages
            .into_iter()
            .map(|message| PromptMessage {
                role: if message.role == Role::User {
                    "user"
                } else {
                    "assistant"
                },
                text: content_text(&message.content),
            })
            .collect(),
    })
}

/// A content block as text: text itself, an embedded resource's text, else a placeholder.
fn content_text(content: &impl Serialize) -> String {
    let value = serde_json::to_value(content).unwrap_or_default();
    match value.get("type").and_then(Value::as_str) {
        Some("text") => value["text"].as_str().unwrap_or_default().to_string(),
        Some("resource") => {
            let resource = &value["resource"];
            match resource["text"].as_str() {
                Some(text) => text.to_string(),
                None => format!(
                    "[binary resource {}]",
                    resource["uri"].as_str().unwrap_or("?")
                ),
            }
        }
        Some(other) => format!("[{other} content]"),
        None => String::new(),
    }
}

fn refused(server: &str, error: &rmcp::ServiceError) -> LibraryError {
    LibraryError::Refused {
        server: server.to_string(),
        message: super::call::failure_reason(server, error),
    }
}

/// One page of a listing across servers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The page of `all` at `cursor` (an offset this host gave).
fn page<T: Clone>(
    all: &[T],
    cursor: Option<&str>,
    limit: usize,
) -> Result<Listing<T>, LibraryError> {
    let start = match cursor {
        None => 0,
        Some(cursor) => cursor
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= all.len())
            .ok_or_else(|| {
                LibraryError::Invalid(format!("`{cursor}` is not a cursor this server gave"))
            })?,
    };
    let end = start.saturating_add(limit.max(1)).min(all.len());
    Ok(Listing {
        items: all[start..end].to_vec(),
        next_cursor: (end < all.len()).then(|| end.to_string()),
    })
}

impl super::McpHost {
    /// Ready servers with their lists, by name.
    fn libraries(&self) -> Vec<(String, Library)> {
        self.shared
            .servers
            .iter()
            .filter(|(_, server)| server.state() == super::ServerState::Ready)
            .map(|(name, server)| (name.clone(), server.library()))
            .collect()
    }

    /// Every ready server's resources, by server name then as listed.
    pub fn resources(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing<ListedResource>, LibraryError> {
        let all: Vec<ListedResource> = self
            .libraries()
            .iter()
            .flat_map(|(_, library)| library.resources.iter().cloned())
            .collect();
        page(&all, cursor, limit)
    }

    /// Every ready server's prompts, by server name then as listed.
    pub fn prompts(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listing<ListedPrompt>, LibraryError> {
        let all: Vec<ListedPrompt> = self
            .libraries()
            .iter()
            .flat_map(|(_, library)| library.prompts.iter().cloned())
            .collect();
        page(&all, cursor, limit)
    }

    /// The ready server `named`, or the first that lists what `has` looks for.
    fn owner_of(
        &self,
        named: Option<&str>,
        what: &str,
        has: impl Fn(&Library) -> bool,
    ) -> Result<(String, Peer<RoleClient>), LibraryError> {
        let name = match named {
            Some(name) => {
                if !self.shared.servers.contains_key(name) {
                    return Err(LibraryError::NotFound(format!(
                        "there is no MCP server named `{name}`"
                    )));
                }
                name.to_string()
            }
            None => self
                .libraries()
                .into_iter()
                .find(|(_, library)| has(library))
                .map(|(name, _)| name)
                .ok_or_else(|| {
                    LibraryError::NotFound(format!(
                        "no ready MCP server lists {what}; name its `server`"
                    ))
                })?,
        };
        let peer = self.shared.servers[&name].peer().ok_or_else(|| {
            LibraryError::Unavailable(format!(
                "the MCP server `{name}` is not available now; try again later"
            ))
        })?;
        Ok((name, peer))
    }

    /// Reads `uri` from `server`, or from the server that lists it.
    pub async fn read_resource(
        &self,
        server: Option<&str>,
        uri: &str,
    ) -> Result<(String, Vec<ResourcePart>), LibraryError> {
        let (name, peer) = self.owner_of(server, &format!("the resource `{uri}`"), |l| {
            l.resources.iter().any(|r| r.uri == uri)
        })?;
        let parts = read(&name, &peer, uri).await?;
        Ok((name, parts))
    }

    /// The prompt `name` of `server` (or of the server that lists it), filled in.
    pub async fn get_prompt(
        &self,
        server: Option<&str>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<FilledPrompt, LibraryError> {
        let (server, peer) = self.owner_of(server, &format!("the prompt `{name}`"), |l| {
            l.prompts.iter().any(|p| p.name == name)
        })?;
        get_prompt(&server, &peer, name, arguments).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_cursors_and_a_foreign_cursor_is_refused() {
        let all: Vec<u32> = (0..5).collect();
        let first = page(&all, None, 2).expect("first");
        assert_eq!(first.items, [0, 1]);
        let second = page(&all, first.next_cursor.as_deref(), 2).expect("second");
        assert_eq!(second.items, [2, 3]);
        let last = page(&all, second.next_cursor.as_deref(), 2).expect("last");
        assert_eq!((last.items, last.next_cursor), (vec![4], None));
        for bad in ["x", "-1", "6"] {
            assert!(matches!(
                page(&all, Some(bad), 2),
                Err(LibraryError::Invalid(_))
            ));
        }
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_blobs_are_not_read() {
        let text = "é".repeat(MAX_TEXT);
        let cut = part(ResourceContents::text(text, "file:///a"));
        assert!(cut.truncated);
        assert!(cut.text.as_ref().is_some_and(|t| t.len() <= MAX_TEXT));
        let blob = part(ResourceContents::blob("AAAA", "file:///b"));
        assert_eq!((blob.text, blob.blob_bytes), (None, Some(3)));
    }
}
