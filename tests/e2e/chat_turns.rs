//! What a turn sends and when it does not call the provider: the context budget, replay of an
//! answered request, the same request twice at once, resume after a restart, a 429 retried.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{chat, chat_app, connect, next_frame, send, text_of, turn_frames};

/// The `messages` the fake received in its `n`th chat request, as (role, content).
fn sent_messages(fake: &crate::support::Fake, n: usize) -> Vec<(String, String)> {
    let requests = fake.mock.requests();
    let chats: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "chat/completions")
        .collect();
    chats[n].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn chat_requests(fake: &crate::support::Fake) -> usize {
    fake.mock
        .requests()
        .iter()
        .filter(|r| r.endpoint == "chat/completions")
        .count()
}

fn conversation_of(frames: &[Value]) -> String {
    frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string()
}

#[tokio::test]
async fn an_answered_request_is_replayed_from_storage_without_the_provider() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([Reply::text("the answer")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("q1", "question", json!({}))).await;
    let first = turn_frames(&mut socket, "q1").await;
    let conversation = conversation_of(&first);
    assert_eq!(chat_requests(&fake), 1);

    let again = json!({"conversation_id": conversation});
    send(&mut socket, chat("q1", "question", again)).await;
    let replayed = turn_frames(&mut socket, "q1").await;
    let complete = replayed.last().expect("complete");
    assert_eq!(complete["status"], "complete", "{complete}");
    assert_eq!(complete["chunk"]["metadata"]["replayed"], true);
    assert_eq!(text_of(&replayed), "the answer");
    assert_eq!(
        complete["chunk"]["metadata"]["message_ids"],
        first.last().expect("complete")["chunk"]["metadata"]["message_ids"]
    );
    assert_eq!(chat_requests(&fake), 1, "the provider was called again");
    assert_eq!(app.history(&conversation).await.len(), 2);
    let health = app.health().await.1;
    assert_eq!(health["websocket_stats"]["turns"]["replayed"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_request_in_flight_twice_runs_once_and_the_second_follows_it() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        json!({"action": "new_conversation", "request_id": "n"}),
    )
    .await;
    let created = turn_frames(&mut socket, "n").await;
    let conversation = created[0]["chunk"]["metadata"]["conversation_id"].clone();
    fake.mock.push([Reply::Text {
        pieces: vec!["slow ".into(); 4],
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(150),
    }]);
    let payload = json!({"conversation_id": conversation});
    send(&mut socket, chat("same", "hi", payload.clone())).await;
    // Acknowledged: the turn is in flight.
    assert_eq!(next_frame(&mut socket).await["status"], "processing");
    // A second socket (another tab) sends the same request while the first runs: it follows
    // the running turn from its first frame instead of running it again.
    let mut other = connect(&app).await;
    send(&mut other, chat("same", "hi", payload.clone())).await;
    let followed = turn_frames(&mut other, "same").await;
    assert_eq!(followed[0]["seq"], 1, "{followed:?}");
    assert_eq!(followed.last().expect("end")["status"], "complete");
    assert_eq!(text_of(&followed), "slow slow slow slow ");
    let first = turn_frames(&mut socket, "same").await;
    assert_eq!(text_of(&first), "slow slow slow slow ");
    assert_eq!(chat_requests(&fake), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn history_is_trimmed_oldest_first_to_the_token_budget() {
    let (app, fake) = chat_app(|config| {
        let context = &mut config.chat.service.context;
        (context.max_tokens, context.reserve_tokens) = (400, 100);
        config.chat.service.system_prompt = "You are terse.".into();
    })
    .await;
    let mut socket = connect(&app).await;
    let mut conversation = Value::Null;
    // Each question is ~60 tokens: the budget of 300 holds the newest few, not all eight.
    for i in 0..8 {
        fake.mock.push([Reply::text(&format!("answer {i}"))]);
        let text = format!("question {i}: {}", "lorem ipsum ".repeat(30));
        let id = format!("q{i}");
        send(
            &mut socket,
            chat(&id, &text, json!({"conversation_id": conversation})),
        )
        .await;
        let frames = turn_frames(&mut socket, &id).await;
        assert_eq!(
            frames.last().expect("end")["status"],
            "complete",
            "{frames:?}"
        );
        conversation = json!(conversation_of(&frames));
    }
    let last = sent_messages(&fake, 7);
    assert_eq!(last[0], ("system".into(), "You are terse.".into()));
    assert!(last.last().expect("current").1.starts_with("question 7"));
    let questions: Vec<&str> = last
        .iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, content)| &content[..10])
        .collect();
    assert!(questions.len() >= 2 && questions.len() < 8, "{questions:?}");
    // What was kept is the newest, contiguous, and ends with the current message.
    let first_kept: usize = questions[0][9..10].parse().expect("digit");
    let expected: Vec<String> = (first_kept..8).map(|i| format!("question {i}")).collect();
    assert_eq!(
        questions,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );

    app.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_budget_alone_is_refused_and_nothing_is_stored() {
    let (app, fake) = chat_app(|config| {
        let context = &mut config.chat.service.context;
        (context.max_tokens, context.reserve_tokens) = (200, 50);
    })
    .await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("big", &"many words here ".repeat(100), json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "big").await;
    let error = frames.last().expect("error");
    assert_eq!(error["chunk"]["code"], "context_too_large", "{error}");
    assert_eq!(frames.len(), 1, "nothing was acknowledged: {frames:?}");
    assert_eq!(chat_requests(&fake), 0);
    // An unknown provider is refused the same way, before anything is stored.
    let payload = json!({"provider": "nope"});
    send(&mut socket, chat("who", "hi", payload)).await;
    let frames = turn_frames(&mut socket, "who").await;
    assert_eq!(
        frames.last().expect("error")["chunk"]["code"],
        "invalid_request"
    );
    let stored = crate::support::get_json(&app.client, &app.url("/api/conversations")).await;
    assert_eq!(
        stored["items"],
        json!([]),
        "a refused turn created a conversation"
    );
    send(&mut socket, chat("fine", "hi", json!({}))).await;
    let frames = turn_frames(&mut socket, "fine").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    app.shutdown().await;
}

#[tokio::test]
async fn a_conversation_resumes_after_a_restart_with_its_history() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("chat.db");
    let use_path = |path: std::path::PathBuf| {
        move |config: &mut mcp_platform::config::Config| {
            config.database.use_sqlite_file(path);
        }
    };
    let (app, fake) = chat_app(use_path(path.clone())).await;
    fake.mock.push([Reply::text("Nice to meet you, Ada.")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "My name is Ada.", json!({}))).await;
    let conversation = conversation_of(&turn_frames(&mut socket, "r1").await);
    drop(socket);
    app.shutdown().await;

    let (app, fake) = chat_app(use_path(path)).await;
    fake.mock.push([Reply::text("Ada.")]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat(
            "r2",
            "What is my name?",
            json!({"conversation_id": conversation}),
        ),
    )
    .await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    let sent = sent_messages(&fake, 0);
    let contents: Vec<&str> = sent.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        contents.ends_with(&[
            "My name is Ada.",
            "Nice to meet you, Ada.",
            "What is my name?"
        ]),
        "{sent:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_429_from_the_provider_is_retried_without_the_client_seeing_it() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::Status {
            status: 429,
            retry_after: Some("0".into()),
            body: String::new(),
        },
        Reply::words(3),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "hi", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    assert!(frames.iter().all(|f| f["status"] != "error"), "{frames:?}");
    assert_eq!(text_of(&frames), "w0 w1 w2 ");
    assert_eq!(chat_requests(&fake), 2);
    let health = app.health().await.1;
    assert_eq!(health["llm_client_stats"]["mock"]["retries"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn every_frame_of_a_turn_carries_its_place_and_other_frames_none() {
    let (app, fake) = crate::support::tool_app(|_| {}).await;
    fake.mock.push([
        crate::support::calls(&[("c1", "add", json!({"a": 1, "b": 2}))]),
        Reply::words(4),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "add", json!({}))).await;
    let frames = turn_frames(&mut socket, "r").await;
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), frames.len(), "a frame without seq: {frames:?}");
    assert_eq!(seqs, (1..=frames.len() as u64).collect::<Vec<_>>());
    assert!(frames.len() >= 8, "{frames:?}");
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();

    // A replay is numbered from 1 too; a pong or an action's answer has no seq.
    send(
        &mut socket,
        chat("r", "add", json!({"conversation_id": conversation})),
    )
    .await;
    let replayed = turn_frames(&mut socket, "r").await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, [1, 2, 3], "{replayed:?}");
    send(&mut socket, json!({"action": "ping", "request_id": "p"})).await;
    let pong = next_frame(&mut socket).await;
    assert_eq!(pong["status"], "pong");
    assert!(pong.get("seq").is_none(), "{pong}");
    app.shutdown().await;
}
