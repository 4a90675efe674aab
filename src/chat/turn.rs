//! One chat turn, up to the model: check the budget, store the user message (acknowledged by
//! `processing` only after commit) or replay an answered request, build the context. The
//! answer, with its tool rounds, is `answer.rs`.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answer::{Record, Sampling, Turn};
use super::attachments::{AttachmentRef, check_refs};
use super::events::{Completion, TurnEvent, TurnSink};
use super::{ChatService, compaction, context};
use crate::auth::Caller;
use crate::store::{ConversationId, MessageStatus, NewMessage, Role, StoreError, StoredMessage};
use crate::tokens::Encoding;
use crate::wire::{ErrorCode, WireError};

/// History rows read at most per turn, whatever their token counts.
const MAX_HISTORY_ROWS: u32 = 5000;

/// What a client asks for a turn: its text, the conversation (a new one when absent), and
/// the choices it may make. A door reads it from its own format and checks it with
/// [`TurnRequest::check`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnRequest {
    pub text: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Defaults to `chat.service.streaming.enabled`.
    #[serde(default)]
    pub streaming: Option<bool>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// MCP resources to attach: read from their servers, sent to the model with the text and
    /// stored with the message.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
}

impl TurnRequest {
    /// The rules every door's request must keep: some text, well-formed attachments.
    pub fn check(&self) -> Result<(), String> {
        if self.text.trim().is_empty() {
            return Err("payload.text is empty".into());
        }
        check_refs(&self.attachments)
    }
}

/// A request id already used in the conversation.
enum Earlier {
    Answered(StoredMessage, Box<StoredMessage>),
    /// Asked but not answered in full: the question and the tool rounds it stored.
    Unanswered(StoredMessage, Vec<StoredMessage>),
}

impl ChatService {
    /// Runs a turn to its end, telling `sink` what happens. `cancel` stops the provider
    /// request; what was answered is still stored.
    #[tracing::instrument(skip_all, fields(request_id = %request_id))]
    pub async fn run_turn(
        &self,
        caller: &Caller,
        request_id: &str,
        payload: TurnRequest,
        sink: &dyn TurnSink,
        cancel: &CancellationToken,
    ) {
        self.drive(
            caller,
            (sink, cancel),
            ("turn", "; what was answered is stored"),
            async |cancel, started| {
                self.turn(caller, request_id, payload, sink, cancel, started)
                    .await
            },
        )
        .await;
        // Its messages are stored: history search embeds them in the background.
        self.memory.turn_finished();
    }

    /// Runs `work` (a turn or an exchange, given its own cancel token and start) to its end at
    /// `chat.service.turn_timeout`, or until `caller`'s credentials end (a revoked key, an
    /// ended session): cancelled then (what was answered is stored, as on any cancel) and
    /// reported as `turn_timeout` or `unauthorized`, whatever door it came through and whether
    /// or not anyone still watches it. Records the figures and emits `Failed` on error. `what`
    /// names the work and says what becomes of a cut-off answer.
    pub(super) async fn drive(
        &self,
        caller: &Caller,
        (sink, cancel): (&dyn TurnSink, &CancellationToken),
        what: (&str, &str),
        work: impl AsyncFnOnce(&CancellationToken, Instant) -> Result<(), WireError>,
    ) {
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = self.config.chat.service.turn_timeout;
        let turn_cancel = cancel.child_token();
        let running = work(&turn_cancel, started);
        tokio::pin!(running);
        let (noun, note) = what;
        let result = tokio::select! {
            result = &mut running => result,
            () = tokio::time::sleep(deadline) => {
                turn_cancel.cancel();
                let _ = running.await;
                Err(WireError::new(
                    ErrorCode::TurnTimeout,
                    format!(
                        "the {noun} took longer than {} s (chat.service.turn_timeout){note}",
                        deadline.as_secs_f32()
                    ),
                    true,
                ))
            }
            () = caller.revoked() => {
                turn_cancel.cancel();
                let _ = running.await;
                tracing::info!(key = caller.name(), "cut off a {noun} whose credentials ended");
                Err(WireError::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "the {noun} was cut off: its key was revoked or its session ended{note}"
                    ),
                    false,
                ))
            }
        };
        match result {
            Ok(()) => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                self.stats.latency.record(started.elapsed());
            }
            Err(error) => {
                let counter = if error.code == ErrorCode::Cancelled {
                    &self.stats.cancelled
                } else {
                    &self.stats.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                sink.emit(TurnEvent::Failed(error));
            }
        }
    }

    async fn turn(
        &self,
        caller: &Caller,
        request_id: &str,
        payload: TurnRequest,
        sink: &dyn TurnSink,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<(), WireError> {
        // A model no provider offers, or a quota used up: nothing stored, no provider called.
        let (provider, model) = self.choose_model(&payload)?;
        let _quota = caller.admit_turn()?;
        let encoding = Encoding::for_model(&model);
        encoding.load().await;
        let attachments = self.read_attachments(&payload.attachments).await?;
        let current_tokens =
            encoding.count(&crate::store::with_attachments(&payload.text, &attachments));
        let repo = self.store.conversations_of(caller.owner());
        // A conversation's own system prompt replaces the configured one.
        let own_prompt = match &payload.conversation_id {
            Some(id) => {
                repo.system_prompt(&ConversationId::try_from(id.clone())?)
                    .await?
            }
            None => None,
        };
        let system_prompt = own_prompt
            .as_deref()
            .unwrap_or(&self.config.chat.service.system_prompt);
        let budget = self.prompt_budget(provider.as_deref());
        let room = Self::room_for_history(system_prompt, current_tokens, encoding, budget)?;
        let conversation = self
            .conversation(caller, payload.conversation_id.clone(), &payload.text)
            .await?;
        let Some(_claim) = self.in_flight.claim(&conversation, request_id) else {
            return Err(WireError::new(
                ErrorCode::Busy,
                format!("request `{request_id}` is already in flight in this conversation"),
                true,
            ));
        };
        let mut user =
            NewMessage::new(Role::User, payload.text.clone()).with_request_id(request_id);
        user.token_count = current_tokens;
        user.attachments = attachments;
        let mut resumed = Vec::new();
        let user = match repo.append(&conversation, vec![user]).await {
            Ok(mut stored) if !stored.is_empty() => stored.remove(0),
            Ok(_) => {
                return Err(WireError::internal(
                    "the store returned no message for an append",
                ));
            }
            Err(StoreError::DuplicateRequest { .. }) => {
                match self.earlier(caller, &conversation, request_id).await? {
                    Earlier::Answered(user, answer) => {
                        self.replay(&user, &answer, sink);
                        return Ok(());
                    }
                    // Asked before but never answered in full (cancelled, failed, or the
                    // server stopped): answered now, from its stored tool rounds on.
                    Earlier::Unanswered(user, stored) => {
                        resumed = context::complete_rounds(&stored);
                        user
                    }
                }
            }
            Err(other) => return Err(other.into()),
        };
        sink.emit(TurnEvent::Accepted {
            conversation: conversation.clone(),
            user_message_id: user.id,
            replayed: false,
        });

        let candidates = repo
            .recent(&conversation, user.seq, room, MAX_HISTORY_ROWS)
            .await?;
        // A summary (from an earlier compaction) stands for what came before it.
        let (summary, since) = compaction::since_summary(&candidates);
        let room = room.saturating_sub(summary.map_or(0, |s| context::cost(s, encoding)));
        let kept = &since[context::first_kept(&since, room, encoding)..];
        let history: Vec<&StoredMessage> =
            summary.into_iter().chain(kept.iter().copied()).collect();
        let mut messages = context::messages(system_prompt, &history, &user);
        // Tool rounds of an earlier try are not run again: the model reads their results.
        messages.extend(resumed.iter().filter_map(context::to_chat_message));
        let turn = Turn {
            caller,
            request_id,
            record: Some(Record {
                conversation: &conversation,
                user: &user,
            }),
            sampling: Sampling::default(),
            client_tools: &[],
            tools_allowed: true,
            asks: super::Asks::User,
            provider: provider.as_deref(),
            model: payload.model.is_some().then_some(model.as_str()),
            streaming: payload
                .streaming
                .unwrap_or(self.config.chat.service.streaming.enabled),
            encoding,
            sink,
            cancel,
            started,
            first_token: AtomicBool::new(false),
        };
        self.answer(&turn, messages).await
    }

    /// The provider and model of a turn: the payload's `provider` (its `model` must be one it
    /// offers, `PROVIDER/` prefix allowed), else the provider `model` routes to
    /// ([`crate::llm::Providers::route`]), else the active provider's model.
    fn choose_model(
        &self,
        payload: &TurnRequest,
    ) -> Result<(Option<String>, String), crate::llm::ProviderError> {
        use crate::llm::ProviderError;
        let Some(model) = &payload.model else {
            let model = self.providers.default_model(payload.provider.as_deref())?;
            return Ok((payload.provider.clone(), model.to_string()));
        };
        let Some(name) = &payload.provider else {
            let (name, model) = self.providers.route(model)?;
            return Ok((Some(name.to_string()), model));
        };
        let provider = self
            .providers
            .get(name)
            .ok_or_else(|| ProviderError::UnknownProvider(name.clone()))?;
        let bare = model
            .strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(model);
        if provider.accepts(bare) {
            Ok((Some(name.clone()), bare.to_string()))
        } else {
            Err(ProviderError::ModelNotOffered {
                model: model.clone(),
            })
        }
    }

    /// The prompt budget for a turn on `provider` (the active one when `None`).
    pub(super) fn prompt_budget(&self, provider: Option<&str>) -> u32 {
        let context = &self.config.chat.service.context;
        let window = self
            .providers
            .get(provider.unwrap_or(self.providers.active()))
            .and_then(|p| p.context_window());
        context::budget(context.max_tokens, context.reserve_tokens, window)
    }

    /// Tokens left for history once the system prompt and the current message are counted.
    fn room_for_history(
        system_prompt: &str,
        current: u32,
        encoding: Encoding,
        budget: u32,
    ) -> Result<u32, WireError> {
        let fixed = context::fixed_cost(system_prompt, current, encoding);
        context::room(fixed, budget).map_err(|too_large| {
            WireError::new(
                ErrorCode::ContextTooLarge,
                format!(
                "the message needs {} tokens with the system prompt ({} encoding), over the context \
                 budget of {} (chat.service.context.max_tokens minus reserve_tokens, within the \
                 model's context window when the provider has said it); shorten it",
                too_large.needed,
                encoding.name(),
                too_large.budget
                ),
                false,
            )
        })
    }

    /// What is stored of a request id already used in the conversation.
    async fn earlier(
        &self,
        caller: &Caller,
        id: &ConversationId,
        request_id: &str,
    ) -> Result<Earlier, WireError> {
        self.stored_request(caller, id, request_id)
            .await?
            .ok_or_else(|| WireError::internal("a duplicate request has no stored user message"))
    }

    /// `attach` to a turn that is no longer live: its stored answer, replayed.
    pub async fn replay_request(
        &self,
        caller: &Caller,
        conversation: &str,
        request_id: &str,
        sink: &dyn TurnSink,
    ) -> Result<(), WireError> {
        let id = ConversationId::try_from(conversation.to_string())?;
        match self.stored_request(caller, &id, request_id).await? {
            Some(Earlier::Answered(user, answer)) => {
                self.replay(&user, &answer, sink);
                Ok(())
            }
            Some(Earlier::Unanswered(..)) => Err(WireError::new(
                ErrorCode::NotFound,
                format!(
                    "turn `{request_id}` ended without an answer (cancelled or failed); send it \
                     again with the same request_id to continue it"
                ),
                false,
            )),
            None => Err(WireError::new(
                ErrorCode::NotFound,
                format!("no turn `{request_id}` in conversation `{conversation}`"),
                false,
            )),
        }
    }

    /// What is stored of `request_id` in the conversation; `None` if it never came.
    async fn stored_request(
        &self,
        caller: &Caller,
        id: &ConversationId,
        request_id: &str,
    ) -> Result<Option<Earlier>, WireError> {
        let stored = self
            .store
            .conversations_of(caller.owner())
            .find_by_request(id, request_id)
            .await?;
        let Some(user) = stored.iter().find(|m| m.role == Role::User).cloned() else {
            return Ok(None);
        };
        let answer = stored
            .iter()
            .rev()
            .find(|m| {
                m.role == Role::Assistant
                    && m.status == MessageStatus::Complete
                    && m.tool_calls.is_none()
            })
            .cloned();
        Ok(Some(match answer {
            Some(answer) => Earlier::Answered(user, Box::new(answer)),
            None => Earlier::Unanswered(user, stored),
        }))
    }

    /// Tells a stored answer again, without calling a provider: the same events as a live
    /// turn.
    fn replay(&self, user: &StoredMessage, answer: &StoredMessage, sink: &dyn TurnSink) {
        self.stats.replayed.fetch_add(1, Ordering::Relaxed);
        let conversation = user.conversation_id.clone();
        sink.emit(TurnEvent::Accepted {
            conversation: conversation.clone(),
            user_message_id: user.id,
            replayed: true,
        });
        sink.emit(TurnEvent::TextDelta(answer.content.clone()));
        sink.emit(TurnEvent::Completed(Box::new(Completion {
            conversation: Some(conversation),
            user_message_id: Some(user.id),
            finish_reason: Some(crate::llm::FinishReason::Stop),
            assistant_message_id: Some(answer.id),
            usage: answer
                .usage
                .as_ref()
                .and_then(|u| serde_json::from_value(u.clone()).ok()),
            provider: None,
            model: answer.model.clone(),
            tool_rounds: None,
            tool_limit_reached: false,
            client_tool_calls: Vec::new(),
            replayed: true,
        })));
    }

    /// The conversation to resume (not read here: appending the user message fails with
    /// `not_found` for an unknown id, one database round trip fewer per turn) or a new one.
    /// The turn's conversation: the one named, or a new one titled from the first message.
    async fn conversation(
        &self,
        caller: &Caller,
        id: Option<String>,
        text: &str,
    ) -> Result<ConversationId, WireError> {
        match id {
            Some(id) => Ok(ConversationId::try_from(id)?),
            None => Ok(self
                .store
                .conversations_of(caller.owner())
                .create(Some(title_from(text)))
                .await?
                .id),
        }
    }
}

/// Characters of a title taken from a first message.
const TITLE_CHARS: usize = 60;

/// A conversation's title from its first message: its first non-blank line, whitespace
/// collapsed, cut at a word to [`TITLE_CHARS`] with an ellipsis.
fn title_from(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let words: Vec<&str> = line.split_whitespace().collect();
    let whole = words.join(" ");
    if whole.chars().count() <= TITLE_CHARS {
        return whole;
    }
    let mut title = String::new();
    for word in words {
        let needed = title.chars().count() + usize::from(!title.is_empty()) + word.chars().count();
        if needed > TITLE_CHARS - 1 {
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    if title.is_empty() {
        title = whole.chars().take(TITLE_CHARS - 1).collect();
    }
    title.push('…');
    title
}

#[cfg(test)]
mod tests {
    use super::title_from;

    #[test]
    fn a_title_is_the_first_line_cut_at_a_word() {
        assert_eq!(title_from("  \nPlan a trip\nto Rome"), "Plan a trip");
        assert_eq!(title_from("a   b\tc"), "a b c");
        let long = "word ".repeat(30);
        let title = title_from(&long);
        assert!(title.ends_with('…'), "{title}");
        assert!(title.chars().count() <= 60, "{title}");
        assert!(!title.contains(" …"), "{title}");
        let unbroken = "x".repeat(100);
        assert_eq!(title_from(&unbroken).chars().count(), 60);
    }
}
