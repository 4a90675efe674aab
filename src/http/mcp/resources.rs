//! What `/mcp` offers besides tools, all scoped to the caller's key: the caller's
//! conversations as resources (`mcp-platform://conversations/{id}`, a Markdown transcript) and
//! their memories (`mcp-platform://memories`), the conversation template with completion of
//! its `id`, and two prompts: `recall` (what was said and remembered about a topic) and
//! `summarize_conversation`.

use std::fmt::Write;

use rmcp::ErrorData;
use rmcp::model::{
    CompletionInfo, GetPromptResult, ListResourcesResult, Prompt, PromptArgument, PromptMessage,
    ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role,
};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::chat::ChatService;
use crate::memory::{MemoryError, MemoryService};
use crate::store::{Conversation, ConversationId, Role as MessageRole};
use crate::wire::{ErrorCode, WireError};

const CONVERSATIONS: &str = "mcp-platform://conversations/";
const CONVERSATION_TEMPLATE: &str = "mcp-platform://conversations/{id}";
const MEMORIES: &str = "mcp-platform://memories";
/// Conversations per `resources/list` page.
const PAGE: u32 = 50;
/// Memories in the memories resource (the newest).
const MEMORIES_SHOWN: u32 = 200;
/// A transcript stops past this many bytes, saying so.
const TRANSCRIPT_MAX: usize = 1 << 20;
/// Conversations looked through to complete an `id`.
const COMPLETION_SCAN: u32 = 200;
/// Hits of each kind a `recall` prompt carries.
const RECALL_HITS: usize = 5;

pub const RECALL: &str = "recall";
pub const SUMMARIZE: &str = "summarize_conversation";

/// An operation's error as JSON-RPC's: what is not the caller's is not found.
fn refused(error: WireError) -> ErrorData {
    match error.code {
        ErrorCode::NotFound => ErrorData::resource_not_found(error.message, None),
        ErrorCode::InvalidRequest => ErrorData::invalid_params(error.message, None),
        // Internals are already masked (and logged).
        _ => ErrorData::internal_error(error.message, None),
    }
}

/// One page of the caller's conversations (most recent first), then the memories resource.
pub async fn list(
    chat: &ChatService,
    caller: &Caller,
    cursor: Option<String>,
) -> Result<ListResourcesResult, ErrorData> {
    let mut resources = Vec::new();
    if cursor.is_none() {
        resources.push(
            Resource::new(MEMORIES, "memories")
                .with_title("Memories")
                .with_description("What was stored with memory_store, newest first")
                .with_mime_type("text/markdown"),
        );
    }
    let page = chat
        .list_conversations(caller, Some(PAGE), cursor)
        .await
        .map_err(refused)?;
    resources.extend(page.items.iter().map(conversation_resource));
    let mut result = ListResourcesResult::with_all_items(resources);
    result.next_cursor = page.next_cursor;
    Ok(result)
}

fn conversation_resource(conversation: &Conversation) -> Resource {
    Resource::new(
        format!("{CONVERSATIONS}{}", conversation.id.as_str()),
        title_of(conversation),
    )
    .with_description(format!(
        "Conversation of {} messages",
        conversation.message_count
    ))
    .with_mime_type("text/markdown")
}

fn title_of(conversation: &Conversation) -> String {
    conversation
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "Untitled conversation".into())
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(CONVERSATION_TEMPLATE, "conversation")
            .with_title("A conversation")
            .with_description("A conversation's transcript in Markdown, by its id")
            .with_mime_type("text/markdown"),
    ]
}

/// The contents of `uri`.
pub async fn read(
    chat: &ChatService,
    caller: &Caller,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let text = if uri == MEMORIES {
        memories(chat, caller).await?
    } else if let Some(id) = uri.strip_prefix(CONVERSATIONS) {
        transcript(chat, caller, id).await?
    } else {
        return Err(ErrorData::resource_not_found(
            format!("no resource `{uri}`: resources/list names them"),
            None,
        ));
    };
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type("text/markdown"),
    ]))
}

async fn memories(chat: &ChatService, caller: &Caller) -> Result<String, ErrorData> {
    let memories = chat
        .memory_page(caller, MEMORIES_SHOWN, None)
        .await
        .map_err(refused)?
        .items;
    let mut text = String::from("# Memories\n\n");
    if memories.is_empty() {
        text.push_str("_None stored yet._\n");
    }
    for memory in &memories {
        let tags = if memory.tags.is_empty() {
            String::new()
        } else {
            format!(" _({})_", memory.tags.join(", "))
        };
        let _ = writeln!(text, "- {} {tags} [#{}]", memory.text.trim(), memory.id);
    }
    Ok(text)
}

/// A conversation as Markdown: each message under its role; tool calls and results named.
async fn transcript(chat: &ChatService, caller: &Caller, id: &str) -> Result<String, ErrorData> {
    if ConversationId::try_from(id.to_string()).is_err() {
        return Err(ErrorData::resource_not_found(
            format!("`{id}` is not a conversation id"),
            None,
        ));
    }
    let (conversation, messages) = chat
        .whole_conversation(caller, id.to_string())
        .await
        .map_err(refused)?;
    let mut text = format!("# {}\n", title_of(&conversation));
    for message in &messages {
        let heading = match message.role {
            MessageRole::User => "User",
            MessageRole::Assistant => "Assistant",
            MessageRole::System => "System",
            MessageRole::Tool => "Tool result",
        };
        let _ = write!(text, "\n## {heading}\n\n{}\n", message.content.trim());
        for call in message
            .tool_calls
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = call["name"].as_str().unwrap_or("?");
            let _ = write!(text, "\n_called `{name}`_\n");
        }
        if text.len() > TRANSCRIPT_MAX {
            text.push_str("\n_(transcript cut: it is longer than 1 MB)_\n");
            break;
        }
    }
    Ok(text)
}

pub fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            RECALL,
            Some("Recall what was discussed and remembered about a topic"),
            Some(vec![
                PromptArgument::new("topic")
                    .with_description("What to recall, in a few words")
                    .with_required(true),
            ]),
        )
        .with_title("Recall a topic"),
        Prompt::new(
            SUMMARIZE,
            Some("Summarize one stored conversation"),
            Some(vec![
                PromptArgument::new("conversation_id")
                    .with_description("The conversation's id (completion offers them)")
                    .with_required(true),
            ]),
        )
        .with_title("Summarize a conversation"),
    ]
}

fn argument<'a>(
    arguments: Option<&'a Map<String, Value>>,
    name: &str,
) -> Result<&'a str, ErrorData> {
    arguments
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ErrorData::invalid_params(format!("the argument `{name}` is required"), None)
        })
}

/// The prompt `name` with its arguments filled in.
pub async fn prompt(
    chat: &ChatService,
    memory: &MemoryService,
    caller: &Caller,
    name: &str,
    arguments: Option<&Map<String, Value>>,
) -> Result<GetPromptResult, ErrorData> {
    match name {
        RECALL => {
            let topic = argument(arguments, "topic")?;
            recall(memory, caller, topic).await
        }
        SUMMARIZE => {
            let id = argument(arguments, "conversation_id")?;
            let uri = format!("{CONVERSATIONS}{id}");
            let text = transcript(chat, caller, id).await?;
            Ok(GetPromptResult::new(vec![
                PromptMessage::new_resource(
                    Role::User,
                    uri,
                    Some("text/markdown".into()),
                    Some(text),
                    None,
                    None,
                    None,
                ),
                PromptMessage::new_text(
                    Role::User,
                    "Summarize the conversation above: what was asked, what was decided, \
                     and what is still open.",
                ),
            ])
            .with_description("Summarize a conversation"))
        }
        other => Err(ErrorData::invalid_params(
            format!("no prompt named `{other}`: prompts/list names them"),
            None,
        )),
    }
}

async fn recall(
    memory: &MemoryService,
    caller: &Caller,
    topic: &str,
) -> Result<GetPromptResult, ErrorData> {
    let failed = |error: MemoryError| ErrorData::internal_error(error.to_string(), None);
    let memories = memory
        .recall(caller, topic, RECALL_HITS, Vec::new(), None)
        .await
        .map_err(failed)?;
    let said = memory
        .search_history(caller, topic, RECALL_HITS, None)
        .await
        .map_err(failed)?;
    let mut context = format!("What is on record about \"{topic}\".\n\nMemories:\n");
    if memories.is_empty() {
        context.push_str("- none\n");
    }
    for hit in &memories {
        let _ = writeln!(context, "- {}", hit.memory.text.trim());
    }
    context.push_str("\nFrom past conversations:\n");
    if said.is_empty() {
        context.push_str("- nothing\n");
    }
    for hit in &said {
        let _ = writeln!(
            context,
            "- ({}, conversation {}) {}",
            hit.role,
            hit.conversation_id,
            hit.snippet.trim()
        );
    }
    Ok(GetPromptResult::new(vec![
        PromptMessage::new_text(Role::User, context),
        PromptMessage::new_text(
            Role::User,
            format!("Recall what we discussed about {topic}, from the record above."),
        ),
    ])
    .with_description(format!("Recall {topic}")))
}

/// Values for a conversation id (the template's `id`, the summarize prompt's
/// `conversation_id`): the caller's recent conversations whose id or title starts with what
/// was typed (or whose title contains it).
pub async fn complete(
    chat: &ChatService,
    caller: &Caller,
    reference: &Reference,
    argument: &str,
    typed: &str,
) -> Result<CompletionInfo, ErrorData> {
    let completes_an_id = match reference {
        Reference::Resource(template) => template.uri == CONVERSATION_TEMPLATE && argument == "id",
        Reference::Prompt(prompt) => prompt.name == SUMMARIZE && argument == "conversation_id",
        _ => false,
    };
    if !completes_an_id {
        return Ok(CompletionInfo::default());
    }
    let page = chat
        .list_conversations(caller, Some(COMPLETION_SCAN), None)
        .await
        .map_err(refused)?;
    let typed = typed.to_lowercase();
    let values: Vec<String> = page
        .items
        .iter()
        .filter(|c| {
            let title = c.title.as_deref().unwrap_or_default().to_lowercase();
            c.id.as_str().starts_with(&typed) || title.contains(&typed)
        })
        .map(|c| c.id.as_str().to_string())
        .collect();
    let total = u32::try_from(values.len()).unwrap_or(u32::MAX);
    let more = values.len() > CompletionInfo::MAX_VALUES;
    let shown = values
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .collect();
    CompletionInfo::with_pagination(shown, Some(total), more)
        .map_err(|e| ErrorData::internal_error(e, None))
}
