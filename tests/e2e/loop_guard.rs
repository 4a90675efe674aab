//! The loop guard: a model that repeats one call, or whose calls keep failing, is stopped
//! after three (by default) and answers without tools; the client gets `tool_loop_stopped`.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{calls, chat, chat_bodies, connect, send, tool_app, tool_frames, turn_frames};

fn notices(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["chunk"]["type"] == "notice")
        .collect()
}

fn finished_tools(frames: &[Value]) -> usize {
    tool_frames(frames)
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] != "running")
        .count()
}

#[tokio::test]
async fn a_model_repeating_one_call_is_stopped_after_three() {
    let (app, fake) = tool_app(|_| {}).await;
    let same = || calls(&[("c", "add", json!({"a": 1, "b": 2}))]);
    // Written differently the third time: the same call all the same.
    let reordered = calls(&[("c", "add", json!({"b": 2, "a": 1}))]);
    fake.mock
        .push([same(), same(), reordered, Reply::text("It is 3.")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "add, again and again", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let complete = frames.last().expect("end");
    assert_eq!(complete["status"], "complete", "{complete}");
    let notices = notices(&frames);
    assert_eq!(notices.len(), 1, "{frames:?}");
    assert_eq!(notices[0]["chunk"]["metadata"]["code"], "tool_loop_stopped");
    let said =
        notices[0]["chunk"]["data"].to_string() + &notices[0]["chunk"]["metadata"].to_string();
    assert!(said.contains("`add` was called 3 times"), "{said}");
    assert_eq!(finished_tools(&frames), 3);
    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 4);
    assert!(bodies[2]["tools"].is_array());
    assert!(
        bodies[3].get("tools").is_none(),
        "tools offered after the stop"
    );
    let last = bodies[3]["messages"].as_array().expect("messages");
    assert!(
        last.iter().any(|m| m["role"] == "system"
            && m["content"]
                .as_str()
                .unwrap_or("")
                .contains("going in circles")),
        "{last:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn three_failing_calls_in_a_row_stop_the_loop_and_the_limits_are_configurable() {
    let (app, fake) = tool_app(|_| {}).await;
    let failing = |n: u32| calls(&[("c", "fail", json!({"text": format!("boom {n}")}))]);
    fake.mock.push([
        failing(1),
        failing(2),
        failing(3),
        Reply::text("The tool is broken."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "try the tool", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let stopped = notices(&frames);
    assert_eq!(stopped.len(), 1, "{frames:?}");
    assert_eq!(stopped[0]["chunk"]["metadata"]["code"], "tool_loop_stopped");
    assert_eq!(chat_bodies(&fake).len(), 4);
    app.shutdown().await;

    // Off: the same calls run on to the hop limit's notice instead.
    let (app, fake) = tool_app(|config| {
        config.chat.service.loop_guard.consecutive_errors = 0;
        config.chat.service.max_tool_hops = 4;
    })
    .await;
    fake.mock.push([
        failing(1),
        failing(2),
        failing(3),
        failing(4),
        Reply::text("Still broken."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "try the tool", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let codes: Vec<&Value> = notices(&frames)
        .iter()
        .map(|n| &n["chunk"]["metadata"]["code"])
        .collect();
    assert_eq!(codes, [&json!("tool_limit_reached")], "{frames:?}");
    assert_eq!(finished_tools(&frames), 4);
    app.shutdown().await;
}
