//! Semantic memory end to end: the model stores and finds memories through the built-in tools
//! in chat turns, and finished turns become searchable with the `search` action. The built-in
//! lexical embedder needs no network, so these run against the fake provider alone.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Socket, TestApp, calls, chat, chat_app, chat_bodies, connect, entry, eventually, fake,
    next_frame, send, text_of, tool_frames, tool_result, turn_frames,
};

/// The tool result for `call_id` in a chat request body, as JSON when it is JSON.
fn tool_result_json(body: &Value, call_id: &str) -> Value {
    let content = tool_result(body, call_id);
    serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.into()))
}

#[tokio::test]
async fn the_model_stores_a_memory_in_one_turn_and_finds_it_in_another() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            (
                "s1",
                "memory_store",
                json!({"text": "The user's cat is called Miso", "tags": ["pets"]}),
            ),
            (
                "s2",
                "memory_store",
                json!({"text": "The team meeting is on Thursdays at 10"}),
            ),
        ]),
        Reply::text("Noted."),
        calls(&[(
            "f1",
            "memory_find",
            json!({"query": "what is my cat called?", "k": 1}),
        )]),
        Reply::text("Your cat is Miso."),
    ]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("r1", "remember my cat Miso and the meeting", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "r1").await;
    let finished: Vec<&Value> = tool_frames(&frames)
        .into_iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "ok")
        .collect();
    assert_eq!(finished.len(), 2, "{frames:?}");

    // A new conversation: memory is not tied to the one it came from.
    send(&mut socket, chat("r2", "what is my cat called?", json!({}))).await;
    let frames = turn_frames(&mut socket, "r2").await;
    assert_eq!(text_of(&frames), "Your cat is Miso.");
    let bodies = chat_bodies(&fake);
    let offered: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(offered, ["memory_store", "memory_find", "memory_delete"]);
    let found = tool_result_json(&bodies[3], "f1");
    let memories = found["memories"].as_array().expect("memories");
    assert_eq!(memories.len(), 1, "{found}");
    assert_eq!(memories[0]["text"], "The user's cat is called Miso");
    assert_eq!(memories[0]["tags"], json!(["pets"]));

    let health = app.health().await.1;
    assert_eq!(health["memory"]["memories"], 2, "{}", health["memory"]);
    assert_eq!(
        health["memory"]["memory_vectors"], 3,
        "{}",
        health["memory"]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn bad_tool_arguments_and_unknown_ids_are_results_the_model_reads() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            ("a", "memory_store", json!({"text": "   "})),
            ("b", "memory_find", json!({"query": "x", "k": 0})),
            ("c", "memory_delete", json!({"id": 424_242})),
            ("d", "memory_find", json!({"k": "three"})),
        ]),
        Reply::text("Some of that failed."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "try things", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(frames.last().expect("last")["status"], "complete");
    let errors = tool_frames(&frames)
        .into_iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "error")
        .count();
    assert_eq!(errors, 4, "{frames:?}");
    let body = &chat_bodies(&fake)[1];
    assert!(
        tool_result_json(body, "a")
            .as_str()
            .expect("text")
            .contains("text is empty")
    );
    assert!(
        tool_result_json(body, "b")
            .as_str()
            .expect("text")
            .contains("k must be between 1 and 50")
    );
    assert!(
        tool_result_json(body, "c")
            .as_str()
            .expect("text")
            .contains("memory not found")
    );
    assert!(
        tool_result_json(body, "d")
            .as_str()
            .expect("text")
            .contains("invalid arguments")
    );
    app.shutdown().await;
}

async fn search(socket: &mut Socket, request_id: &str, payload: Value) -> Value {
    send(
        socket,
        json!({"action": "search", "request_id": request_id, "payload": payload}),
    )
    .await;
    loop {
        let frame = next_frame(socket).await;
        if frame["request_id"] == request_id {
            return frame;
        }
    }
}

/// Waits until the background indexer has embedded every finished message.
async fn indexed(app: &TestApp) {
    eventually("every finished message embedded", || async {
        (app.health().await.1["memory"]["messages_pending"] == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn finished_turns_become_searchable_and_bad_searches_get_clear_errors() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::text("Sourdough needs a starter fed with flour and water."),
        Reply::text("The capital of Australia is Canberra."),
    ]);
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("r1", "how do I bake sourdough bread?", json!({})),
    )
    .await;
    let first = turn_frames(&mut socket, "r1").await;
    let bread = first[0]["chunk"]["metadata"]["conversation_id"].clone();
    send(
        &mut socket,
        chat("r2", "what is the capital of Australia?", json!({})),
    )
    .await;
    turn_frames(&mut socket, "r2").await;
    indexed(&app).await;

    let found = search(
        &mut socket,
        "s1",
        json!({"query": "sourdough starter flour", "k": 2}),
    )
    .await;
    assert_eq!(found["status"], "complete", "{found}");
    assert_eq!(found["chunk"]["type"], "search_results");
    let hits = found["chunk"]["metadata"]["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 2, "{found}");
    assert_eq!(hits[0]["role"], "assistant");
    assert!(
        hits[0]["snippet"]
            .as_str()
            .expect("snippet")
            .starts_with("Sourdough needs")
    );
    assert_eq!(hits[0]["conversation_id"], bread);
    assert!(
        hits[0]["message_id"].is_i64() && hits[0]["score"].as_f64() > hits[1]["score"].as_f64()
    );

    let in_other = search(
        &mut socket,
        "s2",
        json!({"query": "Canberra", "conversation_id": bread}),
    )
    .await;
    let hits = in_other["chunk"]["metadata"]["hits"]
        .as_array()
        .expect("hits");
    assert!(
        hits.iter().all(|h| h["conversation_id"] == bread),
        "{in_other}"
    );

    for (payload, code) in [
        (json!({"query": "  "}), "invalid_request"),
        (json!({"query": "x", "k": 0}), "invalid_request"),
        (json!({"query": "x", "k": 51}), "invalid_request"),
        (
            json!({"query": "x", "conversation_id": "nope"}),
            "not_found",
        ),
        (json!({"query": 5}), "invalid_request"),
        (json!({}), "invalid_request"),
    ] {
        let refused = search(&mut socket, "bad", payload.clone()).await;
        assert_eq!(refused["status"], "error", "{payload} → {refused}");
        assert_eq!(refused["chunk"]["code"], code, "{payload} → {refused}");
    }
    // The socket still works.
    let again = search(&mut socket, "s3", json!({"query": "bread"})).await;
    assert_eq!(again["status"], "complete");
    app.shutdown().await;
}

#[tokio::test]
async fn a_provider_embedder_is_used_and_when_it_is_down_the_turn_goes_on() {
    let embed = fake().await;
    let embed_url = embed.base_url.clone();
    let (app, chat_fake) = chat_app(move |config| {
        let mut provider = entry(&embed_url);
        provider.api_key_env = None;
        provider.embedding_model = Some("mock-embedding".into());
        provider.http_client.max_retries = 0;
        config.llm.providers.insert("embed".into(), provider);
        config.memory.embedder = "embed".into();
        config.memory.dimensions = Some(8);
        // Only the tools use the embedder here, so its script is theirs.
        config.memory.history_search = false;
    })
    .await;
    let fact = "The wifi password is on the fridge";
    embed.mock.push([Reply::Status {
        status: 500,
        retry_after: None,
        body: "{\"error\": {\"message\": \"down\"}}".into(),
    }]);
    chat_fake.mock.push([
        calls(&[("s1", "memory_store", json!({"text": fact}))]),
        Reply::text("I could not store it."),
        calls(&[("s2", "memory_store", json!({"text": fact}))]),
        Reply::text("Stored."),
        calls(&[("f1", "memory_find", json!({"query": fact}))]),
        Reply::text("Found."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "remember the wifi", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert_eq!(
        frames.last().expect("last")["status"],
        "complete",
        "{frames:?}"
    );
    let body = &chat_bodies(&chat_fake)[1];
    let why = tool_result_json(body, "s1");
    assert!(
        why.as_str()
            .expect("text")
            .contains("embedder is unavailable"),
        "{why}"
    );

    for id in ["r2", "r3"] {
        send(&mut socket, chat(id, "again", json!({}))).await;
        let frames = turn_frames(&mut socket, id).await;
        assert_eq!(frames.last().expect("last")["status"], "complete");
    }
    let found = tool_result_json(&chat_bodies(&chat_fake)[5], "f1");
    assert_eq!(found["memories"][0]["text"], fact, "{found}");
    assert!(
        found["memories"][0]["score"].as_f64() > Some(0.99),
        "{found}"
    );
    let embedded = embed
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "embeddings")
        .count();
    // The failed store and the stored one; the query for the same text came from the cache.
    assert_eq!(embedded, 2);
    let health = app.health().await.1;
    assert_eq!(health["memory"]["dimensions"], 8, "{}", health["memory"]);
    assert_eq!(
        health["cache_stats"]["embeddings"]["hits"], 1,
        "{}",
        health["cache_stats"]
    );
    app.shutdown().await;
}
