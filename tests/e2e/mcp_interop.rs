//! Interop with a real third-party MCP server: the reference `mcp-server-time` (Python, from
//! PyPI, see `python.rs`), started over stdio by the host as any user's config would, its tools
//! offered to the model and called in a turn.

use serde_json::{Value, json};

use crate::support::python::python;
use crate::support::{
    calls, chat, chat_app, chat_bodies, connect, send, text_of, tool_frames, tool_result,
    turn_frames, wait_ready,
};
use mcp_platform::mock_provider::Reply;

#[tokio::test]
async fn the_reference_time_server_lists_its_tools_and_answers_in_a_turn() {
    let python = python().display().to_string();
    let (app, fake) = chat_app(|config| {
        let entry = json!({
            "command": python,
            "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
            "timeout": "20s",
        });
        let entry = serde_json::from_value(entry).expect("a valid entry");
        config.mcp.servers.insert("time".into(), entry);
        config.memory.tools = false;
    })
    .await;
    wait_ready(&app, "time").await;
    let health = app.health().await.1;
    let server = &health["mcp_stats"]["servers"]["time"];
    assert_eq!(server["transport"], "stdio", "{server}");
    assert_eq!(server["tools"], 2, "{server}");
    let version = server["protocol_version"].as_str().unwrap_or_default();
    assert!(
        ["2025-06-18", "2025-11-25"].contains(&version),
        "negotiated {version}"
    );

    fake.mock.push([
        calls(&[
            (
                "call_1",
                "get_current_time",
                json!({"timezone": "Europe/Paris"}),
            ),
            (
                "call_2",
                "convert_time",
                json!({"source_timezone": "Mars/Olympus",
                "time": "12:00", "target_timezone": "UTC"}),
            ),
        ]),
        Reply::text("It is evening in Paris."),
    ]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("r1", "What time is it in Paris?", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(text_of(&frames), "It is evening in Paris.", "{frames:?}");

    // The model was offered both tools with their schemas.
    let bodies = chat_bodies(&fake);
    let offered: Vec<&Value> = bodies[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .collect();
    let mut names: Vec<&str> = offered
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["convert_time", "get_current_time"], "{offered:?}");
    let parameters = offered
        .iter()
        .find(|t| t["function"]["name"] == "get_current_time")
        .map(|t| &t["function"]["parameters"])
        .expect("get_current_time");
    assert_eq!(parameters["type"], "object", "{parameters}");
    assert!(
        parameters["properties"]["timezone"].is_object(),
        "{parameters}"
    );

    // The good call answered with the time in Paris, the bad one with an error the model
    // reads; the turn went on either way.
    let finished: Vec<&Value> = tool_frames(&frames)
        .into_iter()
        .filter(|f| f["chunk"]["metadata"]["status"] != "running")
        .collect();
    let status_of = |id: &str| {
        finished
            .iter()
            .find(|f| f["chunk"]["metadata"]["call_id"] == id)
            .map(|f| f["chunk"]["metadata"]["status"].clone())
    };
    assert_eq!(status_of("call_1"), Some(json!("ok")), "{finished:?}");
    assert_eq!(status_of("call_2"), Some(json!("error")), "{finished:?}");
    let paris: Value = serde_json::from_str(tool_result(&bodies[1], "call_1"))
        .expect("the time server answers JSON");
    assert_eq!(paris["timezone"], "Europe/Paris", "{paris}");
    assert!(paris["datetime"].is_string(), "{paris}");
    let mars = tool_result(&bodies[1], "call_2");
    assert!(mars.contains("Mars/Olympus"), "{mars}");

    let stats = &app.health().await.1["mcp_stats"]["servers"]["time"];
    assert_eq!(
        (stats["calls"].as_u64(), stats["errors"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );
}
