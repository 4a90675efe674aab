//! Mid-stream failover: a provider that breaks off after its first tokens hands the turn to
//! the fallback provider, where the answer starts again after an `answer_restarted` notice;
//! the stored answer is whole and names both providers. Without a fallback the partial answer
//! is stored `failed` and the error is retryable.

use crate::support::{chat, chat_app, connect, send, turn_frames, with_backup};
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

fn texts(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["status"] == "chunk")
        .filter_map(|f| f["chunk"]["data"].as_str())
        .collect()
}

#[tokio::test]
async fn a_stream_dropped_after_five_chunks_goes_on_on_the_fallback() {
    let (app, primary, backup) = with_backup().await;
    primary.mock.push([Reply::DropAfter { pieces_before: 5 }]);
    backup.mock.push([Reply::text("The whole answer.")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "tell me", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let complete = frames.last().expect("end");
    assert_eq!(complete["status"], "complete", "{frames:?}");
    assert_eq!(complete["chunk"]["metadata"]["provider"], "backup");
    assert_eq!(complete["chunk"]["metadata"]["model"], "backup-model");

    // Five chunks, the notice, then the fallback's answer.
    let notice = frames
        .iter()
        .position(|f| f["chunk"]["type"] == "notice")
        .expect("a notice");
    assert_eq!(
        frames[notice]["chunk"]["metadata"]["code"],
        "answer_restarted"
    );
    let said = frames[notice]["chunk"]["data"].as_str().unwrap_or("");
    assert!(
        said.contains("`mock`") && said.contains("`backup`"),
        "{said}"
    );
    assert_eq!(texts(&frames[..notice]).split_whitespace().count(), 5);
    assert_eq!(texts(&frames[notice..]), "The whole answer.");
    // The fallback got the same conversation, with its own model.
    let asked = &backup.mock.requests()[0].body;
    assert_eq!(asked["model"], "backup-model");
    assert_eq!(
        asked["messages"],
        primary.mock.requests()[0].body["messages"]
    );

    // Stored whole, naming both providers.
    let id = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    let history = app.history(&id).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1]["content"], "The whole answer.");
    assert_eq!(history[1]["status"], "complete");
    assert_eq!(history[1]["model"], "backup-model");
    assert_eq!(history[1]["usage"]["providers"], json!(["mock", "backup"]));
    app.shutdown().await;
}

#[tokio::test]
async fn once_per_turn_and_without_a_fallback_the_partial_answer_is_stored_failed() {
    // Both break off: one failover, then the turn ends, retryable, the partial answer kept.
    let (app, primary, backup) = with_backup().await;
    primary.mock.push([Reply::DropAfter { pieces_before: 2 }]);
    backup
        .mock
        .push([Reply::ErrorMidStream { pieces_before: 3 }]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "tell me", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let end = frames.last().expect("end");
    assert_eq!(end["status"], "error", "{frames:?}");
    assert_eq!(end["chunk"]["code"], "provider_error");
    assert_eq!(end["chunk"]["retryable"], true);
    assert_eq!(primary.mock.requests().len(), 1);
    assert_eq!(backup.mock.requests().len(), 1);
    app.shutdown().await;

    let (app, primary) = chat_app(|_| {}).await;
    primary.mock.push([Reply::DropAfter { pieces_before: 3 }]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "tell me", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let end = frames.last().expect("end");
    assert_eq!(end["chunk"]["retryable"], true, "{end}");
    assert!(!frames.iter().any(|f| f["chunk"]["type"] == "notice"));
    let id = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    let history = app.history(&id).await;
    assert_eq!(history[1]["status"], "failed", "{history:?}");
    assert_eq!(history[1]["content"], "w0 w1 w2 ");
    app.shutdown().await;
}
