//! Text tool calls (`tool_calls: text`): a model without function calling writes
//! `<tool_call>` markup, split across stream chunks in any way; the server runs the MCP tool,
//! shows the same `tool_execution` frames as for native calls, never the markup, and sends the
//! result back as `<tool_response>` user text.

use std::time::Duration;

use mcp_platform::config::ToolCallMode;
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{chat, chat_bodies, connect, send, tool_app, tool_frames, turn_frames};

fn pieces(pieces: &[&str]) -> Reply {
    Reply::Text {
        pieces: pieces.iter().map(ToString::to_string).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::ZERO,
    }
}

/// Everything the client was shown as the answer's text.
fn shown_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["status"] == "chunk" && f["chunk"]["type"] == "text")
        .filter_map(|f| f["chunk"]["data"].as_str())
        .collect()
}

fn messages(body: &Value) -> &Vec<Value> {
    body["messages"].as_array().expect("messages")
}

fn content(message: &Value) -> &str {
    message["content"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_text_mode_model_calls_an_mcp_tool_through_markup_split_across_chunks() {
    let (app, fake) = tool_app(|config| {
        if let Some(mock) = config.llm.providers.get_mut("mock") {
            mock.tool_calls = ToolCallMode::Text;
        }
    })
    .await;
    fake.mock.push([
        pieces(&[
            "Let me ask the tool.\n<tool",
            "_call>\n{\"name\": \"ec",
            "ho\", \"argu",
            "ments\": {\"text\": \"po",
            "ng\"}}\n</tool_ca",
            "ll>\n",
        ]),
        Reply::text("The tool said pong."),
        Reply::text("Still pong."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "ping the tool", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let complete = frames.last().expect("end");
    assert_eq!(complete["status"], "complete", "{frames:?}");
    let tools = tool_frames(&frames);
    assert_eq!(tools.len(), 2, "{frames:?}");
    assert_eq!(tools[0]["chunk"]["metadata"]["status"], "running");
    assert_eq!(
        tools[0]["chunk"]["metadata"]["arguments"],
        json!({"text": "pong"})
    );
    assert_eq!(tools[1]["chunk"]["metadata"]["status"], "ok");
    assert_eq!(tools[1]["chunk"]["data"], "pong");
    let shown = shown_text(&frames);
    assert_eq!(shown, "Let me ask the tool.\nThe tool said pong.");
    let all = serde_json::to_string(&frames).expect("frames");
    assert!(!all.contains("tool_call>"), "markup reached the client");

    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        assert!(body.get("tools").is_none(), "native tools sent: {body}");
        assert!(
            messages(body)
                .iter()
                .all(|m| m["role"] != "tool" && m.get("tool_calls").is_none()),
            "{body}"
        );
    }
    let system = content(&messages(&bodies[0])[0]);
    assert!(
        system.contains("<tools>") && system.contains("\"name\":\"echo\""),
        "{system}"
    );
    let second = messages(&bodies[1]);
    let asked = content(&second[second.len() - 2]);
    assert!(
        asked.contains("<tool_call>") && asked.contains("\"echo\""),
        "{asked}"
    );
    let answered = second.last().expect("results");
    assert_eq!(answered["role"], "user");
    assert!(
        content(answered).contains("<tool_response>")
            && content(answered).contains("\"content\":\"pong\"")
            && content(answered).contains("\"name\":\"echo\""),
        "{answered}"
    );

    // The next turn of the conversation replays the stored call as markup too.
    let conversation = complete["chunk"]["metadata"]["conversation_id"].clone();
    send(
        &mut socket,
        chat("r2", "again", json!({"conversation_id": conversation})),
    )
    .await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(shown_text(&frames), "Still pong.");
    let third = chat_bodies(&fake).pop().expect("third request");
    let replay = serde_json::to_string(messages(&third)).expect("messages");
    assert!(
        replay.contains("<tool_call>") && replay.contains("<tool_response>"),
        "{replay}"
    );
    assert!(messages(&third).iter().all(|m| m["role"] != "tool"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_malformed_text_call_is_answered_with_an_error_the_model_reads() {
    let (app, fake) = tool_app(|config| {
        if let Some(mock) = config.llm.providers.get_mut("mock") {
            mock.tool_calls = ToolCallMode::Text;
        }
    })
    .await;
    fake.mock.push([
        pieces(&["<tool_call>{\"name\": \"echo\", \"arguments\": {text: pong}}</tool_call>"]),
        Reply::text("Sorry, I wrote that wrong."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "ping the tool", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let tools = tool_frames(&frames);
    assert_eq!(tools.len(), 2, "{frames:?}");
    assert_eq!(
        tools[1]["chunk"]["metadata"]["status"], "error",
        "{tools:?}"
    );
    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 2);
    let told = content(messages(&bodies[1]).last().expect("result"));
    assert!(
        told.contains("not run") && told.contains("not valid JSON"),
        "{told}"
    );
    assert_eq!(shown_text(&frames), "Sorry, I wrote that wrong.");
    app.shutdown().await;
}
