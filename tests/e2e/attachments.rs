//! Attachments: MCP resources named by a chat message are read from their server, sent to
//! the model with the message, stored with it, shown by `get_history`, and sent again on
//! every later turn of the conversation; one that cannot be read refuses the message.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{chat, connect, next_frame, send, tool_app, turn_frames};

const README: &str = "<attachment uri=\"test://notes/readme\" server=\"test\" mime_type=\"text/plain\">\nThe launch is on Friday.\n</attachment>";

/// The content of the user messages of the provider request `index`.
fn user_contents(fake: &crate::support::Fake, index: usize) -> Vec<String> {
    fake.mock.requests()[index].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn attached_resources_reach_the_model_are_stored_and_sent_again_later() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock
        .push([Reply::text("Friday."), Reply::text("Still Friday.")]);
    let mut socket = connect(&app).await;
    let attachments = json!([
        {"uri": "test://notes/readme"},
        {"uri": "test://notes/logo", "server": "test"}
    ]);
    send(
        &mut socket,
        chat(
            "a",
            "When is the launch?",
            json!({"attachments": attachments}),
        ),
    )
    .await;
    let frames = turn_frames(&mut socket, "a").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();

    let sent = user_contents(&fake, 0);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with(&format!("When is the launch?\n\n{README}\n\n")),
        "{sent:?}"
    );
    assert!(
        sent[0].contains(
            "<attachment uri=\"test://notes/logo\" server=\"test\" mime_type=\"image/png\" bytes="
        ) && sent[0].ends_with("[binary contents, not shown]</attachment>"),
        "{sent:?}"
    );

    // The history shows what was attached, as read.
    send(
        &mut socket,
        json!({"action": "get_history", "request_id": "h",
               "payload": {"conversation_id": conversation}}),
    )
    .await;
    let history = next_frame(&mut socket).await;
    let user = &history["chunk"]["metadata"]["messages"][0];
    assert_eq!(user["content"], "When is the launch?", "{history}");
    let stored = &user["attachments"];
    assert_eq!(stored[0]["uri"], "test://notes/readme", "{history}");
    assert_eq!(stored[0]["server"], "test");
    assert_eq!(stored[0]["text"], "The launch is on Friday.");
    assert_eq!(stored[0]["bytes"], 24);
    assert_eq!(stored[1]["mime_type"], "image/png");
    assert_eq!(stored[1]["text"], Value::Null);
    assert!(
        stored[1]["bytes"].as_u64().is_some_and(|n| n > 0),
        "{history}"
    );
    assert_eq!(
        history["chunk"]["metadata"]["messages"][1]["attachments"],
        Value::Null
    );

    // A later turn of the conversation sends the attachment again, with its message.
    send(
        &mut socket,
        chat("b", "And again?", json!({"conversation_id": conversation})),
    )
    .await;
    let frames = turn_frames(&mut socket, "b").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let resent = user_contents(&fake, 1);
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0], sent[0]);
    assert_eq!(resent[1], "And again?");
    app.shutdown().await;
}

#[tokio::test]
async fn an_attachment_that_cannot_be_read_refuses_the_message_and_stores_nothing() {
    let (app, fake) = tool_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let refused = |frames: &[Value]| frames.last().expect("end")["chunk"].clone();

    // No ready server lists it.
    let payload = json!({"attachments": [{"uri": "test://nope"}], "conversation_id": "att-1"});
    send(&mut socket, chat("a", "look", payload)).await;
    let chunk = refused(&turn_frames(&mut socket, "a").await);
    assert_eq!(chunk["code"], "not_found", "{chunk}");
    let error = chunk["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the attachment `test://nope` cannot be read"),
        "{chunk}"
    );

    // The named server refuses it; a server that does not exist.
    let payload = json!({"attachments": [{"uri": "test://nope", "server": "test"}]});
    send(&mut socket, chat("b", "look", payload)).await;
    let chunk = refused(&turn_frames(&mut socket, "b").await);
    assert_eq!(chunk["code"], "invalid_request", "{chunk}");
    let payload = json!({"attachments": [{"uri": "test://notes/readme", "server": "ghost"}]});
    send(&mut socket, chat("c", "look", payload)).await;
    let chunk = refused(&turn_frames(&mut socket, "c").await);
    assert_eq!(chunk["code"], "not_found", "{chunk}");

    // Malformed lists are refused before anything is read.
    for (id, attachments) in [
        ("d", json!("test://notes/readme")),
        ("e", json!([{"url": "test://notes/readme"}])),
        ("f", json!([{"uri": ""}])),
        ("g", json!([{"uri": "x://1"}, {"uri": "x://1"}])),
        (
            "h",
            Value::Array((0..9).map(|i| json!({"uri": format!("x://{i}")})).collect()),
        ),
    ] {
        send(
            &mut socket,
            chat(id, "look", json!({"attachments": attachments})),
        )
        .await;
        let chunk = refused(&turn_frames(&mut socket, id).await);
        assert_eq!(chunk["code"], "invalid_request", "{id}: {chunk}");
    }

    // Nothing was stored and no provider was asked; the socket still works.
    assert!(fake.mock.requests().is_empty());
    let status = app
        .client
        .get(app.url("/api/conversations/att-1"))
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 404);
    fake.mock.push([Reply::text("fine")]);
    send(&mut socket, chat("z", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "z").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    app.shutdown().await;
}
