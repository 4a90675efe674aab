//! Resources and prompts of the hosted MCP servers, for the client: `list_resources`,
//! `read_resource`, `list_prompts`, `get_prompt`, against this repo's test server and the
//! reference server-everything; lists refreshed when a server says they changed.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{Socket, calls, chat, connect, next_frame, send, tool_app, turn_frames};

/// Sends `action` with `payload`; the answer frame.
async fn ask(socket: &mut Socket, action: &str, payload: Value) -> Value {
    send(
        socket,
        json!({"action": action, "request_id": action, "payload": payload}),
    )
    .await;
    next_frame(socket).await
}

fn uris(listed: &Value) -> Vec<String> {
    listed["chunk"]["metadata"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["uri"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn the_test_servers_resources_are_listed_in_pages_and_read() {
    let (app, _fake) = tool_app(|_| {}).await;
    let mut socket = connect(&app).await;

    let listed = ask(&mut socket, "list_resources", json!({})).await;
    assert_eq!(listed["status"], "complete", "{listed}");
    assert_eq!(listed["chunk"]["type"], "resources");
    assert_eq!(uris(&listed), ["test://notes/readme", "test://notes/logo"]);
    let first = &listed["chunk"]["metadata"]["resources"][0];
    assert_eq!(first["server"], "test");
    assert_eq!(first["title"], "Read me");
    // Paged: one per page, then the cursor runs out.
    let page = ask(&mut socket, "list_resources", json!({"limit": 1})).await;
    let cursor = page["chunk"]["metadata"]["next_cursor"].clone();
    assert_eq!(uris(&page), ["test://notes/readme"]);
    let next = ask(
        &mut socket,
        "list_resources",
        json!({"limit": 1, "cursor": cursor}),
    )
    .await;
    assert_eq!(uris(&next), ["test://notes/logo"]);
    assert_eq!(next["chunk"]["metadata"]["next_cursor"], Value::Null);
    let bad = ask(&mut socket, "list_resources", json!({"cursor": "zzz"})).await;
    assert_eq!(bad["chunk"]["code"], "invalid_request", "{bad}");

    let read = ask(
        &mut socket,
        "read_resource",
        json!({"uri": "test://notes/readme"}),
    )
    .await;
    assert_eq!(read["chunk"]["type"], "resource", "{read}");
    let meta = &read["chunk"]["metadata"];
    assert_eq!(meta["server"], "test");
    assert_eq!(meta["contents"][0]["text"], "The launch is on Friday.");
    let logo = ask(
        &mut socket,
        "read_resource",
        json!({"uri": "test://notes/logo"}),
    )
    .await;
    let part = &logo["chunk"]["metadata"]["contents"][0];
    assert_eq!(part["text"], Value::Null, "{logo}");
    assert_eq!(part["mime_type"], "image/png");
    assert!(part["blob_bytes"].as_u64().is_some_and(|n| n > 0), "{logo}");
    // A URI no server lists; the server's own refusal when it is named.
    let unlisted = ask(&mut socket, "read_resource", json!({"uri": "test://nope"})).await;
    assert_eq!(unlisted["chunk"]["code"], "not_found", "{unlisted}");
    let refused = ask(
        &mut socket,
        "read_resource",
        json!({"uri": "test://nope", "server": "test"}),
    )
    .await;
    assert_eq!(refused["chunk"]["code"], "invalid_request", "{refused}");
    assert!(
        refused["chunk"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("no resource test://nope"),
        "{refused}"
    );
    let missing = ask(&mut socket, "read_resource", json!({})).await;
    assert_eq!(missing["chunk"]["code"], "invalid_request", "{missing}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_test_servers_prompts_are_listed_and_filled_in() {
    let (app, _fake) = tool_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let prompts = ask(&mut socket, "list_prompts", json!(null)).await;
    let listed = &prompts["chunk"]["metadata"]["prompts"];
    assert_eq!(listed[0]["name"], "greet", "{prompts}");
    assert_eq!(listed[0]["server"], "test");
    assert_eq!(listed[0]["arguments"][0]["name"], "name");
    assert_eq!(listed[0]["arguments"][0]["required"], true);
    let greet = ask(
        &mut socket,
        "get_prompt",
        json!({"name": "greet", "arguments": {"name": "Ada"}}),
    )
    .await;
    assert_eq!(greet["chunk"]["type"], "prompt", "{greet}");
    let filled = &greet["chunk"]["metadata"];
    assert_eq!(filled["messages"][0]["role"], "user");
    assert_eq!(filled["messages"][0]["text"], "Say hello to Ada.");
    assert_eq!(filled["description"], "A greeting");
    let no_arg = ask(&mut socket, "get_prompt", json!({"name": "greet"})).await;
    assert!(
        no_arg["chunk"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("`name` is required"),
        "{no_arg}"
    );
    let typed = ask(
        &mut socket,
        "get_prompt",
        json!({"name": "greet", "arguments": {"name": 7}}),
    )
    .await;
    assert_eq!(typed["chunk"]["code"], "invalid_request", "{typed}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_lists_follow_when_a_server_says_they_changed() {
    let (app, fake) = tool_app(|_| {}).await;
    let mut socket = connect(&app).await;
    fake.mock.push([
        calls(&[("call_1", "publish", json!({}))]),
        Reply::text("Published."),
    ]);
    send(&mut socket, chat("r1", "publish", json!({}))).await;
    turn_frames(&mut socket, "r1").await;
    // A socket is read by one reader at a time: this wait asks in a loop of its own.
    let mut refreshed = Vec::new();
    for _ in 0..600 {
        refreshed = uris(&ask(&mut socket, "list_resources", json!({})).await);
        if refreshed.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refreshed.contains(&"test://notes/news".to_string()),
        "{refreshed:?}"
    );
    let prompts = ask(&mut socket, "list_prompts", json!({})).await;
    assert_eq!(
        prompts["chunk"]["metadata"]["prompts"][1]["name"], "news",
        "{prompts}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn server_everythings_documents_and_prompts_reach_the_client() {
    let (app, _fake) = crate::support::everything_app(json!({}), Duration::from_secs(60)).await;
    let mut socket = connect(&app).await;
    let listed = ask(&mut socket, "list_resources", json!({"limit": 500})).await;
    let document = uris(&listed)
        .into_iter()
        .find(|uri| uri.starts_with("demo://resource/static/document/"))
        .unwrap_or_else(|| panic!("a static document: {listed}"));
    let read = ask(&mut socket, "read_resource", json!({"uri": document})).await;
    let text = read["chunk"]["metadata"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(!text.is_empty(), "{read}");
    assert_eq!(read["chunk"]["metadata"]["server"], "everything");

    let prompts = ask(&mut socket, "list_prompts", json!({})).await;
    let names: Vec<&str> = prompts["chunk"]["metadata"]["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"simple-prompt") && names.contains(&"args-prompt"),
        "{names:?}"
    );
    let filled = ask(
        &mut socket,
        "get_prompt",
        json!({"name": "args-prompt", "arguments": {"city": "Paris"}}),
    )
    .await;
    assert_eq!(
        filled["chunk"]["metadata"]["messages"][0]["text"], "What's weather in Paris?",
        "{filled}"
    );
    app.shutdown().await;
}
