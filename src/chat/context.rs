//! The context budget: what of a conversation is sent to the model. The system prompt and the
//! current message always go; history is added newest first while it fits, so the oldest is
//! trimmed first; an assistant message that called tools goes with all its tool results or not
//! at all (a provider refuses a tool result whose call is missing, and a call without results).

use std::borrow::Borrow;

use crate::llm::{ChatMessage, MessageRole, ToolCall};
use crate::store::{MessageStatus, Role, StoredMessage};

use crate::tokens::{Encoding, PER_MESSAGE, REPLY_PRIMING};

/// The system prompt and the current message alone do not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub needed: u32,
    pub budget: u32,
}

/// Tokens of a stored message as sent: its stored count (computed when it was written), or
/// counted now for messages stored without one (imports through the REST API).
pub fn cost(message: &StoredMessage, encoding: Encoding) -> u32 {
    let text = match u32::try_from(message.token_count) {
        Ok(stored) if stored > 0 => stored,
        _ => encoding.count(&message.sent_content()),
    };
    let calls = message
        .tool_calls
        .as_ref()
        .map_or(0, |calls| encoding.count(&calls.to_string()));
    text + calls + PER_MESSAGE
}

/// Tokens of the parts that always go: the system prompt, the current message, the priming.
pub fn fixed_cost(system_prompt: &str, current: u32, encoding: Encoding) -> u32 {
    let system = if system_prompt.trim().is_empty() {
        0
    } else {
        encoding.count(system_prompt) + PER_MESSAGE
    };
    system + current + PER_MESSAGE + REPLY_PRIMING
}

/// Tokens a prompt may use: `max_tokens - reserve_tokens` as configured, or, once the provider
/// has reported a smaller context `window` for its model, that window less a share kept for the
/// answer (the configured reserve, at most a quarter of the window): a 2k model is not sent a
/// 16k budget, nor left 48 tokens by a reserve sized for a large one.
pub fn budget(max_tokens: u32, reserve_tokens: u32, window: Option<u32>) -> u32 {
    match window {
        Some(window) if window < max_tokens => {
            window.saturating_sub(reserve_tokens.min(window / 4))
        }
        _ => max_tokens.saturating_sub(reserve_tokens),
    }
}

/// Checks that the fixed part fits; returns the tokens left for history.
pub fn room(fixed: u32, budget: u32) -> Result<u32, TooLarge> {
    budget.checked_sub(fixed).ok_or(TooLarge {
        needed: fixed,
        budget,
    })
}

/// Index of the oldest message of `history` (oldest first) that is sent, keeping whole
/// groups (an assistant message and the tool results that follow it) within `room`, and
/// whole exchanges: what is sent starts at a user message (some providers refuse a history
/// that starts with the assistant, and an answer without its question misleads the model).
pub fn first_kept<M: Borrow<StoredMessage>>(history: &[M], room: u32, encoding: Encoding) -> usize {
    let kept = first_fitting(history, room, encoding);
    history[kept..]
        .iter()
        .position(|m| m.borrow().role == Role::User)
        .map_or(history.len(), |offset| kept + offset)
}

fn first_fitting<M: Borrow<StoredMessage>>(history: &[M], room: u32, encoding: Encoding) -> usize {
    let mut used = 0u32;
    let mut kept = history.len();
    let mut group = 0u32;
    for index in (0..history.len()).rev() {
        let message = history[index].borrow();
        group = group.saturating_add(cost(message, encoding));
        if message.role == Role::Tool {
            // Belongs to the call before it: decided when that call is reached.
            continue;
        }
        if used.saturating_add(group) > room {
            break;
        }
        used += group;
        group = 0;
        kept = index;
    }
    kept
}

/// Of the messages a request stored (oldest first), its whole tool rounds: each assistant
/// message that called tools, complete, with a result for every call. A partial answer, a
/// round cut short, a summary are left out.
pub fn complete_rounds(stored: &[StoredMessage]) -> Vec<StoredMessage> {
    let mut rounds = Vec::new();
    let mut index = 0;
    while index < stored.len() {
        let message = &stored[index];
        index += 1;
        let calls: Vec<ToolCall> = message
            .tool_calls
            .as_ref()
            .and_then(|calls| serde_json::from_value(calls.clone()).ok())
            .unwrap_or_default();
        if message.role != Role::Assistant
            || message.status != MessageStatus::Complete
            || calls.is_empty()
        {
            continue;
        }
        let results: Vec<&StoredMessage> = stored[index..]
            .iter()
            .take_while(|m| m.role == Role::Tool)
            .collect();
        let answered = calls.iter().all(|call| {
            results
                .iter()
                .any(|r| r.tool_call_id.as_deref() == Some(call.id.as_str()))
        });
        index += results.len();
        if answered {
            rounds.push(message.clone());
            rounds.extend(results.into_iter().cloned());
        }
    }
    rounds
}

/// The messages sent to the model, in order: system prompt, kept history (a summary of what
/// came before it first, if any), current message.
pub fn messages(
    system_prompt: &str,
    history: &[&StoredMessage],
    current: &StoredMessage,
) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.len() + 2);
    if !system_prompt.trim().is_empty() {
        out.push(ChatMessage::new(MessageRole::System, system_prompt));
    }
    out.extend(
        history
            .iter()
            .copied()
            .chain([current])
            .filter_map(to_chat_message),
    );
    out
}

pub fn to_chat_message(message: &StoredMessage) -> Option<ChatMessage> {
    let calls: Vec<ToolCall> = message
        .tool_calls
        .as_ref()
        .and_then(|calls| serde_json::from_value(calls.clone()).ok())
        .unwrap_or_default();
    if message.content.is_empty() && calls.is_empty() {
        return None;
    }
    let role = match message.role {
        Role::User => MessageRole::User,
        Role::Assistant => MessageRole::Assistant,
        Role::System => MessageRole::System,
        Role::Tool => MessageRole::Tool,
    };
    let mut chat = ChatMessage::new(role, message.sent_content().into_owned());
    if chat.content.as_deref() == Some("") {
        chat.content = None;
    }
    chat.tool_calls = calls;
    chat.tool_call_id.clone_from(&message.tool_call_id);
    Some(chat)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{ConversationId, MessageStatus};

    fn message(seq: i64, role: Role, tokens: i64) -> StoredMessage {
        StoredMessage {
            id: seq,
            conversation_id: ConversationId::generate(),
            seq,
            role,
            content: format!("m{seq}"),
            tool_calls: (role == Role::Assistant && tokens == 0)
                .then(|| json!([{"id": "c", "type": "function", "function": {"name": "t", "arguments": "{}"}}])),
            tool_call_id: (role == Role::Tool).then(|| "c".into()),
            request_id: None,
            status: MessageStatus::Complete,
            token_count: tokens.max(1),
            model: None,
            usage: None,
            created_at: 0,
            attachments: Vec::new(),
        }
    }

    fn seqs(history: &[StoredMessage], room: u32) -> Vec<i64> {
        let first = first_kept(history, room, Encoding::Cl100kBase);
        history[first..].iter().map(|m| m.seq).collect()
    }

    #[test]
    fn history_is_trimmed_oldest_first() {
        let history: Vec<_> = (1..=4)
            .map(|seq| {
                message(
                    seq,
                    if seq % 2 == 1 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    10,
                )
            })
            .collect();
        // Each message costs 10 + 4.
        assert_eq!(seqs(&history, 1000), [1, 2, 3, 4]);
        assert_eq!(seqs(&history, 28), [3, 4]);
        assert_eq!(seqs(&history, 41), [3, 4]);
        assert_eq!(seqs(&history, 13), Vec::<i64>::new());
    }

    #[test]
    fn a_tool_call_is_never_separated_from_its_results() {
        // user, assistant calling a tool, two results, final assistant.
        let history = vec![
            message(1, Role::User, 10),
            message(2, Role::Assistant, 0),
            message(3, Role::Tool, 10),
            message(4, Role::Tool, 10),
            message(5, Role::Assistant, 10),
        ];
        let group = cost(&history[1], Encoding::Cl100kBase) + 2 * 14;
        // Room for the group but not its question: the exchange goes as a whole or not at all.
        assert_eq!(seqs(&history, 14 + 28), Vec::<i64>::new());
        assert_eq!(seqs(&history, 14 + group), Vec::<i64>::new());
        assert_eq!(seqs(&history, 14 + group + 14), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_kept_history_starts_at_a_user_message() {
        // A trimmed exchange (its question dropped) is left out; the next one is kept.
        let history = vec![
            message(1, Role::User, 10),
            message(2, Role::Assistant, 10),
            message(3, Role::User, 10),
            message(4, Role::Assistant, 10),
        ];
        for room in [14, 28, 41, 42, 55] {
            let kept = seqs(&history, room);
            assert!(
                kept.first().is_none_or(|&seq| history
                    .iter()
                    .any(|m| m.seq == seq && m.role == Role::User)),
                "room {room}: {kept:?}"
            );
        }
        assert_eq!(seqs(&history, 42), [3, 4]);
        assert_eq!(seqs(&history, 55), [3, 4]);
        assert_eq!(seqs(&history, 56), [1, 2, 3, 4]);
    }

    #[test]
    fn results_without_their_call_in_the_window_are_dropped() {
        let history = vec![
            message(3, Role::Tool, 1),
            message(4, Role::Assistant, 1),
            message(5, Role::User, 1),
        ];
        assert_eq!(seqs(&history, 1000), [5]);
    }

    #[test]
    fn the_fixed_part_must_fit_alone() {
        let fixed = fixed_cost("be brief", 100, Encoding::Cl100kBase);
        assert!(fixed > 100 + PER_MESSAGE);
        assert_eq!(room(fixed, fixed + 5), Ok(5));
        assert_eq!(
            room(fixed, fixed - 1),
            Err(TooLarge {
                needed: fixed,
                budget: fixed - 1
            })
        );
    }

    #[test]
    fn only_whole_rounds_of_an_earlier_try_are_reused() {
        let mut partial = message(6, Role::Assistant, 3);
        partial.status = MessageStatus::Failed;
        let mut cut = message(4, Role::Assistant, 0);
        cut.tool_calls = Some(
            json!([{"id": "c", "type": "function", "function": {"name": "t", "arguments": "{}"}},
                                     {"id": "d", "type": "function", "function": {"name": "t", "arguments": "{}"}}]),
        );
        let stored = vec![
            message(1, Role::User, 5),
            message(2, Role::Assistant, 0),
            message(3, Role::Tool, 5),
            // A round whose second call has no result: left out.
            cut,
            message(5, Role::Tool, 5),
            partial,
        ];
        let seqs: Vec<i64> = complete_rounds(&stored).iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[test]
    fn a_reported_window_smaller_than_the_budget_bounds_it() {
        assert_eq!(budget(16_000, 2_000, None), 14_000);
        assert_eq!(budget(16_000, 2_000, Some(128_000)), 14_000);
        // A 2k model: a quarter kept for the answer, not the whole 2,000.
        assert_eq!(budget(16_000, 2_000, Some(2_048)), 1_536);
        assert_eq!(budget(16_000, 300, Some(2_048)), 1_748);
    }

    #[test]
    fn stored_tool_calls_and_results_become_provider_messages() {
        let history = [message(2, Role::Assistant, 0), message(3, Role::Tool, 5)];
        let current = message(4, Role::User, 5);
        let sent = messages("sys", &history.iter().collect::<Vec<_>>(), &current);
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0].role, MessageRole::System);
        assert_eq!(sent[1].tool_calls.len(), 1);
        assert_eq!(sent[2].tool_call_id.as_deref(), Some("c"));
        assert_eq!(sent[3].content.as_deref(), Some("m4"));
    }
}
