//! Attachments: MCP resources a chat message names (`payload.attachments`). Each is read from
//! the server that has it before the message is stored, and stored with it as read (text, or
//! a binary's size), so every later turn of the conversation sends the same contents to the
//! model, whatever the server holds by then.

use serde::Deserialize;

use super::ChatService;
use crate::mcp::library::ResourcePart;
use crate::store::{Attachment, MAX_ATTACHMENTS};
use crate::wire::{ErrorCode, WireError};

/// Resources a message may name (each may hold several contents; [`MAX_ATTACHMENTS`] in all).
pub const MAX_ATTACHMENT_REFS: usize = 8;
/// Longest `uri` (or `server`) a client may name, in bytes.
const MAX_URI_LEN: usize = 2048;

/// A resource named by a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub uri: String,
    /// The server to read it from; by default the ready server that lists `uri`.
    #[serde(default)]
    pub server: Option<String>,
}

/// Refuses a list no message may carry: too many, an empty or overlong uri, one named twice.
pub fn check_refs(refs: &[AttachmentRef]) -> Result<(), String> {
    if refs.len() > MAX_ATTACHMENT_REFS {
        return Err(format!(
            "payload.attachments names at most {MAX_ATTACHMENT_REFS} resources"
        ));
    }
    for (index, item) in refs.iter().enumerate() {
        let bad = |s: &str| s.trim().is_empty() || s.len() > MAX_URI_LEN;
        if bad(&item.uri) || item.server.as_deref().is_some_and(bad) {
            return Err(format!(
                "payload.attachments[{index}]: uri and server must be 1-{MAX_URI_LEN} bytes"
            ));
        }
        if refs[..index].contains(item) {
            return Err(format!(
                "payload.attachments[{index}]: `{}` is attached twice",
                item.uri
            ));
        }
    }
    Ok(())
}

/// What the store keeps of one content of a resource read from `server`.
fn attachment(server: &str, part: ResourcePart) -> Attachment {
    Attachment {
        uri: part.uri,
        server: server.to_string(),
        mime_type: part.mime_type,
        bytes: part
            .text
            .as_ref()
            .map_or(part.blob_bytes.unwrap_or(0), String::len),
        text: part.text,
        truncated: part.truncated,
    }
}

impl ChatService {
    /// Reads every resource `refs` names, in order. Any that cannot be read refuses the
    /// message (nothing is stored): the error names the resource.
    pub(super) async fn read_attachments(
        &self,
        refs: &[AttachmentRef],
    ) -> Result<Vec<Attachment>, WireError> {
        let reads = refs
            .iter()
            .map(|item| self.mcp.read_resource(item.server.as_deref(), &item.uri));
        let results = futures::future::join_all(reads).await;
        let mut attachments = Vec::new();
        for (item, result) in refs.iter().zip(results) {
            let (server, parts) = result.map_err(|error| {
                let error = WireError::from(error);
                WireError::new(
                    error.code,
                    format!(
                        "the attachment `{}` cannot be read: {}",
                        item.uri, error.message
                    ),
                    error.retryable,
                )
            })?;
            if parts.is_empty() {
                return Err(WireError::new(
                    ErrorCode::NotFound,
                    format!(
                        "the attachment `{}` is empty (the server `{server}` returned no contents)",
                        item.uri
                    ),
                    false,
                ));
            }
            attachments.extend(parts.into_iter().map(|part| attachment(&server, part)));
        }
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the attachments hold {} contents; a message carries at most {MAX_ATTACHMENTS}",
                    attachments.len()
                ),
                false,
            ));
        }
        Ok(attachments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(uri: &str) -> AttachmentRef {
        AttachmentRef {
            uri: uri.into(),
            server: None,
        }
    }

    #[test]
    fn a_message_names_few_distinct_resources() {
        assert!(check_refs(&[named("a://1"), named("a://2")]).is_ok());
        let twice = check_refs(&[named("a://1"), named("a://1")]).expect_err("refused");
        assert!(twice.contains("attached twice"), "{twice}");
        let many: Vec<_> = (0..=MAX_ATTACHMENT_REFS)
            .map(|i| named(&format!("a://{i}")))
            .collect();
        assert!(
            check_refs(&many)
                .expect_err("refused")
                .contains("at most 8")
        );
        assert!(
            check_refs(&[named(" ")])
                .expect_err("refused")
                .contains("[0]")
        );
        let long = "x".repeat(MAX_URI_LEN + 1);
        assert!(check_refs(&[named(&long)]).is_err());
        let empty_server = AttachmentRef {
            uri: "a://1".into(),
            server: Some(String::new()),
        };
        assert!(check_refs(&[empty_server]).is_err());
    }

    #[test]
    fn text_and_binary_contents_are_kept_as_read() {
        let text = attachment(
            "files",
            ResourcePart {
                uri: "file:///a.txt".into(),
                mime_type: Some("text/plain".into()),
                text: Some("héllo".into()),
                blob_bytes: None,
                truncated: true,
            },
        );
        assert_eq!(text.bytes, "héllo".len());
        assert!(text.truncated);
        let binary = attachment(
            "files",
            ResourcePart {
                uri: "file:///a.png".into(),
                mime_type: Some("image/png".into()),
                text: None,
                blob_bytes: Some(1234),
                truncated: false,
            },
        );
        assert_eq!((binary.bytes, binary.text), (1234, None));
        assert_eq!(binary.server, "files");
    }
}
