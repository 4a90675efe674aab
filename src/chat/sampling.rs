//! A server asks our model (`sampling/createMessage`, entries with `"sampling": true`): the
//! request goes to a configured provider with the server's own system prompt and messages, its
//! `maxTokens` honoured (up to `chat.service.context.max_tokens`) and its model hints matched
//! against the models we offer; it is admitted like a turn of the turn's caller (per minute,
//! tokens, one slot beyond `concurrent_turns`) and its tokens count; the turn shows it as a
//! `tool_execution` step.

use futures::StreamExt;

use super::ChatService;
use super::answer::Turn;
use super::events::TurnEvent;
use crate::llm::{ChatEvent, ChatMessage, ChatRequest, FinishReason, MessageRole, Usage};
use crate::mcp::{Sampled, Sampling};

impl ChatService {
    pub(super) async fn sample_for(
        &self,
        turn: &Turn<'_>,
        call_id: &str,
        tool: &str,
        request: Sampling,
    ) -> Result<Sampled, String> {
        // A model call of its own: admitted like a turn, beside the one that asked.
        let _quota = turn
            .caller
            .admit_nested()
            .map_err(|quota| quota.to_string())?;
        let budget = self.config.chat.service.context.max_tokens;
        check_size(turn, &request, budget).await?;
        let (provider, model) = self.sampling_model(turn, &request.hints);
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = request.system_prompt.filter(|s| !s.trim().is_empty()) {
            messages.push(ChatMessage::new(MessageRole::System, system));
        }
        for (is_user, text) in request.messages {
            let role = if is_user {
                MessageRole::User
            } else {
                MessageRole::Assistant
            };
            messages.push(ChatMessage::new(role, text));
        }
        let chat = ChatRequest {
            messages,
            model: model.clone(),
            // A server asks for at most the host's whole context budget.
            max_tokens: Some(request.max_tokens.clamp(1, budget)),
            temperature: request.temperature,
            stream: true,
            ..ChatRequest::default()
        };
        let (provider, mut stream) = tokio::select! {
            opened = self.providers.chat(provider.as_deref(), &chat) => opened.map_err(|e| e.to_string())?,
            () = turn.cancel.cancelled() => return Err("the turn was cancelled".into()),
        };
        let mut text = String::new();
        let mut usage: Option<Usage> = None;
        let mut finish = None;
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = turn.cancel.cancelled() => return Err("the turn was cancelled".into()),
            };
            match event {
                None => break,
                Some(Ok(ChatEvent::Text(piece))) => text.push_str(&piece),
                Some(Ok(ChatEvent::Usage(spent))) => usage = Some(spent),
                Some(Ok(ChatEvent::Finish(reason))) => finish = Some(reason),
                Some(Ok(ChatEvent::ToolCall(_))) => {}
                Some(Err(error)) => return Err(format!("the model failed: {error}")),
            }
        }
        if let Some(spent) = usage {
            turn.caller
                .spent(spent.prompt_tokens, spent.completion_tokens);
        }
        let model = model.unwrap_or_else(|| provider.model().to_string());
        turn.sink.emit(TurnEvent::ToolCallSampled {
            call_id: call_id.to_string(),
            tool: tool.to_string(),
            model: model.clone(),
            usage,
        });
        Ok(Sampled {
            text,
            model,
            stop_reason: if finish == Some(FinishReason::Length) {
                "maxTokens"
            } else {
                "endTurn"
            },
        })
    }

    /// The first of the server's hints that names (part of) a model we offer, else the turn's
    /// own provider and model.
    fn sampling_model(
        &self,
        turn: &Turn<'_>,
        hints: &[String],
    ) -> (Option<String>, Option<String>) {
        let offered = self.providers.model_ids();
        // An empty hint would match every model: it says nothing.
        for hint in hints
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
        {
            let found = offered
                .iter()
                .find(|(id, _, _)| id.to_ascii_lowercase().contains(&hint));
            if let Some((id, _, _)) = found
                && let Ok((provider, model)) = self.providers.route(id)
            {
                return (Some(provider.to_string()), Some(model));
            }
        }
        (
            turn.provider.map(String::from),
            turn.model.map(String::from),
        )
    }
}

/// Past this many bytes per token of budget a request is refused without counting.
const BYTES_PER_TOKEN_AT_MOST: usize = 16;

/// Whether the server's prompt fits the host's context budget.
async fn check_size(turn: &Turn<'_>, request: &Sampling, budget: u32) -> Result<(), String> {
    let too_long = || {
        format!(
            "the request is longer than the {budget} tokens this host allows \
             (chat.service.context.max_tokens)"
        )
    };
    let texts = || {
        request
            .system_prompt
            .iter()
            .chain(request.messages.iter().map(|(_, text)| text))
    };
    let bytes: usize = texts().map(String::len).sum();
    if bytes > budget as usize * BYTES_PER_TOKEN_AT_MOST {
        return Err(too_long());
    }
    let joined = texts().map(String::as_str).collect::<Vec<_>>().join("\n");
    if turn.encoding.count_long(&joined).await > budget {
        return Err(too_long());
    }
    Ok(())
}
