//! Context overflow: a provider's `context_length_exceeded` makes the turn compact once (the
//! history before the message summarised by the model and stored), then answer; later turns
//! send the summary instead of what it stands for; a second overflow ends the turn with
//! `context_too_large`.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{chat, chat_app, chat_bodies, connect, message_contents, send, turn_frames};

fn overflow() -> Reply {
    Reply::Status {
        status: 400,
        retry_after: None,
        body: json!({"error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        .to_string(),
    }
}

/// OpenRouter says it with a numeric code and its own words.
fn openrouter_overflow() -> Reply {
    Reply::Status {
        status: 400,
        retry_after: None,
        body: json!({"error": {"code": 400,
            "message": "This endpoint's maximum context length is 128000 tokens. However, you requested about 130000 tokens."}})
        .to_string(),
    }
}

#[tokio::test]
async fn an_overflow_compacts_once_and_later_turns_send_the_summary() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::text("Paris."),
        overflow(),
        Reply::text("They talked about the capital of France: Paris."),
        Reply::text("About 2 million people."),
        Reply::text("You asked about Paris."),
    ]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("a", "What is the capital of France?", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "a").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();
    let next = json!({"conversation_id": conversation});

    send(
        &mut socket,
        chat("b", "How many people live there?", next.clone()),
    )
    .await;
    let frames = turn_frames(&mut socket, "b").await;
    let complete = frames.last().expect("end");
    assert_eq!(complete["status"], "complete", "{frames:?}");
    let notice = frames
        .iter()
        .find(|f| f["chunk"]["type"] == "notice")
        .expect("a notice");
    assert_eq!(notice["chunk"]["metadata"]["code"], "context_compacted");

    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 4);
    // The summary request: the model's own instructions and the transcript of the history.
    let asked = message_contents(&bodies[2]);
    assert!(
        asked[0].starts_with("Summarise the conversation"),
        "{asked:?}"
    );
    assert!(
        asked[1].contains("User: What is the capital of France?")
            && asked[1].contains("Assistant: Paris."),
        "{asked:?}"
    );
    assert!(bodies[2].get("tools").is_none());
    // The retry: system prompt, summary, the question; nothing of the summarised history.
    let retried = message_contents(&bodies[3]);
    assert_eq!(retried.len(), 3, "{retried:?}");
    assert!(retried[1].ends_with("They talked about the capital of France: Paris."));
    assert_eq!(retried[2], "How many people live there?");

    // Stored: the summary after the question, then the answer.
    let id = conversation.as_str().expect("id");
    let history = app.history(id).await;
    let roles: Vec<&str> = history.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "system", "assistant"]);
    assert!(
        history[3]["content"]
            .as_str()
            .unwrap_or("")
            .starts_with("[Summary of the conversation before this point]"),
        "{history:?}"
    );

    // The next turn sends the summary, the compacted turn and the new question.
    send(&mut socket, chat("c", "What did I ask?", next)).await;
    let frames = turn_frames(&mut socket, "c").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let sent = message_contents(&chat_bodies(&fake)[4]);
    assert!(
        !sent
            .iter()
            .any(|m| m.contains("What is the capital of France?")),
        "{sent:?}"
    );
    assert!(
        sent[1].starts_with("[Summary of the conversation"),
        "{sent:?}"
    );
    assert_eq!(
        sent[2..],
        [
            "How many people live there?",
            "About 2 million people.",
            "What did I ask?"
        ]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_second_overflow_or_nothing_to_summarise_ends_with_context_too_large() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    // Nothing before the message: no compaction, no retry.
    fake.mock.push([overflow()]);
    send(
        &mut socket,
        chat("a", "A very long first message", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "a").await;
    let end = &frames.last().expect("end")["chunk"];
    assert_eq!(end["code"], "context_too_large", "{frames:?}");
    assert!(
        end["error"]
            .as_str()
            .unwrap_or("")
            .contains("no earlier history"),
        "{end}"
    );
    assert_eq!(chat_bodies(&fake).len(), 1);
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();

    // Overflow, summary, overflow again: the end, after exactly three requests.
    fake.mock.push([
        openrouter_overflow(),
        Reply::text("A summary."),
        openrouter_overflow(),
    ]);
    let next = json!({"conversation_id": conversation});
    send(&mut socket, chat("b", "And another", next)).await;
    let frames = turn_frames(&mut socket, "b").await;
    let end = &frames.last().expect("end")["chunk"];
    assert_eq!(end["code"], "context_too_large", "{frames:?}");
    assert_eq!(end["retryable"], false);
    assert_eq!(chat_bodies(&fake).len(), 4);
    let notices = frames
        .iter()
        .filter(|f| f["chunk"]["type"] == "notice")
        .count();
    assert_eq!(notices, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn compact_on_request_summarises_and_later_turns_start_from_the_summary() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::text("Paris."),
        Reply::text("We talked about Paris."),
        Reply::text("Yes, Paris."),
    ]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("a", "What is the capital of France?", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "a").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();
    let compact = |id: &str, conversation: &Value| json!({"action": "compact", "request_id": id, "payload": {"conversation_id": conversation}});

    send(&mut socket, compact("k1", &conversation)).await;
    let done = crate::support::next_frame(&mut socket).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["chunk"]["type"], "compacted");
    let meta = &done["chunk"]["metadata"];
    assert_eq!(meta["summarised"], 2, "{done}");
    assert!(meta["summary_message_id"].is_i64(), "{done}");
    assert!(
        meta["summary"]
            .as_str()
            .unwrap_or("")
            .ends_with("We talked about Paris."),
        "{done}"
    );
    // Nothing new since: refused; an unknown conversation: not found.
    send(&mut socket, compact("k2", &conversation)).await;
    let again = crate::support::next_frame(&mut socket).await;
    assert_eq!(again["chunk"]["code"], "invalid_request", "{again}");
    send(&mut socket, compact("k3", &json!("no-such-conversation"))).await;
    let unknown = crate::support::next_frame(&mut socket).await;
    assert_eq!(unknown["chunk"]["code"], "not_found", "{unknown}");

    send(
        &mut socket,
        chat("b", "Sure?", json!({"conversation_id": conversation})),
    )
    .await;
    let frames = turn_frames(&mut socket, "b").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let sent = message_contents(&chat_bodies(&fake)[2]);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent[1].starts_with("[Summary of the conversation"),
        "{sent:?}"
    );
    assert_eq!(sent[2], "Sure?");
    assert_eq!(chat_bodies(&fake).len(), 3);
    app.shutdown().await;
}
