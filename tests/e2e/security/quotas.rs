//! One admission gate holds every door and path that calls a model: a compaction is a turn, a
//! cancelled answer costs what it received.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    TestApp, chat, chat_app, connect_with_key, create_key, next_frame, send, turn_frames,
};

async fn key_usage(app: &TestApp, admin: &str, name: &str) -> Value {
    let health = app.health_as(admin).await;
    health["auth"]["keys"][name].clone()
}

#[tokio::test]
async fn a_compaction_is_admitted_like_a_turn() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(
        &app,
        Some(&admin),
        json!({"name": "limited", "turns_per_minute": 2}),
    )
    .await;
    let mut socket = connect_with_key(&app, Some(&key)).await.expect("socket");
    send(&mut socket, chat("t1", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "t1").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();
    fake.mock.push([Reply::text("A summary.")]);
    let compact = |id: &str| {
        json!({"action": "compact", "request_id": id,
               "payload": {"conversation_id": conversation}})
    };
    send(&mut socket, compact("c1")).await;
    let answer = next_frame(&mut socket).await;
    assert_eq!(answer["status"], "complete", "{answer}");
    // Two of two this minute: the next compaction is refused before the model is asked.
    send(&mut socket, compact("c2")).await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused["chunk"]["code"], "quota_exceeded", "{refused}");
    assert_eq!(fake.mock.requests().len(), 2);
    assert_eq!(key_usage(&app, &admin, "limited").await["turns_today"], 2);
    app.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_answer_costs_the_tokens_it_received() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(
        &app,
        Some(&admin),
        json!({"name": "frugal", "tokens_per_day": 1000}),
    )
    .await;
    // Twenty chunks, usage only after the last: a cancel never gets to it.
    fake.mock.push([Reply::Text {
        pieces: (0..20).map(|i| format!("word{i} ")).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(50),
    }]);
    let mut socket = connect_with_key(&app, Some(&key)).await.expect("socket");
    send(&mut socket, chat("r1", "talk", json!({}))).await;
    let mut chunks = 0;
    while chunks < 5 {
        if next_frame(&mut socket).await["status"] == "chunk" {
            chunks += 1;
        }
    }
    send(&mut socket, json!({"action": "cancel", "request_id": "r1"})).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["code"],
        "cancelled",
        "{frames:?}"
    );
    let usage = key_usage(&app, &admin, "frugal").await;
    let spent = usage["tokens_today"].as_u64().expect("tokens_today");
    assert!(spent >= 5, "the prompt and five words at least: {usage}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_providers_embeddings_are_paid_from_the_keys_tokens_and_refused_when_none_are_left() {
    let embed = crate::support::fake().await;
    let embed_url = embed.base_url.clone();
    let (app, _fake) = chat_app(move |config| {
        let mut provider = crate::support::entry(&embed_url);
        provider.api_key_env = None;
        provider.embedding_model = Some("mock-embedding".into());
        config.llm.providers.insert("embed".into(), provider);
        config.memory.embedder = "embed".into();
        config.memory.dimensions = Some(8);
    })
    .await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(
        &app,
        Some(&admin),
        json!({"name": "searcher", "tokens_per_day": 20}),
    )
    .await;
    let mut socket = connect_with_key(&app, Some(&key)).await.expect("socket");
    let mut refused = None;
    for n in 0..10 {
        let query = format!("where did I put the keys to the shed number {n}");
        let id = format!("s{n}");
        send(
            &mut socket,
            json!({"action": "search", "request_id": id, "payload": {"query": query}}),
        )
        .await;
        let answer = next_frame(&mut socket).await;
        if answer["status"] == "error" {
            refused = Some((n, answer));
            break;
        }
        assert_eq!(answer["status"], "complete", "{answer}");
    }
    let (n, answer) = refused.expect("the key's tokens run out");
    assert_eq!(answer["chunk"]["code"], "quota_exceeded", "{answer}");
    assert!(n >= 1, "the first searches were paid for");
    let spent = key_usage(&app, &admin, "searcher").await["tokens_today"]
        .as_u64()
        .expect("tokens_today");
    assert!(spent >= 20, "{spent}");
    let embedded = embed
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "embeddings")
        .count();
    assert_eq!(embedded, n, "the refused search called no provider");
    app.shutdown().await;
}

#[tokio::test]
async fn an_mcp_servers_sampling_is_admitted_like_a_turn_of_the_key() {
    use crate::support::{calls, chat_bodies};
    let (app, fake) =
        crate::support::everything_app(json!({"sampling": true}), Duration::from_secs(60)).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let key = create_key(
        &app,
        Some(&admin),
        json!({"name": "one-a-minute", "turns_per_minute": 1}),
    )
    .await;
    fake.mock.push([
        calls(&[(
            "call_1",
            "trigger-sampling-request",
            json!({"prompt": "Say hi", "maxTokens": 50}),
        )]),
        Reply::text("Done."),
    ]);
    let mut socket = connect_with_key(&app, Some(&key)).await.expect("socket");
    send(&mut socket, chat("r1", "sample", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    // The turn used the minute's one turn: the server's sampling was refused, the model not
    // asked for it.
    assert_eq!(chat_bodies(&fake).len(), 2);
    let read = crate::support::result_read(&fake);
    assert!(read.contains("turns_per_minute"), "{read}");
    app.shutdown().await;
}
