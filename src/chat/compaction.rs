//! Compaction: when the provider says a turn's prompt is longer than the model's context
//! (`context_length_exceeded` or its equivalents), the history before the current message is
//! summarised by the model, once, into a stored summary message, and the turn goes on with the
//! summary and the current message (a `context_compacted` notice tells the client). A second
//! overflow ends the turn with `context_too_large`: never a blind retry, never a loop.
//!
//! A summary is a `system` message whose text starts with [`SUMMARY_PREFIX`]. Later turns send
//! the latest summary instead of what it summarised: the messages after it, and those of the
//! turn that made it (its question came before it).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ChatService;
use super::answer::Turn;
use super::events::{NoticeCode, TurnEvent};
use crate::auth::Caller;
use crate::llm::{ChatEvent, ChatMessage, ChatRequest, MessageRole, ProviderError};
use crate::store::{ConversationId, NewMessage, Role, StoredMessage};
use crate::wire::{ErrorCode, WireError};

/// How a summary message begins.
pub const SUMMARY_PREFIX: &str = "[Summary of the conversation before this point]\n";

/// What the model is asked to do with the transcript.
const SUMMARY_PROMPT: &str = "Summarise the conversation below for your own later use: the \
    facts, decisions, names, numbers, results of tools and open questions, concisely, in the \
    language the user wrote in. Write only the summary.";

/// The longest summary asked for, in tokens.
const SUMMARY_MAX_TOKENS: u32 = 1024;

/// What a summary request may hold: the transcript's length in characters and the summary's
/// in tokens. Half the window goes to the transcript, at three characters a token (fewer than
/// English averages with OpenAI's tokenizers: small models' tokenizers are less thrifty), and
/// at most a quarter to the summary; the rest is the instruction and the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SummarySize {
    transcript_chars: usize,
    summary_tokens: u32,
}

impl SummarySize {
    fn for_window(window: u32) -> Self {
        Self {
            transcript_chars: window as usize / 2 * 3,
            summary_tokens: SUMMARY_MAX_TOKENS.min(window / 4),
        }
    }
}

pub fn is_summary(message: &StoredMessage) -> bool {
    message.role == Role::System && message.content.starts_with(SUMMARY_PREFIX)
}

/// The history to send, oldest first: from the latest summary on, the summary first and then
/// the turn that made it and what came after; the whole history when there is no summary.
pub fn since_summary(
    history: &[Arc<StoredMessage>],
) -> (Option<&StoredMessage>, Vec<&StoredMessage>) {
    let Some(at) = history.iter().rposition(|m| is_summary(m)) else {
        return (None, history.iter().map(|m| &**m).collect());
    };
    let summary: &StoredMessage = &history[at];
    // The question of the turn that compacted was stored before its summary.
    let from = summary
        .request_id
        .as_ref()
        .and_then(|request| {
            history[..at]
                .iter()
                .rposition(|m| m.role == Role::User && m.request_id.as_ref() == Some(request))
        })
        .unwrap_or(at);
    let rest = history[from..]
        .iter()
        .enumerate()
        .filter(|(i, _)| from + i != at)
        .map(|(_, m)| &**m)
        .collect();
    (Some(summary), rest)
}

/// `messages` (system prompt, history, current message, this turn's rounds) cut at the current
/// message: (system prompt, history, the rest).
fn split(messages: Vec<ChatMessage>) -> (Vec<ChatMessage>, Vec<ChatMessage>, Vec<ChatMessage>) {
    let current = messages
        .iter()
        .rposition(|m| m.role == MessageRole::User)
        .unwrap_or(0);
    let system = usize::from(
        messages
            .first()
            .is_some_and(|m| m.role == MessageRole::System && current > 0),
    );
    let mut messages = messages;
    let rest = messages.split_off(current);
    let history = messages.split_off(system);
    (messages, history, rest)
}

/// The history as a plain transcript, its newest `max_chars` characters at most.
fn transcript(history: &[ChatMessage], max_chars: usize) -> String {
    let mut text = String::new();
    for message in history {
        let who = match message.role {
            MessageRole::User => "User",
            MessageRole::Assistant => "Assistant",
            MessageRole::Tool => "Tool result",
            MessageRole::System => "Note",
        };
        let content = message.content.as_deref().unwrap_or_default();
        let calls: Vec<String> = message
            .tool_calls
            .iter()
            .map(|call| format!("[calls {} with {}]", call.name, call.arguments))
            .collect();
        if content.is_empty() && calls.is_empty() {
            continue;
        }
        text.push_str(who);
        text.push_str(": ");
        text.push_str(content);
        for call in calls {
            text.push(' ');
            text.push_str(&call);
        }
        text.push_str("\n\n");
    }
    let chars = text.chars().count();
    if chars <= max_chars {
        return text;
    }
    let cut: String = text.chars().skip(chars - max_chars).collect();
    format!("[… the oldest part is left out]\n{cut}")
}

/// The conversation is too long and could not be compacted (nothing was summarised).
fn not_compacted(detail: &str) -> WireError {
    WireError::new(
        ErrorCode::ContextTooLarge,
        format!(
            "the conversation is too long for the model's context and could not be compacted: {detail}"
        ),
        false,
    )
}

impl ChatService {
    /// Summarises the history in `messages` into a stored summary and returns the messages
    /// to send instead: system prompt, summary, current message and this turn's rounds.
    pub(super) async fn compact(
        &self,
        turn: &Turn<'_>,
        messages: Vec<ChatMessage>,
        overflow: &ProviderError,
    ) -> Result<Vec<ChatMessage>, WireError> {
        let Some(record) = turn.record else {
            return Err(overflow.clone().into());
        };
        let (system, history, rest) = split(messages);
        if history.is_empty() {
            return Err(not_compacted(
                "there is no earlier history to summarise; shorten the message",
            ));
        }
        let size = SummarySize::for_window(self.window_for(turn.provider, Some(overflow)));
        let route = (turn.provider, turn.model);
        let summary = self
            .summarise(
                turn.caller,
                route,
                (
                    transcript(&history, size.transcript_chars),
                    size.summary_tokens,
                ),
                turn.cancel,
            )
            .await?;
        let text = format!("{SUMMARY_PREFIX}{summary}");
        let mut stored =
            NewMessage::new(Role::System, text.clone()).with_request_id(turn.request_id);
        stored.token_count = turn.encoding.count(&text);
        self.store
            .conversations_of(turn.caller.owner())
            .append(record.conversation, vec![stored])
            .await?;
        turn.sink.emit(TurnEvent::Notice {
            code: NoticeCode::ContextCompacted,
            message: format!(
                "the conversation was longer than the model's context: the {} messages before \
                 this one are summarised, and the answer goes on from the summary",
                history.len()
            ),
        });
        let mut compacted = system;
        compacted.push(ChatMessage::new(MessageRole::System, text));
        compacted.extend(rest);
        Ok(compacted)
    }

    /// The context window to size a summary for: the one the overflow reported, else the one
    /// the provider reported before, else the configured budget.
    fn window_for(&self, provider: Option<&str>, overflow: Option<&ProviderError>) -> u32 {
        let configured = self.config.chat.service.context.max_tokens;
        let reported = match overflow {
            Some(ProviderError::ContextLength {
                window: Some(window),
                ..
            }) => Some(*window),
            _ => self
                .providers
                .get(provider.unwrap_or(self.providers.active()))
                .and_then(|p| p.context_window()),
        };
        reported.map_or(configured, |window| window.min(configured))
    }

    /// One request to the model of `(provider, model)` for a summary of `transcript` in at
    /// most `max_tokens`; its text.
    async fn summarise(
        &self,
        caller: &Caller,
        (provider, model): (Option<&str>, Option<&str>),
        (transcript, max_tokens): (String, u32),
        cancel: &CancellationToken,
    ) -> Result<String, WireError> {
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(MessageRole::System, SUMMARY_PROMPT),
                ChatMessage::new(MessageRole::User, transcript),
            ],
            stream: false,
            model: model.map(String::from),
            max_tokens: Some(max_tokens),
            ..ChatRequest::default()
        };
        let (opened, mut stream) = tokio::select! {
            opened = self.providers.chat(provider, &request) => opened.map_err(|e| {
                if matches!(e, ProviderError::ContextLength { .. }) {
                    not_compacted(&e.to_string())
                } else {
                    WireError::from(e)
                }
            })?,
            () = cancel.cancelled() => return Err(WireError::cancelled()),
        };
        let mut summary = String::new();
        let mut reported = false;
        let ended = loop {
            let event = tokio::select! {
                event = futures::StreamExt::next(&mut stream) => event,
                () = cancel.cancelled() => break Err(WireError::cancelled()),
            };
            match event {
                None => break Ok(()),
                Some(Ok(ChatEvent::Text(text))) => summary.push_str(&text),
                Some(Ok(ChatEvent::Usage(usage))) => {
                    reported = true;
                    caller.spent(usage.prompt_tokens, usage.completion_tokens);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break Err(error.into()),
            }
        };
        if !reported {
            // Cut off, or a provider that reports nothing: what was sent and received counts.
            let encoding = crate::tokens::Encoding::for_model(model.unwrap_or(opened.model()));
            encoding.load().await;
            let spent =
                super::usage::estimate(encoding, (&request.messages, &[]), &summary, &[]).await;
            opened.count_tokens(&spent);
            caller.spent(spent.prompt_tokens, spent.completion_tokens);
        }
        ended?;
        if summary.trim().is_empty() {
            return Err(not_compacted("the model returned an empty summary"));
        }
        Ok(summary)
    }
}

impl ChatService {
    /// Compaction: the conversation's history (since its latest summary, that summary
    /// included) summarised by the active model into a stored summary message; later turns
    /// send the summary and what follows it.
    pub async fn compact_conversation(
        &self,
        caller: &Caller,
        conversation_id: String,
        cancel: &CancellationToken,
    ) -> Result<Compacted, WireError> {
        tokio::select! {
            compacted = self.compact_on_request(caller, conversation_id, cancel) => compacted,
            // Nothing is stored of a compaction cut off.
            () = caller.revoked() => Err(WireError::new(
                ErrorCode::Unauthorized,
                "the compaction was cut off: its key was revoked or its session ended",
                false,
            )),
        }
    }

    async fn compact_on_request(
        &self,
        caller: &Caller,
        conversation_id: String,
        cancel: &CancellationToken,
    ) -> Result<Compacted, WireError> {
        let id = ConversationId::try_from(conversation_id)?;
        // A model call of its own: admitted like a turn (per minute, in flight, tokens).
        let _quota = caller.admit_turn()?;
        let repo = self.store.conversations_of(caller.owner());
        // Its latest messages, about as many as a context holds twice.
        let budget = self
            .config
            .chat
            .service
            .context
            .max_tokens
            .saturating_mul(2);
        let history = repo.recent(&id, i64::MAX, budget, MAX_ROWS).await?;
        if history.is_empty() {
            // An unknown conversation and an empty one read the same: tell them apart.
            repo.get(&id).await?;
        }
        let (summary, since) = since_summary(&history);
        let messages: Vec<ChatMessage> = summary
            .into_iter()
            .chain(since.iter().copied())
            .filter_map(super::context::to_chat_message)
            .collect();
        if since.is_empty() {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "there is nothing new to compact in this conversation",
                false,
            ));
        }
        let size = SummarySize::for_window(self.window_for(None, None));
        let text = self
            .summarise(
                caller,
                (None, None),
                (
                    transcript(&messages, size.transcript_chars),
                    size.summary_tokens,
                ),
                cancel,
            )
            .await?;
        let text = format!("{SUMMARY_PREFIX}{text}");
        let encoding = crate::tokens::Encoding::for_model(self.providers.default_model(None)?);
        encoding.load().await;
        let mut stored = NewMessage::new(Role::System, text.clone());
        stored.token_count = encoding.count(&text);
        let stored = repo.append(&id, vec![stored]).await?;
        Ok(Compacted {
            conversation_id: id,
            summary_message_id: stored.first().map(|m| m.id),
            summarised: messages.len(),
            summary: text,
        })
    }
}

/// A compaction's result: the summary stored, and how many messages it summarises.
#[derive(Debug, serde::Serialize)]
pub struct Compacted {
    pub conversation_id: ConversationId,
    pub summary_message_id: Option<i64>,
    pub summarised: usize,
    pub summary: String,
}

/// Messages a `compact` reads at most.
const MAX_ROWS: u32 = 5000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_request_fits_a_small_models_window() {
        let size = SummarySize::for_window(2048);
        assert_eq!(size.summary_tokens, 512);
        assert_eq!(size.transcript_chars, 3072);
        // Even at two and a half characters a token, transcript and summary leave room for
        // the instruction and the framing.
        let transcript_tokens = u32::try_from(size.transcript_chars * 2 / 5).expect("small");
        assert!(transcript_tokens + size.summary_tokens < 2048 - 100);
        assert_eq!(SummarySize::for_window(16_000).summary_tokens, 1024);
    }
    use crate::store::{ConversationId, MessageStatus};

    fn stored(seq: i64, role: Role, content: &str, request: Option<&str>) -> StoredMessage {
        StoredMessage {
            id: seq,
            conversation_id: ConversationId::generate(),
            seq,
            role,
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
            request_id: request.map(String::from),
            status: MessageStatus::Complete,
            token_count: 1,
            model: None,
            usage: None,
            created_at: 0,
            attachments: Vec::new(),
        }
    }

    fn seqs(messages: &[&StoredMessage]) -> Vec<i64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn history_starts_at_the_latest_summary_with_the_turn_that_made_it() {
        let summary = format!("{SUMMARY_PREFIX}they talked");
        let history: Vec<Arc<StoredMessage>> = [
            stored(1, Role::User, "old", Some("a")),
            stored(2, Role::Assistant, "old answer", Some("a")),
            stored(3, Role::User, "long one", Some("b")),
            stored(4, Role::System, &summary, Some("b")),
            stored(5, Role::Assistant, "answer b", Some("b")),
            stored(6, Role::User, "next", Some("c")),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let (found, rest) = since_summary(&history);
        assert_eq!(found.map(|m| m.seq), Some(4));
        assert_eq!(seqs(&rest), [3, 5, 6]);
        // No summary: everything.
        let (none, all) = since_summary(&history[..3]);
        assert!(none.is_none());
        assert_eq!(seqs(&all), [1, 2, 3]);
        // A summary of no turn (made on request): what follows it.
        let mut alone = history.clone();
        Arc::make_mut(&mut alone[3]).request_id = None;
        assert_eq!(seqs(&since_summary(&alone).1), [5, 6]);
        // A system message that is not a summary is history like any other.
        let plain = vec![
            Arc::new(stored(1, Role::System, "be brief", None)),
            Arc::new(stored(2, Role::User, "x", None)),
        ];
        assert!(since_summary(&plain).0.is_none());
    }

    #[test]
    fn messages_split_at_the_current_question() {
        let message = |role, text: &str| ChatMessage::new(role, text);
        let messages = vec![
            message(MessageRole::System, "sys"),
            message(MessageRole::User, "q1"),
            message(MessageRole::Assistant, "a1"),
            message(MessageRole::User, "q2"),
            message(MessageRole::Tool, "result"),
        ];
        let (system, history, rest) = split(messages);
        let texts = |m: &[ChatMessage]| -> Vec<String> {
            m.iter()
                .map(|m| m.content.clone().unwrap_or_default())
                .collect()
        };
        assert_eq!(texts(&system), ["sys"]);
        assert_eq!(texts(&history), ["q1", "a1"]);
        assert_eq!(texts(&rest), ["q2", "result"]);
    }

    #[test]
    fn a_transcript_keeps_its_newest_part() {
        let history = vec![
            ChatMessage::new(MessageRole::User, "first question"),
            ChatMessage::new(MessageRole::Assistant, "first answer"),
        ];
        let whole = transcript(&history, 1000);
        assert_eq!(whole, "User: first question\n\nAssistant: first answer\n\n");
        let cut = transcript(&history, 16);
        assert!(cut.starts_with("[… the oldest part is left out]"), "{cut}");
        assert!(cut.ends_with("first answer\n\n"), "{cut}");
    }
}
