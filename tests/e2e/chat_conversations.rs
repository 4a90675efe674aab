//! The conversation actions over `/ws/chat`: create, list (paged), history (paged), delete.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{Socket, chat, chat_app, connect, next_frame, send, turn_frames};

fn action(name: &str, request_id: &str, payload: &Value) -> Value {
    json!({"action": name, "request_id": request_id, "payload": payload})
}

/// Sends an action and returns its one answer.
async fn ask(socket: &mut Socket, name: &str, request_id: &str, payload: &Value) -> Value {
    send(socket, action(name, request_id, payload)).await;
    let answer = next_frame(socket).await;
    assert_eq!(answer["request_id"], request_id, "{answer}");
    answer
}

async fn new_conversation(socket: &mut Socket, title: &str) -> String {
    let frame = ask(socket, "new_conversation", title, &json!({"title": title})).await;
    assert_eq!(
        (frame["status"].as_str(), frame["chunk"]["type"].as_str()),
        (Some("complete"), Some("conversation")),
        "{frame}"
    );
    assert_eq!(frame["chunk"]["metadata"]["conversation"]["title"], title);
    frame["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn ids_of(frame: &Value) -> Vec<String> {
    frame["chunk"]["metadata"]["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect()
}

fn contents(frame: &Value) -> Vec<String> {
    frame["chunk"]["metadata"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn conversations_are_created_and_listed_a_page_at_a_time() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let mut ids = Vec::new();
    for title in ["t0", "t1", "t2"] {
        ids.push(new_conversation(&mut socket, title).await);
    }
    // Most recently active first, two per page; the cursor leads to the rest.
    let first = ask(
        &mut socket,
        "list_conversations",
        "l1",
        &json!({"limit": 2}),
    )
    .await;
    assert_eq!(ids_of(&first), [ids[2].clone(), ids[1].clone()], "{first}");
    let cursor = first["chunk"]["metadata"]["next_cursor"].clone();
    assert!(cursor.is_string(), "{first}");
    let payload = json!({"limit": 2, "cursor": cursor});
    let second = ask(&mut socket, "list_conversations", "l2", &payload).await;
    assert_eq!(ids_of(&second), [ids[0].clone()]);
    assert!(second["chunk"]["metadata"]["next_cursor"].is_null());
    app.shutdown().await;
}

#[tokio::test]
async fn history_is_read_newest_page_first_and_a_deleted_conversation_is_gone() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let id = new_conversation(&mut socket, "talk").await;
    for i in 0..3 {
        fake.mock.push([Reply::text(&format!("answer {i}"))]);
        let request = format!("c{i}");
        let extra = json!({"conversation_id": id});
        send(&mut socket, chat(&request, &format!("question {i}"), extra)).await;
        let frames = turn_frames(&mut socket, &request).await;
        assert_eq!(frames.last().expect("end")["status"], "complete");
    }
    let payload = json!({"conversation_id": id, "limit": 2});
    let newest = ask(&mut socket, "get_history", "h1", &payload).await;
    assert_eq!(newest["chunk"]["type"], "history", "{newest}");
    assert_eq!(contents(&newest), ["question 2", "answer 2"]);
    let cursor = newest["chunk"]["metadata"]["next_cursor"].clone();
    let payload = json!({"conversation_id": id, "limit": 10, "cursor": cursor});
    let older = ask(&mut socket, "get_history", "h2", &payload).await;
    assert_eq!(
        contents(&older),
        ["question 0", "answer 0", "question 1", "answer 1"]
    );

    let payload = json!({"conversation_id": id});
    let deleted = ask(&mut socket, "delete_conversation", "d1", &payload).await;
    assert_eq!(deleted["chunk"]["metadata"]["deleted"], true, "{deleted}");
    let gone = ask(&mut socket, "get_history", "h3", &payload).await;
    assert_eq!(
        (gone["status"].as_str(), gone["chunk"]["code"].as_str()),
        (Some("error"), Some("not_found")),
        "{gone}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn bad_conversation_actions_get_clear_errors_and_the_socket_lives_on() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let bad = [
        action("get_history", "b1", &json!({})),
        action("get_history", "b2", &json!({"conversation_id": 7})),
        action(
            "get_history",
            "b3",
            &json!({"conversation_id": "no-such-conversation"}),
        ),
        action(
            "get_history",
            "b4",
            &json!({"conversation_id": "x", "cursor": "soon"}),
        ),
        action(
            "delete_conversation",
            "b5",
            &json!({"conversation_id": "x", "force": true}),
        ),
        action("list_conversations", "b6", &json!({"limit": "ten"})),
        action("list_conversations", "b7", &json!({"cursor": "garbage"})),
        json!({"action": "new_conversation", "payload": {}}),
    ];
    let mut codes = Vec::new();
    for frame in bad {
        send(&mut socket, frame).await;
        let answer = next_frame(&mut socket).await;
        assert_eq!(answer["status"], "error", "{answer}");
        assert!(
            answer["chunk"]["error"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        codes.push(
            answer["chunk"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        codes,
        [
            "invalid_request",
            "invalid_request",
            "not_found",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request"
        ]
    );
    send(&mut socket, action("new_conversation", "ok", &json!(null))).await;
    assert_eq!(next_frame(&mut socket).await["status"], "complete");
    app.shutdown().await;
}
