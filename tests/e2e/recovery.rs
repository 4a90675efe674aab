//! One recovery story for a repeated `request_id`: answered → replayed; cancelled or failed →
//! continued from what is stored, a stored tool round not run again.

use mcp_platform::mock_provider::Reply;
use serde_json::json;

use crate::support::{calls, chat, chat_bodies, connect, send, tool_app, tool_frames, turn_frames};

#[tokio::test]
async fn a_failed_turn_with_a_stored_tool_round_continues_without_calling_the_tool_again() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[("call_1", "add", json!({"a": 1, "b": 2}))]),
        Reply::DropAfter { pieces_before: 2 },
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "add 1 and 2", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    assert_eq!(frames.last().expect("end")["status"], "error", "{frames:?}");
    assert_eq!(tool_frames(&frames).len(), 2);
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();

    // The same request again: the stored round goes to the model, the tool is not called.
    fake.mock.push([Reply::text("It is 3.")]);
    let again = json!({"conversation_id": conversation});
    send(&mut socket, chat("r", "add 1 and 2", again)).await;
    let frames = turn_frames(&mut socket, "r").await;
    let complete = frames.last().expect("end");
    assert_eq!(complete["status"], "complete", "{frames:?}");
    assert_eq!(complete["chunk"]["metadata"]["replayed"], false);
    assert!(
        tool_frames(&frames).is_empty(),
        "the tool ran again: {frames:?}"
    );
    let health = app.health().await.1;
    assert_eq!(
        health["mcp_stats"]["servers"]["test"]["calls"], 1,
        "{health}"
    );

    let bodies = chat_bodies(&fake);
    let sent = bodies.last().expect("the retry")["messages"]
        .as_array()
        .expect("messages")
        .clone();
    let roles: Vec<&str> = sent.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"], "{sent:?}");
    assert_eq!(sent[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(sent[3]["content"], "3");

    // Stored once: the question, the round, the broken answer, the answer.
    let id = conversation.as_str().expect("id");
    let history = app.history(id).await;
    let shape: Vec<(String, String)> = history
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").to_string(),
                m["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("user", "complete"),
        ("assistant", "complete"),
        ("tool", "complete"),
        ("assistant", "failed"),
        ("assistant", "complete"),
    ]
    .map(|(r, s)| (r.to_string(), s.to_string()));
    assert_eq!(shape, expected);
    // Answered now: a third try is a replay.
    send(
        &mut socket,
        chat("r", "add 1 and 2", json!({"conversation_id": conversation})),
    )
    .await;
    let frames = turn_frames(&mut socket, "r").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["metadata"]["replayed"],
        true
    );
    assert_eq!(chat_bodies(&fake).len(), 3);
    app.shutdown().await;
}
