//! The typed payloads of the client frames' actions. Unknown fields are refused, so that a
//! misspelt option is an error, not silently ignored.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::chat::Decision;

/// The conversation actions, with their typed payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationAction {
    New(NewConversation),
    List(ListConversations),
    History(GetHistory),
    Update(UpdateConversation),
    Delete(DeleteConversation),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayload {
    pub approval_id: String,
    pub decision: Decision,
    /// `"conversation"`: the same decision for this tool for the rest of the conversation.
    #[serde(default)]
    pub remember: Option<Remember>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElicitPayload {
    pub elicitation_id: String,
    pub action: ElicitAction,
    /// The answer, for `accept`: an object that fits the requested schema.
    #[serde(default)]
    pub content: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElicitAction {
    Accept,
    Decline,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Remember {
    Conversation,
}

/// The memory actions, with their typed payloads.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryAction {
    List(ListMemories),
    Delete(DeleteMemory),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMemories {
    /// Newest first when absent; else the memories nearest the query, best first.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMemory {
    pub memory_id: i64,
}

/// Renames a conversation or sets its own system prompt; an absent field is kept, an empty
/// one cleared.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    pub conversation_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetHistory {
    pub conversation_id: String,
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous (newer) page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPayload {
    pub query: String,
    /// Defaults to 10; at most `memory.max_k`.
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteConversation {
    pub conversation_id: String,
}

/// `attach`: the turn's conversation, and the last `seq` the client has (0: none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachPayload {
    pub conversation_id: String,
    #[serde(default)]
    pub after_seq: u64,
}

/// The actions on what MCP servers offer besides tools, with their typed payloads.
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

/// `compact`: `{"conversation_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactPayload {
    pub conversation_id: String,
}
