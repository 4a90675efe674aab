//! What a model call cost when its provider does not say: llama.cpp's servers and others send
//! no usage in a stream, and an answer cut off (cancelled, broken) never gets to its usage. We
//! count with our tokenizer what we sent and what came back, marked `estimated`, so figures
//! and `tokens_per_day` quotas see every call.

use crate::llm::{ChatMessage, ToolCall, ToolSpec, Usage};

use crate::tokens::{Encoding, PER_MESSAGE, REPLY_PRIMING};

/// Tokens of a request (its messages and the tools offered) and of the reply received so far.
pub async fn estimate(
    encoding: Encoding,
    sent: (&[ChatMessage], &[ToolSpec]),
    text: &str,
    calls: &[ToolCall],
) -> Usage {
    let (messages, tools) = sent;
    let mut prompt = String::new();
    for message in messages {
        push_line(&mut prompt, message.content.as_deref().unwrap_or_default());
        push_calls(&mut prompt, &message.tool_calls);
    }
    for tool in tools {
        push_line(&mut prompt, &tool.name);
        push_line(&mut prompt, &tool.description);
        push_line(&mut prompt, &tool.parameters.to_string());
    }
    let mut reply = text.to_string();
    push_calls(&mut reply, calls);
    let framing = PER_MESSAGE.saturating_mul(u32::try_from(messages.len()).unwrap_or(u32::MAX));
    let prompt_tokens =
        u64::from(encoding.count_long(&prompt).await) + u64::from(framing + REPLY_PRIMING);
    let completion_tokens = u64::from(encoding.count_long(&reply).await);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        estimated: true,
    }
}

fn push_line(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

fn push_calls(out: &mut String, calls: &[ToolCall]) {
    for call in calls {
        push_line(out, &call.name);
        push_line(out, &call.arguments);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::MessageRole;

    #[tokio::test]
    async fn a_request_and_its_reply_are_counted_and_marked_estimated() {
        let encoding = Encoding::Cl100kBase;
        encoding.load().await;
        let sent = [
            ChatMessage::new(MessageRole::System, "You are brief."),
            ChatMessage::new(MessageRole::User, "hello world"),
        ];
        let usage = estimate(encoding, (&sent, &[]), "hello world", &[]).await;
        assert!(usage.estimated);
        assert_eq!(usage.completion_tokens, 2, "'hello world' is two tokens");
        // Both texts, one newline between them, and the chat format's framing.
        let texts = u64::from(encoding.count("You are brief.\nhello world"));
        assert_eq!(
            usage.prompt_tokens,
            texts + u64::from(2 * PER_MESSAGE + REPLY_PRIMING)
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
    }

    #[tokio::test]
    async fn tool_calls_in_the_reply_count_as_completion() {
        let encoding = Encoding::Cl100kBase;
        encoding.load().await;
        let call = ToolCall {
            id: "c".into(),
            name: "echo".into(),
            arguments: "{\"text\": \"pong\"}".into(),
        };
        let usage = estimate(encoding, (&[], &[]), "", &[call]).await;
        assert!(usage.completion_tokens > 3, "{usage:?}");
    }
}
