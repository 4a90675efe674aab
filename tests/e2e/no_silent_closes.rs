//! A socket is never closed by a frame too large for it, and a slow reader costs only itself:
//! pages are bounded in bytes (ending early with a cursor), a message too large for one frame
//! is sent cut with `truncated: true`, and a client that reads one frame now and then is
//! closed (1008) without holding provider slots from others.

use std::time::Duration;

use futures::StreamExt;
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{
    Socket, chat, chat_app, close_code, connect, connect_with_small_buffer, eventually, next_frame,
    send, turn_frames,
};

async fn get_history(socket: &mut Socket, id: &str, cursor: Option<&str>) -> Value {
    let mut payload = json!({"conversation_id": id, "limit": 200});
    if let Some(cursor) = cursor {
        payload["cursor"] = json!(cursor);
    }
    send(
        socket,
        json!({"action": "get_history", "request_id": "h", "payload": payload}),
    )
    .await;
    let frame = next_frame(socket).await;
    assert_eq!(frame["status"], "complete", "{frame}");
    frame["chunk"]["metadata"].clone()
}

#[tokio::test]
async fn history_pages_are_bounded_in_bytes_and_a_huge_message_comes_cut_never_a_close() {
    let (app, _fake) = chat_app(|_| {}).await;
    let id = app.create_conversation().await;
    // 50 messages of 30 KB (1.5 MB in all, more than one frame), then one of 1.5 MB.
    for i in 0..50 {
        let text = format!("{i:02}:{}", "m".repeat(30_000));
        assert_eq!(app.append(&id, &text).await.0, 201);
    }
    let huge = "h".repeat(1_500_000);
    assert_eq!(app.append(&id, &huge).await.0, 201);

    let mut socket = connect(&app).await;
    let mut pages = 0;
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = get_history(&mut socket, &id, cursor.as_deref()).await;
        pages += 1;
        let mut messages = page["messages"].as_array().expect("messages").clone();
        messages.extend(seen);
        seen = messages;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    assert!(pages >= 2, "1.5 MB of history came in one frame");
    assert_eq!(seen.len(), 51, "every message, once");
    for (i, message) in seen[..50].iter().enumerate() {
        let content = message["content"].as_str().expect("content");
        assert!(content.starts_with(&format!("{i:02}:")), "order");
        assert_eq!(content.len(), 30_003);
        assert!(message.get("truncated").is_none());
    }
    let last = &seen[50];
    assert_eq!(last["truncated"], true, "the huge message says it was cut");
    let cut = last["content"].as_str().expect("content").len();
    assert!(cut < huge.len() && cut > 100_000, "{cut}");
    // REST still has it whole, and the socket lives on.
    let whole = app.history(&id).await;
    assert_eq!(
        whole[50]["content"].as_str().map(str::len),
        Some(huge.len())
    );
    send(&mut socket, json!({"action": "ping", "request_id": "p"})).await;
    assert_eq!(next_frame(&mut socket).await["status"], "pong");
    app.shutdown().await;
}

#[tokio::test]
async fn a_streamed_chunk_larger_than_a_frame_arrives_split_and_whole() {
    let (app, fake) = chat_app(|_| {}).await;
    // Two provider deltas of 900 KB, sent as one 1.8 MB text frame when not streaming.
    let piece = "z".repeat(900_000);
    fake.mock.push([Reply::Text {
        pieces: vec![piece.clone(), piece.clone()],
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::ZERO,
    }]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("big", "say a lot", json!({"streaming": false})),
    )
    .await;
    let frames = turn_frames(&mut socket, "big").await;
    let last = frames.last().expect("frames");
    assert_eq!(last["status"], "complete", "{last}");
    let text: String = frames
        .iter()
        .filter(|f| f["status"] == "chunk")
        .map(|f| f["chunk"]["data"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text.len(), 1_800_000, "the whole answer, split over frames");
    assert!(frames.iter().filter(|f| f["status"] == "chunk").count() >= 2);
    app.shutdown().await;
}

/// Slow readers (the figure is ten; three keep a debug build's test quick, and the
/// provider has exactly as many slots).
const SLOW: u32 = 3;

#[tokio::test]
async fn sockets_reading_a_frame_now_and_then_cost_only_themselves() {
    let (app, fake) = chat_app(|config| {
        let ws = &mut config.chat.websocket;
        ws.send_queue = 16;
        ws.slow_reader_timeout = Duration::from_secs(1);
        let provider = config.llm.providers.get_mut("mock").expect("mock");
        // As many provider slots as slow readers: if they held them, nobody else would get one.
        provider.http_client.concurrent_requests = SLOW;
        provider.http_client.pool_timeout = Duration::from_secs(10);
    })
    .await;
    // Long answers (1.6 MB each: more than the kernel buffers for a client that does not
    // read, under 600 KB with server.http.socket_send_buffer's default and the clients' small
    // receive buffers). What they do not read waits on the server.
    let long = Reply::Text {
        pieces: (0..400)
            .map(|i| format!("{i:04} {}", "lorem ipsum dolor sit amet ".repeat(150)))
            .collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(1),
    };
    fake.mock.push(std::iter::repeat_n(long, SLOW as usize));
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let mut socket = connect_with_small_buffer(&app).await;
        send(&mut socket, chat(&format!("slow{i}"), "tell me", json!({}))).await;
        slow.push(tokio::spawn(async move {
            // One frame every 0.9 s (under the slow-reader timeout each time) for 7 s, then
            // read what is left quickly, to the end.
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                let _ = socket.next().await;
            }
            close_code(&mut socket).await
        }));
    }
    // Every slow turn has its long answer coming before anyone else asks.
    eventually("every slow turn asking the provider", || async {
        (fake.mock.requests().len() >= SLOW as usize).then_some(())
    })
    .await;
    assert_eq!(fake.mock.requests().len(), SLOW as usize);
    // Another user's turn meanwhile gets a slot (the slow readers' turns do not keep theirs)
    // and completes.
    let mut other = connect(&app).await;
    send(&mut other, chat("other", "hello", json!({}))).await;
    let frames = turn_frames(&mut other, "other").await;
    assert_eq!(frames.last().expect("frames")["status"], "complete");
    // The slow readers are closed as such, with the code that says so.
    for reader in slow {
        let code = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("closed within a minute")
            .expect("reader task");
        // The close frame, if the unread bytes left room for it within its grace second.
        assert!(matches!(code, None | Some(CloseCode::Policy)), "{code:?}");
    }
    let health = app.health().await.1;
    assert_eq!(
        health["websocket_stats"]["closed_by_reason"]["slow_reader"],
        SLOW
    );
    let provider = &health["llm_client_stats"]["mock"];
    assert_eq!(provider["circuit"], "closed", "{provider}");
    // The other user's socket lives on.
    send(&mut other, json!({"action": "ping", "request_id": "p"})).await;
    assert_eq!(next_frame(&mut other).await["status"], "pong");
    assert_eq!(close_code_if_closed(&mut other).await, None);
    app.shutdown().await;
}

/// `None` if the socket is still open (nothing more arrives within 100 ms).
async fn close_code_if_closed(socket: &mut Socket) -> Option<CloseCode> {
    match tokio::time::timeout(Duration::from_millis(100), close_code(socket)).await {
        Ok(code) => code.or(Some(CloseCode::Abnormal)),
        Err(_) => None,
    }
}
