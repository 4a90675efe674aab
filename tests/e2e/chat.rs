//! `/ws/chat` end to end: a real server on port 0, the scripted fake provider, a WebSocket
//! client that speaks only the documented protocol.

use std::time::Duration;

use futures::SinkExt;
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    Fake, Socket, TestApp, chat, chat_app, connect, eventually, get_json, message_contents,
    next_frame, send, text_of, turn_frames,
};

#[tokio::test]
async fn a_streamed_turn_is_stored_and_completed() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([Reply::words(4)]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(frames[0]["status"], "processing");
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string();
    assert_eq!(text_of(&frames), "w0 w1 w2 w3 ");
    let complete = frames.last().expect("complete");
    assert_eq!(complete["status"], "complete", "{complete}");
    assert_eq!(
        complete["chunk"]["metadata"]["conversation_id"],
        conversation.as_str()
    );
    assert_eq!(
        complete["chunk"]["metadata"]["usage"]["completion_tokens"],
        4
    );
    let history = app.history(&conversation).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0]["role"].as_str(), history[0]["content"].as_str()),
        (Some("user"), Some("hello"))
    );
    assert_eq!(
        (history[1]["role"].as_str(), history[1]["content"].as_str()),
        (Some("assistant"), Some("w0 w1 w2 w3 "))
    );
    assert_eq!(history[1]["status"], "complete");
    assert_eq!(history[1]["usage"]["completion_tokens"], 4);
    assert_eq!(
        complete["chunk"]["metadata"]["message_ids"]["assistant"],
        history[1]["id"]
    );
    let sent = &fake.mock.requests()[0].body;
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "hello");
    drop(socket);
    app.shutdown().await;
}

/// A socket whose first turn ("first question", answered "first answer") started a
/// conversation, and that conversation's id; the fake answers the next turn "second answer".
async fn first_question_answered(app: &TestApp, fake: &Fake) -> (Socket, Value) {
    fake.mock
        .push([Reply::text("first answer"), Reply::text("second answer")]);
    let mut socket = connect(app).await;
    send(&mut socket, chat("a", "first question", json!({}))).await;
    let frames = turn_frames(&mut socket, "a").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();
    (socket, conversation)
}

/// The contents of the messages the provider's request number `index` carried, after the
/// system prompt.
fn contents_sent(fake: &Fake, index: usize) -> Vec<String> {
    message_contents(&fake.mock.requests()[index].body)[1..].to_vec()
}

#[tokio::test]
async fn a_resumed_conversation_sends_its_history_and_an_unknown_one_is_not_found() {
    let (app, fake) = chat_app(|_| {}).await;
    let (mut socket, conversation) = first_question_answered(&app, &fake).await;
    send(
        &mut socket,
        chat(
            "b",
            "second question",
            json!({"conversation_id": conversation}),
        ),
    )
    .await;
    assert_eq!(
        turn_frames(&mut socket, "b").await.last().expect("end")["status"],
        "complete"
    );
    assert_eq!(
        contents_sent(&fake, 1),
        ["first question", "first answer", "second question"]
    );
    send(
        &mut socket,
        chat(
            "c",
            "hi",
            json!({"conversation_id": "no-such-conversation"}),
        ),
    )
    .await;
    let error = turn_frames(&mut socket, "c").await.pop().expect("error");
    assert_eq!(error["chunk"]["code"], "not_found");
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn a_quiet_server_empties_its_history_cache_and_the_next_turn_has_the_whole_history() {
    let (app, fake) = chat_app(|config| {
        config.database.sqlite_mut().release_memory_when_quiet = Duration::from_millis(200);
    })
    .await;
    let (mut socket, conversation) = first_question_answered(&app, &fake).await;
    let entries = || async { app.health().await.1["cache_stats"]["history"]["entries"].as_u64() };
    eventually("the history cache released", || async {
        (entries().await == Some(0)).then_some(())
    })
    .await;
    let follow_up = json!({"conversation_id": conversation});
    send(&mut socket, chat("b", "second question", follow_up)).await;
    let end = turn_frames(&mut socket, "b").await.pop().expect("end");
    assert_eq!(end["status"], "complete", "{end}");
    assert_eq!(
        contents_sent(&fake, 1),
        ["first question", "first answer", "second question"]
    );
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn non_streaming_mode_sends_one_chunk() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([Reply::text("all at once")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "hi", json!({"streaming": false}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let chunks: Vec<&Value> = frames.iter().filter(|f| f["status"] == "chunk").collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["chunk"]["data"], "all at once");
    assert_eq!(fake.mock.requests()[0].body["stream"], false);
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_bad_frames_then_a_good_turn_on_the_same_socket() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([Reply::words(2)]);
    let mut socket = connect(&app).await;
    let bad = [
        ("{not json", "invalid_request"),
        ("[1, 2, 3]", "invalid_request"),
        (r#"{"request_id": "x"}"#, "invalid_request"),
        (
            r#"{"action": "dance", "request_id": "x"}"#,
            "unknown_action",
        ),
        (r#"{"action": 42}"#, "invalid_request"),
        (
            r#"{"action": "chat", "payload": {"text": "no id"}}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "chat", "request_id": "x", "payload": {"text": ""}}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "chat", "request_id": "x", "payload": {"text": 7}}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "chat", "request_id": "x"}"#,
            "invalid_request",
        ),
        (
            r#"{"action": "cancel", "request_id": "nothing-in-flight"}"#,
            "not_found",
        ),
    ];
    for round in 0..5 {
        for (frame, code) in bad {
            socket
                .send(Message::Text(frame.into()))
                .await
                .expect("send");
            let answer = next_frame(&mut socket).await;
            assert_eq!(
                answer["status"], "error",
                "round {round}: {frame} -> {answer}"
            );
            assert_eq!(answer["chunk"]["code"], code, "{frame}");
            assert!(
                answer["chunk"]["error"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }
    send(&mut socket, chat("good", "hi", json!({}))).await;
    let frames = turn_frames(&mut socket, "good").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let health = get_json(&app.client, &app.url("/health")).await;
    assert_eq!(health["websocket_stats"]["refused_frames"], 50);
    assert_eq!(health["websocket_stats"]["turns"]["completed"], 1);
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_the_socket_lives_on() {
    let (app, fake) = chat_app(|config| config.chat.websocket.max_message_size = 2048).await;
    fake.mock.push([Reply::words(1)]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("big", &"x".repeat(5000), json!({}))).await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused["chunk"]["code"], "too_large");
    send(&mut socket, json!({"action": "ping", "request_id": "p"})).await;
    assert_eq!(next_frame(&mut socket).await["status"], "pong");
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn cancel_mid_stream_stores_the_partial_answer() {
    let (app, fake) = chat_app(|_| {}).await;
    let slow = Reply::Text {
        pieces: (0..100).map(|i| format!("p{i} ")).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(20),
    };
    fake.mock.push([slow]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("long", "tell me everything", json!({}))).await;
    let processing = next_frame(&mut socket).await;
    let conversation = processing["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(next_frame(&mut socket).await["status"], "chunk");
    send(
        &mut socket,
        json!({"action": "cancel", "request_id": "long"}),
    )
    .await;
    let frames = turn_frames(&mut socket, "long").await;
    let end = frames.last().expect("end");
    assert_eq!(end["chunk"]["code"], "cancelled", "{end}");
    let history = app.history(&conversation).await;
    let answer = &history[1];
    assert_eq!(answer["status"], "cancelled");
    let partial = answer["content"].as_str().expect("content");
    assert!(
        partial.starts_with("p0 ") && partial.len() < 400,
        "partial answer: {partial}"
    );
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_turn_that_has_finished_says_not_found() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    send(&mut socket, chat("done", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "done").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    send(
        &mut socket,
        json!({"action": "cancel", "request_id": "done"}),
    )
    .await;
    let answer = next_frame(&mut socket).await;
    assert_eq!(answer["request_id"], "done", "{answer}");
    assert_eq!(answer["chunk"]["code"], "not_found", "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_leaves_a_turn_that_stores_its_whole_answer() {
    let (app, fake) = chat_app(|_| {}).await;
    let slow = Reply::Text {
        pieces: (0..100).map(|i| format!("p{i} ")).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(20),
    };
    fake.mock.push([slow]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("gone", "hi", json!({}))).await;
    let conversation = next_frame(&mut socket).await["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(next_frame(&mut socket).await["status"], "chunk");
    drop(socket);
    let stored = eventually("the answer stored", || async {
        let stored = app.history(&conversation).await;
        (stored.len() == 2).then_some(stored)
    })
    .await;
    // The turn went on without its socket (chat.service.on_disconnect: detach).
    assert_eq!(stored[1]["status"], "complete");
    let whole = (0..100)
        .map(|i| format!("p{i} "))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(stored[1]["content"], whole);
    let health = get_json(&app.client, &app.url("/health")).await;
    assert_eq!(health["websocket_stats"]["turns"]["completed"], 1);
    assert_eq!(health["websocket_stats"]["turns"]["cancelled"], 0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_provider_failure_ends_the_turn_not_the_socket() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::ErrorMidStream { pieces_before: 1 },
        Reply::Status {
            status: 429,
            retry_after: None,
            body: String::new(),
        },
        Reply::words(2),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("broken", "hi", json!({}))).await;
    let error = turn_frames(&mut socket, "broken").await.pop().expect("end");
    assert_eq!(
        (
            error["chunk"]["code"].as_str(),
            error["chunk"]["retryable"].as_bool()
        ),
        (Some("provider_error"), Some(true))
    );
    // The next turn meets a 429 that the provider layer retries transparently.
    send(&mut socket, chat("retried", "hi", json!({}))).await;
    let frames = turn_frames(&mut socket, "retried").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    assert_eq!(text_of(&frames), "w0 w1 ");
    drop(socket);
    app.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_the_upgrade_is_refused_with_503_while_others_chat() {
    let (app, fake) = chat_app(|config| config.chat.websocket.max_connections = 2).await;
    fake.mock.push([Reply::words(2), Reply::words(2)]);
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws/chat", app.addr))
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal: {refused}")
    };
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    for (socket, id) in [(&mut first, "one"), (&mut second, "two")] {
        send(socket, chat(id, "hi", json!({}))).await;
        assert_eq!(
            turn_frames(socket, id).await.last().expect("end")["status"],
            "complete"
        );
    }
    let health = get_json(&app.client, &app.url("/health")).await;
    assert_eq!(health["websocket_stats"]["rejected"], 1);
    assert_eq!(health["websocket_stats"]["active"], 2);
    drop((first, second));
    app.shutdown().await;
}

#[tokio::test]
async fn a_browser_upgrade_from_a_foreign_origin_is_refused() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws/chat",
            app.addr
        ))
        .expect("request");
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().expect("header"));
    let refused = tokio_tungstenite::connect_async(request)
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal: {refused}")
    };
    assert_eq!(response.status().as_u16(), 403);
    app.shutdown().await;
}
