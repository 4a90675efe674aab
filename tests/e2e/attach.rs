//! Turns outlive their socket: a closed socket's turn goes on and stores its whole answer;
//! `attach` from another socket sends the frames after the `seq` it names (no gap, no
//! duplicate), then the live ones; several sockets follow one turn; the same request sent
//! again while in flight follows it; a turn without a socket ends after
//! `detached_turn_timeout`; a turn long over is replayed from what was stored.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Socket, chat, chat_app, connect, eventually, next_frame, send, text_of, turn_frames,
};

fn slow(pieces: usize, delay_ms: u64) -> Reply {
    Reply::Text {
        pieces: (0..pieces).map(|i| format!("p{i} ")).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(delay_ms),
    }
}

fn whole(pieces: usize) -> String {
    (0..pieces)
        .map(|i| format!("p{i} "))
        .collect::<Vec<_>>()
        .concat()
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

fn attach(request_id: &str, conversation: &Value, after_seq: u64) -> Value {
    json!({"action": "attach", "request_id": request_id,
           "payload": {"conversation_id": conversation, "after_seq": after_seq}})
}

/// Frames of `request_id` until `n` text chunks have come.
async fn until_chunks(socket: &mut Socket, request_id: &str, n: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    while frames
        .iter()
        .filter(|f: &&Value| f["status"] == "chunk")
        .count()
        < n
    {
        let frame = next_frame(socket).await;
        if frame["request_id"] == request_id {
            frames.push(frame);
        }
    }
    frames
}

async fn stored_answer(app: &crate::support::TestApp, conversation: &Value) -> Value {
    let id = conversation.as_str().expect("id");
    eventually("the answer stored", || async {
        let history = app.history(id).await;
        (history.len() == 2).then(|| history[1].clone())
    })
    .await
}

#[tokio::test]
async fn a_closed_socket_s_turn_goes_on_and_attach_sends_the_rest_without_gap_or_duplicate() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([slow(20, 25)]);
    let mut first = connect(&app).await;
    send(&mut first, chat("r", "tell me", json!({}))).await;
    let seen = until_chunks(&mut first, "r", 3).await;
    let conversation = seen[0]["chunk"]["metadata"]["conversation_id"].clone();
    let last = *seqs(&seen).last().expect("a seq");
    drop(first);
    // The server notices the closed socket on its own time; the answer takes 500 ms more.
    crate::support::eventually("the turn is detached", || async {
        (app.health().await.1["websocket_stats"]["detached_turns"] == 1).then_some(())
    })
    .await;

    let mut second = connect(&app).await;
    send(&mut second, attach("r", &conversation, last)).await;
    let rest = turn_frames(&mut second, "r").await;
    assert_eq!(rest.last().expect("end")["status"], "complete", "{rest:?}");
    let rest_seqs = seqs(&rest);
    assert_eq!(rest_seqs.len(), rest.len());
    assert_eq!(
        rest_seqs,
        ((last + 1)..=(last + rest.len() as u64)).collect::<Vec<_>>()
    );
    assert_eq!(text_of(&seen) + &text_of(&rest), whole(20));

    let answer = stored_answer(&app, &conversation).await;
    assert_eq!(answer["status"], "complete");
    assert_eq!(answer["content"], whole(20));
    assert_eq!(fake.mock.requests().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn two_sockets_follow_one_turn_and_the_same_request_again_follows_it() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut first = connect(&app).await;
    send(&mut first, chat("start", "hello", json!({}))).await;
    let frames = turn_frames(&mut first, "start").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();

    fake.mock.push([slow(10, 30)]);
    let request = chat("r", "tell me", json!({"conversation_id": conversation}));
    send(&mut first, request.clone()).await;
    // Once the turn is accepted (its question stored), others can find it.
    let accepted = next_frame(&mut first).await;
    assert_eq!(accepted["seq"], 1, "{accepted}");
    let mut second = connect(&app).await;
    send(&mut second, attach("r", &conversation, 0)).await;
    // A third socket sends the same request while it runs: it follows, nothing runs twice.
    let mut third = connect(&app).await;
    send(&mut third, request).await;
    let (rest, b, c) = tokio::join!(
        turn_frames(&mut first, "r"),
        turn_frames(&mut second, "r"),
        turn_frames(&mut third, "r"),
    );
    let a: Vec<Value> = std::iter::once(accepted).chain(rest).collect();
    for frames in [&a, &b, &c] {
        assert_eq!(
            frames.last().expect("end")["status"],
            "complete",
            "{frames:?}"
        );
        assert_eq!(seqs(frames), (1..=frames.len() as u64).collect::<Vec<_>>());
        assert_eq!(text_of(frames), whole(10));
    }
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(fake.mock.requests().len(), 2, "the request ran twice");
    app.shutdown().await;
}

#[tokio::test]
async fn a_turn_without_a_socket_ends_after_the_timeout_and_a_finished_one_is_replayed() {
    let (app, fake) = chat_app(|config| {
        config.chat.service.detached_turn_timeout = Duration::from_millis(600);
    })
    .await;
    fake.mock.push([slow(200, 20)]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("long", "tell me everything", json!({}))).await;
    let seen = until_chunks(&mut socket, "long", 1).await;
    let conversation = seen[0]["chunk"]["metadata"]["conversation_id"].clone();
    drop(socket);
    let answer = stored_answer(&app, &conversation).await;
    assert_eq!(answer["status"], "cancelled", "{answer}");
    let kept = answer["content"].as_str().unwrap_or("").len();
    assert!(kept > 0 && kept < whole(200).len(), "{answer}");

    // A turn that ended long ago: attach replays its stored answer.
    fake.mock.push([Reply::text("Short.")]);
    let mut socket = connect(&app).await;
    let next = json!({"conversation_id": conversation});
    send(&mut socket, chat("short", "and now briefly", next)).await;
    turn_frames(&mut socket, "short").await;
    // Once the server has let the ended turn go (at once or after detached_turn_timeout),
    // an attach replays it from storage; until then it follows the turn's own frames.
    let replayed = eventually("the ended turn replayed from storage", || async {
        let mut other = connect(&app).await;
        send(&mut other, attach("short", &conversation, 0)).await;
        let frames = turn_frames(&mut other, "short").await;
        let end = frames.last().expect("end");
        (end["chunk"]["metadata"]["replayed"] == true).then_some(frames)
    })
    .await;
    assert_eq!(text_of(&replayed), "Short.");
    // Unknown turns, and one that ended without an answer (once the server has let it go),
    // are not found.
    send(&mut socket, attach("nope", &conversation, 0)).await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused["chunk"]["code"], "not_found", "{refused}");
    eventually("the unanswered turn let go, then not found", || async {
        let mut other = connect(&app).await;
        send(&mut other, attach("long", &conversation, 0)).await;
        let first = next_frame(&mut other).await;
        (first["chunk"]["code"] == "not_found").then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn with_on_disconnect_cancel_a_closed_socket_cancels_its_turns() {
    let (app, fake) = chat_app(|config| {
        config.chat.service.on_disconnect = mcp_platform::config::OnDisconnect::Cancel;
    })
    .await;
    fake.mock.push([slow(100, 20)]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("gone", "hi", json!({}))).await;
    let seen = until_chunks(&mut socket, "gone", 1).await;
    let conversation = seen[0]["chunk"]["metadata"]["conversation_id"].clone();
    drop(socket);
    let answer = stored_answer(&app, &conversation).await;
    assert_eq!(answer["status"], "cancelled");
    let health = app.health().await.1;
    assert_eq!(health["websocket_stats"]["turns"]["cancelled"], 1);
    app.shutdown().await;
}
