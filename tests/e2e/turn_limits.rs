//! Bounds on one turn: tool calls per model reply, and the whole turn's deadline.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::json;

use crate::support::{calls, chat, chat_app, chat_bodies, connect, send, tool_frames, turn_frames};

#[tokio::test]
async fn calls_past_the_per_reply_cap_are_not_run_and_the_model_is_told() {
    let (app, fake) = chat_app(|config| {
        config.chat.service.max_tool_calls_per_reply = 2;
    })
    .await;
    let find = json!({"query": "anything"});
    fake.mock.push([
        calls(&[
            ("c1", "memory_find", find.clone()),
            ("c2", "memory_find", find.clone()),
            ("c3", "memory_find", find),
        ]),
        Reply::text("done"),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "look", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let finished: Vec<_> = tool_frames(&frames)
        .into_iter()
        .filter(|f| f["chunk"]["metadata"]["status"] != "running")
        .collect();
    assert_eq!(finished.len(), 3, "{frames:?}");
    let errors = finished
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "error")
        .count();
    assert_eq!(errors, 1, "{finished:?}");
    // The model's next request carries the refusal as the third call's result.
    let bodies = chat_bodies(&fake);
    let results: Vec<String> = bodies[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results.len(), 3);
    assert!(
        results[2].contains("max_tool_calls_per_reply"),
        "{results:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_turn_past_its_deadline_ends_with_turn_timeout() {
    let (app, fake) = chat_app(|config| {
        config.chat.service.turn_timeout = Duration::from_secs(1);
    })
    .await;
    let mut socket = connect(&app).await;
    // The first turns may spend the deadline loading the tokenizer (seconds in a debug
    // build): wait until a normal turn fits.
    let mut warm = false;
    for attempt in 0..30 {
        let id = format!("warm-{attempt}");
        send(&mut socket, chat(&id, "hello", json!({}))).await;
        let frames = turn_frames(&mut socket, &id).await;
        if frames.last().expect("end")["status"] == "complete" {
            warm = true;
            break;
        }
    }
    assert!(warm, "no turn ever completed within 1 s");
    fake.mock.push([Reply::Text {
        pieces: vec!["late".into()],
        first_byte_delay: Duration::from_secs(5),
        chunk_delay: Duration::ZERO,
    }]);
    send(&mut socket, chat("slow", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "slow").await;
    let end = &frames.last().expect("end")["chunk"];
    assert_eq!(end["code"], "turn_timeout", "{frames:?}");
    assert_eq!(end["retryable"], true);
    // The socket goes on: the next turn is answered.
    send(&mut socket, chat("next", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "next").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    app.shutdown().await;
}
