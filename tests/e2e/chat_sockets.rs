//! The life of a socket: a reader too slow is closed (1008) with bounded memory, a silent
//! peer is closed by the keepalive (1011), a frame over the hard size limit closes with 1009,
//! shutdown lets turns finish then closes with 1001.

use std::time::Duration;

use crate::support::{
    chat, chat_app, close_code, connect, connect_with_small_buffer, next_frame, send, text_of,
    turn_frames,
};
use mcp_platform::mock_provider::Reply;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn wait_for(app: &crate::support::TestApp, what: impl Fn(&serde_json::Value) -> bool) {
    crate::support::eventually("the expected figures in /health", || async {
        what(&app.health().await.1).then_some(())
    })
    .await;
}

const PIECES: usize = 300;

#[tokio::test]
async fn a_reader_too_slow_is_closed_and_its_turn_goes_on_without_it() {
    let (app, fake) = chat_app(|config| {
        config.chat.websocket.send_queue = 8;
        config.chat.websocket.send_buffer = 256 << 10;
        config.chat.websocket.slow_reader_timeout = Duration::from_millis(300);
    })
    .await;
    // 2.4 MB of answer, far more than the socket buffers hold (the client's is kept small:
    // the kernel would otherwise let it grow to tcp_rmem's maximum, 32 MB here).
    // Text like text (a tokenizer's worst case, one character repeated, would only slow the
    // count of the stored answer).
    let pieces: Vec<String> = (0..PIECES)
        .map(|i| format!("{i:05} {}", "lorem ipsum dolor sit amet ".repeat(300)))
        .collect();
    let total: usize = pieces.iter().map(String::len).sum();
    fake.mock.push([Reply::Text {
        pieces,
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::ZERO,
    }]);
    let mut socket = connect_with_small_buffer(&app).await;
    send(&mut socket, chat("flood", "tell me everything", json!({}))).await;
    // The client never reads until the server has given up on it.
    wait_for(&app, |h| {
        h["websocket_stats"]["closed_by_reason"]["slow_reader"] == 1
    })
    .await;
    // The turn is not cancelled: it goes on without the socket (its frames kept in a bounded
    // buffer for an `attach`) and stores the whole answer.
    wait_for(&app, |h| h["websocket_stats"]["turns"]["completed"] == 1).await;
    let health = app.health().await.1;
    assert_eq!(health["websocket_stats"]["active"], 0);
    assert_eq!(health["websocket_stats"]["turns"]["cancelled"], 0);
    let conversations = crate::support::get_json(&app.client, &app.url("/api/conversations")).await;
    let id = conversations["items"][0]["id"]
        .as_str()
        .expect("conversation")
        .to_string();
    let history = app.history(&id).await;
    let answer = &history[1];
    assert_eq!(answer["status"], "complete");
    let stored = answer["content"].as_str().expect("content").len();
    assert_eq!(stored, total);
    // The client sees what the kernel buffered, then the end (a close frame if it fit).
    let code = close_code(&mut socket).await;
    assert!(matches!(code, None | Some(CloseCode::Policy)), "{code:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed_and_one_that_does_stays() {
    let (app, _fake) = chat_app(|config| {
        config.chat.websocket.ping_interval = Duration::from_millis(100);
        config.chat.websocket.ping_timeout = Duration::from_millis(200);
    })
    .await;
    // tokio-tungstenite answers pings while it reads: this one reads, the other does not.
    let mut lively = connect(&app).await;
    let mut silent = connect(&app).await;
    let reading = tokio::spawn(async move {
        for i in 0..10 {
            send(
                &mut lively,
                json!({"action": "ping", "request_id": format!("p{i}")}),
            )
            .await;
            assert_eq!(next_frame(&mut lively).await["status"], "pong");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lively
    });
    wait_for(&app, |h| {
        h["websocket_stats"]["closed_by_reason"]["ping_timeout"] == 1
    })
    .await;
    assert_eq!(close_code(&mut silent).await, Some(CloseCode::Error));
    let mut lively = reading
        .await
        .expect("the lively client stayed connected for 1 s");
    send(&mut lively, json!({"action": "ping", "request_id": "last"})).await;
    assert_eq!(next_frame(&mut lively).await["status"], "pong");
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_a_turn_finish_then_closes_with_1001() {
    let (mut app, fake) = chat_app(|_| {}).await;
    fake.mock.push([Reply::Text {
        pieces: vec!["still ".into(); 5],
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(100),
    }]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("long", "talk", json!({}))).await;
    assert_eq!(next_frame(&mut socket).await["status"], "processing");
    app.signal_stop();
    let frames = turn_frames(&mut socket, "long").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    assert_eq!(
        text_of(&frames),
        "still ".repeat(5).trim_start_matches("").to_string()
    );
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Away));
    app.shutdown().await;
}

#[tokio::test]
async fn at_the_shutdown_deadline_a_turn_is_cancelled_and_its_part_stored() {
    let (mut app, fake) = chat_app(|config| {
        config.server.shutdown_timeout = Duration::from_millis(300);
    })
    .await;
    fake.mock.push([Reply::Text {
        pieces: vec!["slow ".into(); 100],
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(50),
    }]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("endless", "talk", json!({}))).await;
    let processing = next_frame(&mut socket).await;
    let conversation = processing["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(next_frame(&mut socket).await["status"], "chunk");
    app.signal_stop();
    let frames = turn_frames(&mut socket, "endless").await;
    assert_eq!(frames.last().expect("end")["chunk"]["code"], "cancelled");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Away));
    let dir = app.shutdown().await;
    // Reopen the database the server left: the partial answer is there, marked cancelled.
    let db = rusqlite::Connection::open(dir.path().join("data/chat.db")).expect("open");
    let (status, content): (String, String) = db
        .query_row(
            "SELECT status, content FROM messages WHERE conversation_id = ?1 AND role = 'assistant'",
            [conversation],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the partial answer is stored");
    assert_eq!(status, "cancelled");
    assert!(
        content.starts_with("slow ") && content.len() < 500,
        "{content}"
    );
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_is_not_read_and_closes_with_1009() {
    let (app, _fake) = chat_app(|config| config.chat.websocket.max_message_size = 2048).await;
    let mut socket = connect(&app).await;
    // Over 4x the limit and over 1 MiB: tungstenite stops at the header, nothing is buffered.
    let huge = chat("huge", &"x".repeat(2 << 20), json!({}));
    send(&mut socket, huge).await;
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
    wait_for(&app, |h| {
        h["websocket_stats"]["closed_by_reason"]["too_large"] == 1
    })
    .await;
    app.shutdown().await;
}
