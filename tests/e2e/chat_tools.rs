//! The tool loop of a turn over `/ws/chat`: the fake provider asks for tools, the host runs
//! them on the real `mcp-test-server`, the client sees each call, the model gets the results.

use crate::support::{
    TEST_TOOLS, calls, chat, chat_bodies, connect, send, stdio_entry, text_of, tool_app,
    tool_frames, turn_frames,
};
use mcp_platform::mock_provider::{MockCall, Reply};
use serde_json::json;

#[tokio::test]
async fn a_tool_call_runs_shows_and_its_result_reaches_the_model_and_the_history() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[("call_1", "echo", json!({"text": "pong"}))]),
        Reply::text("The tool said pong."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "ping the tool", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let tools = tool_frames(&frames);
    assert_eq!(tools.len(), 2, "{frames:?}");
    assert_eq!(tools[0]["chunk"]["metadata"]["status"], "running");
    assert_eq!(
        tools[0]["chunk"]["metadata"]["arguments"],
        json!({"text": "pong"})
    );
    assert_eq!(tools[1]["chunk"]["metadata"]["status"], "ok");
    assert_eq!(tools[1]["chunk"]["data"], "pong");
    assert!(tools[1]["chunk"]["metadata"]["duration_ms"].is_number());
    assert_eq!(text_of(&frames), "The tool said pong.");
    let complete = frames.last().expect("complete");
    assert_eq!(
        complete["chunk"]["metadata"]["tool_rounds"], 1,
        "{complete}"
    );

    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 2);
    let offered: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .expect("tools offered")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    // The built-in memory tools first, then the server's.
    assert_eq!(offered.len(), TEST_TOOLS + 3);
    assert_eq!(
        offered[..3],
        ["memory_store", "memory_find", "memory_delete"]
    );
    let second = bodies[1]["messages"].as_array().expect("messages");
    let result = second.last().expect("the tool result");
    assert_eq!(
        (
            result["role"].as_str(),
            result["tool_call_id"].as_str(),
            result["content"].as_str()
        ),
        (Some("tool"), Some("call_1"), Some("pong"))
    );
    assert_eq!(second[second.len() - 2]["tool_calls"][0]["id"], "call_1");

    // Stored: user, the assistant's call, its result, the answer; a later turn replays them.
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    let roles: Vec<String> = app
        .history(&conversation)
        .await
        .iter()
        .filter_map(|m| m["role"].as_str().map(String::from))
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    fake.mock.push([Reply::text("ok")]);
    send(
        &mut socket,
        chat("r2", "again", json!({"conversation_id": conversation})),
    )
    .await;
    turn_frames(&mut socket, "r2").await;
    let third = chat_bodies(&fake)[2]["messages"].clone();
    let roles: Vec<&str> = third
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert!(
        roles.ends_with(&["user", "assistant", "tool", "assistant", "user"]),
        "{roles:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_calls_of_one_reply_run_in_parallel() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            ("a", "sleep", json!({"ms": 400})),
            ("b", "sleep", json!({"ms": 400})),
            ("c", "sleep", json!({"ms": 400})),
        ]),
        Reply::text("rested"),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "sleep three times", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    // The server counts how many sleeps ran at once; the last to finish saw all three.
    let peaks: Vec<String> = tool_frames(&frames)
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "ok")
        .filter_map(|f| f["chunk"]["data"].as_str().map(String::from))
        .collect();
    assert_eq!(peaks.len(), 3);
    assert!(
        peaks.iter().any(|p| p.ends_with("peak concurrency 3")),
        "{peaks:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_timeout_a_tool_error_and_bad_arguments_are_results_and_the_turn_completes() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            ("slow", "sleep", json!({"ms": 5000})),
            ("err", "fail", json!({"text": "no such city"})),
        ]),
        Reply::ToolCalls {
            calls: vec![MockCall {
                id: "bad".into(),
                name: "echo".into(),
                arguments: "{\"text\": ".into(),
            }],
            pieces: 1,
        },
        Reply::text("Sorry, the tools failed."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "try", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let finished: Vec<(String, String)> = tool_frames(&frames)
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] != "running")
        .map(|f| {
            (
                f["chunk"]["metadata"]["call_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                f["chunk"]["data"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(finished.len(), 3, "{frames:?}");
    assert!(
        finished
            .iter()
            .any(|(id, text)| id == "slow" && text.contains("did not answer within 1 s"))
    );
    assert!(
        finished
            .iter()
            .any(|(id, text)| id == "err" && text == "no such city")
    );
    assert!(
        finished
            .iter()
            .any(|(id, text)| id == "bad" && text.contains("not valid JSON"))
    );
    assert_eq!(frames.last().expect("end")["status"], "complete");
    assert_eq!(text_of(&frames), "Sorry, the tools failed.");
    app.shutdown().await;
}

#[tokio::test]
async fn past_the_hop_limit_the_model_answers_without_tools_and_the_client_is_told() {
    let (app, fake) = tool_app(|config| config.chat.service.max_tool_hops = 2).await;
    fake.mock.push([
        calls(&[("1", "add", json!({"a": 1, "b": 1}))]),
        calls(&[("2", "add", json!({"a": 2, "b": 2}))]),
        Reply::text("4, I think."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "add forever", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let notice = frames
        .iter()
        .find(|f| f["chunk"]["type"] == "notice")
        .expect("a notice");
    assert_eq!(notice["chunk"]["metadata"]["code"], "tool_limit_reached");
    let complete = frames.last().expect("complete");
    assert_eq!(
        complete["chunk"]["metadata"]["tool_limit_reached"], true,
        "{complete}"
    );
    assert_eq!(complete["chunk"]["metadata"]["tool_rounds"], 2);
    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 3);
    assert!(bodies[1]["tools"].is_array());
    assert!(
        bodies[2].get("tools").is_none(),
        "the last request still offered tools"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_turn_cancels_its_running_tool_call() {
    let (app, fake) = tool_app(|config| {
        config
            .mcp
            .servers
            .insert("test".into(), stdio_entry(json!({"timeout": "30s"})));
    })
    .await;
    fake.mock
        .push([calls(&[("long", "sleep", json!({"ms": 20000}))])]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "sleep long", json!({}))).await;
    // Wait for the call to start, then cancel.
    loop {
        let frame = crate::support::next_frame(&mut socket).await;
        if frame["chunk"]["type"] == "tool_execution" {
            break;
        }
    }
    send(&mut socket, json!({"action": "cancel", "request_id": "r"})).await;
    let frames = turn_frames(&mut socket, "r").await;
    let end = frames.last().expect("end");
    assert_eq!(end["chunk"]["code"], "cancelled", "{frames:?}");
    let finished = tool_frames(&frames);
    assert_eq!(finished[0]["chunk"]["data"], "the call was cancelled");
    assert_eq!(
        chat_bodies(&fake).len(),
        1,
        "the model was asked again after a cancel"
    );
    // The server was told (`notifications/cancelled`): its sleep ended early.
    fake.mock.push([
        calls(&[("count", "cancellations", json!({}))]),
        Reply::text("ok"),
    ]);
    send(&mut socket, chat("r2", "how many?", json!({}))).await;
    let frames = turn_frames(&mut socket, "r2").await;
    let count = tool_frames(&frames)
        .last()
        .map(|f| f["chunk"]["data"].clone());
    assert_eq!(count, Some(json!("cancelled 1")), "{frames:?}");
    app.shutdown().await;
}
