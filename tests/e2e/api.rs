use serde_json::{Value, json};

use crate::support::{get_json, spawn_app};

#[tokio::test]
async fn conversations_can_be_created_listed_read_and_deleted() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    let (status, body) = app.append(&id, "hello").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["messages"][0]["seq"], 1);

    let list = get_json(&app.client, &app.url("/api/conversations")).await;
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["message_count"], 1);

    let history = app.history(&id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "hello");

    let deleted = app
        .client
        .delete(app.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = app
        .client
        .get(app.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(gone.status().as_u16(), 404);
    let body: Value = gone.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "not_found");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_keeps_working() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    let url = app.url(&format!("/api/conversations/{id}/messages"));
    let cases: Vec<(&str, u16, &str)> = vec![
        ("{not json", 400, "invalid_request"),
        (
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            422,
            "invalid_request",
        ),
        (
            r#"{"messages": [{"role": "tool", "content": "x"}]}"#,
            400,
            "invalid_request",
        ),
        (r#"{"messages": "nope"}"#, 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let response = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.expect("JSON error body");
        assert_eq!(error["error"]["code"], code, "{body}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let bad_id = app
        .client
        .get(app.url("/api/conversations/has%20space"))
        .send()
        .await
        .expect("GET");
    assert_eq!(bad_id.status().as_u16(), 400);
    let bad_query = app
        .client
        .get(app.url("/api/conversations?limit=lots"))
        .send()
        .await
        .expect("GET");
    assert_eq!(bad_query.status().as_u16(), 400);
    // The next good request works, and nothing half-written was stored.
    assert_eq!(app.append(&id, "still fine").await.0, 201);
    assert_eq!(app.history(&id).await.len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_repeated_request_id_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    let url = app.url(&format!("/api/conversations/{id}/messages"));
    let body = json!({"messages": [{"role": "user", "content": "hi", "request_id": "r1"}]});
    assert_eq!(
        app.client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16(),
        201
    );
    let again = app
        .client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status().as_u16(), 409);
    let error: Value = again.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "duplicate_request");
    app.shutdown().await;
}

#[tokio::test]
async fn creating_a_conversation_under_a_taken_id_is_a_conflict() {
    let app = spawn_app().await;
    let url = app.url("/api/conversations");
    let body = json!({"id": "my-conversation"});
    assert_eq!(
        app.client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16(),
        201
    );
    let again = app
        .client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status().as_u16(), 409);
    let error: Value = again.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "already_exists");
    app.shutdown().await;
}

#[tokio::test]
async fn browser_requests_from_foreign_origins_are_refused() {
    let app = spawn_app().await;
    let foreign = app
        .client
        .get(app.url("/api/conversations"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(foreign.status().as_u16(), 403);
    let own_origin = format!("http://127.0.0.1:{}", app.addr.port());
    let own = app
        .client
        .get(app.url("/api/conversations"))
        .header("Origin", own_origin)
        .send()
        .await
        .expect("GET");
    assert_eq!(own.status().as_u16(), 200);
    let no_origin = app
        .client
        .get(app.url("/api/conversations"))
        .send()
        .await
        .expect("GET");
    assert_eq!(no_origin.status().as_u16(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn four_concurrent_writers_store_every_append_in_contiguous_order() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/api/conversations/{id}/messages")),
        );
        writers.push(tokio::spawn(async move {
            for i in 0..500 {
                let body =
                    json!({"messages": [{"role": "user", "content": format!("{writer}:{i}")}]});
                let response = client.post(&url).json(&body).send().await.expect("POST");
                assert_eq!(response.status().as_u16(), 201);
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let history = app.history(&id).await;
    assert_eq!(history.len(), 2000);
    let seqs: Vec<i64> = history
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    // Each writer's own messages keep the order it wrote them in.
    for writer in 0..4 {
        let mine: Vec<usize> = history
            .iter()
            .filter_map(|m| {
                m["content"]
                    .as_str()?
                    .strip_prefix(&format!("{writer}:"))?
                    .parse()
                    .ok()
            })
            .collect();
        assert_eq!(mine, (0..500).collect::<Vec<_>>());
    }
    let (_, health) = app.health().await;
    assert_eq!(health["repository_stats"]["write_gate"]["timeouts"], 0);
    app.shutdown().await;
}

#[tokio::test]
async fn appends_count_tokens_themselves_and_bound_names() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    let url = app.url(&format!("/api/conversations/{id}/messages"));
    let text = "word ".repeat(10_000);
    let response = app
        .client
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": text, "token_count": 1}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("JSON");
    let counted = body["messages"][0]["token_count"].as_i64().unwrap_or(0);
    assert!(
        counted >= 9_000,
        "the client's token_count was trusted: {counted}"
    );

    for bad in [
        json!({"role": "user", "content": "x", "request_id": "r".repeat(300)}),
        json!({"role": "assistant", "content": "x", "model": "m".repeat(300)}),
        json!({"role": "assistant", "content": "x", "usage": {"pad": "u".repeat(5000)}}),
    ] {
        let response = app
            .client
            .post(&url)
            .json(&json!({"messages": [bad]}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 400);
    }
    app.shutdown().await;
}
