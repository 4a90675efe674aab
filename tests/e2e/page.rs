//! The chat page's HTTP side (headers, caching, compression, weight) and the protocol
//! actions it uses: `update_conversation`, `list_models`, `list_memories`, `delete_memory`,
//! and `GET /api/session`.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Socket, TestApp, calls, chat, chat_app, chat_bodies, connect, next_frame, raw_request, send,
    spawn_app, turn_frames,
};

/// The page's assets, from the `src`/`href` attributes under `/assets/`.
fn asset_urls(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(ToString::to_string)
        .collect()
}

/// Every file of the page: what index.html links and what app.js imports.
const PAGE_FILES: &[&str] = &[
    "app.css",
    "app.js",
    "chat.js",
    "connection.js",
    "dom.js",
    "icon.svg",
    "library.js",
    "markdown.js",
    "memories.js",
    "question.js",
    "sidebar.js",
    "status.js",
];

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("GET")
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_validators_and_compression() {
    let app = spawn_app().await;
    let response = get(&app, "/", &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let etag = headers["etag"].to_str().expect("etag").to_string();
    let page = response.text().await.expect("page");
    assert!(
        page.contains(r#"aria-label="Message""#),
        "the message box is labelled"
    );

    // Revalidation: the same ETag → 304 with no body.
    let again = get(&app, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status().as_u16(), 304);

    // Every file the page loads (its links and the modules app.js imports): immutable under
    // its versioned URL, compressed on request.
    let linked = asset_urls(&page);
    assert!(linked.len() >= 3, "{linked:?}");
    let version = linked[0].split('/').nth(2).expect("version").to_string();
    let mut weight = 0;
    for file in PAGE_FILES {
        let url = format!("/assets/{version}/{file}");
        let response = get(&app, &url, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(response.status().as_u16(), 200, "{url}");
        assert_eq!(response.headers()["content-encoding"], "gzip", "{url}");
        assert_eq!(response.headers()["vary"], "Accept-Encoding", "{url}");
        let cache = response.headers()["cache-control"].to_str().expect("ascii");
        assert!(cache.contains("immutable"), "{url}: {cache}");
        weight += response.bytes().await.expect("body").len();
    }
    for url in &linked {
        let file = url.rsplit('/').next().expect("file");
        assert!(PAGE_FILES.contains(&file), "{url} is not in PAGE_FILES");
    }
    let html = get(&app, "/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(html.headers()["content-encoding"], "gzip");
    weight += html.bytes().await.expect("body").len();
    println!("page weight (HTML, CSS, JS, icon; gzipped as sent): {weight} bytes");
    assert!(
        weight < 100 * 1024,
        "the page weighs {weight} bytes compressed"
    );
    // Without gzip accepted: plain.
    let plain = get(&app, &linked[0], &[]).await;
    assert!(plain.headers().get("content-encoding").is_none());

    assert_eq!(
        get(&app, "/assets/0/nope.js", &[]).await.status().as_u16(),
        404
    );
    // The Host check covers the page too.
    let (status, _) = raw_request(
        app.addr,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 421);
}

#[tokio::test]
async fn the_session_says_who_is_signed_in_and_401_when_no_one_is() {
    let app = spawn_app().await;
    let body: Value = get(&app, "/api/session", &[])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body,
        json!({"name": "local", "role": "admin", "auth_required": false})
    );
    let key = crate::support::create_key(&app, None, json!({"name": "bob"})).await;
    assert_eq!(get(&app, "/api/session", &[]).await.status().as_u16(), 401);
    let bearer = format!("Bearer {key}");
    let body: Value = get(&app, "/api/session", &[("authorization", &bearer)])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body,
        json!({"name": "bob", "role": "user", "auth_required": true})
    );
}

/// Sends an action and returns its one answer frame.
async fn action(socket: &mut Socket, action: &str, request_id: &str, payload: Value) -> Value {
    send(
        socket,
        json!({"action": action, "request_id": request_id, "payload": payload}),
    )
    .await;
    let frame = next_frame(socket).await;
    assert_eq!(frame["request_id"], request_id, "{frame}");
    frame
}

fn system_prompt_of(body: &Value) -> Option<String> {
    body["messages"]
        .as_array()?
        .iter()
        .find(|m| m["role"] == "system")
        .and_then(|m| m["content"].as_str().map(ToString::to_string))
}

#[tokio::test]
async fn a_conversation_is_titled_from_its_first_message_renamed_and_given_its_own_prompt() {
    let (app, fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    send(
        &mut socket,
        chat("r1", "  \nPlan a week in Rome\nwith kids", json!({})),
    )
    .await;
    let frames = turn_frames(&mut socket, "r1").await;
    let id = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    let listed = action(&mut socket, "list_conversations", "l1", json!({})).await;
    let first = &listed["chunk"]["metadata"]["conversations"][0];
    assert_eq!(first["title"], "Plan a week in Rome");
    assert_eq!(first["system_prompt"], Value::Null);

    let renamed = action(
        &mut socket,
        "update_conversation",
        "u1",
        json!({"conversation_id": id, "title": "Rome", "system_prompt": "Answer in Italian."}),
    )
    .await;
    assert_eq!(renamed["status"], "complete", "{renamed}");
    assert_eq!(renamed["chunk"]["type"], "conversation");
    let conversation = &renamed["chunk"]["metadata"]["conversation"];
    assert_eq!(conversation["title"], "Rome");
    assert_eq!(conversation["system_prompt"], "Answer in Italian.");
    // Renaming does not make it the most recent: its activity time is unchanged.
    assert_eq!(conversation["updated_at"], first["updated_at"]);

    send(
        &mut socket,
        chat("r2", "Ciao?", json!({"conversation_id": id})),
    )
    .await;
    turn_frames(&mut socket, "r2").await;
    // An absent field is kept; an empty one clears: back to the configured prompt.
    let kept = action(
        &mut socket,
        "update_conversation",
        "u2",
        json!({"conversation_id": id, "system_prompt": ""}),
    )
    .await;
    assert_eq!(kept["chunk"]["metadata"]["conversation"]["title"], "Rome");
    assert_eq!(
        kept["chunk"]["metadata"]["conversation"]["system_prompt"],
        Value::Null
    );
    send(
        &mut socket,
        chat("r3", "And now?", json!({"conversation_id": id})),
    )
    .await;
    turn_frames(&mut socket, "r3").await;

    let bodies = chat_bodies(&fake);
    let configured = app_default_prompt();
    assert_eq!(
        system_prompt_of(&bodies[0]).as_deref(),
        Some(configured.as_str())
    );
    assert_eq!(
        system_prompt_of(&bodies[1]).as_deref(),
        Some("Answer in Italian.")
    );
    assert_eq!(
        system_prompt_of(&bodies[2]).as_deref(),
        Some(configured.as_str())
    );

    // Bad input: unknown conversation, over-long prompt, unknown field.
    let unknown = action(
        &mut socket,
        "update_conversation",
        "u3",
        json!({"conversation_id": "nope", "title": "x"}),
    )
    .await;
    assert_eq!(unknown["chunk"]["code"], "not_found", "{unknown}");
    let long = action(
        &mut socket,
        "update_conversation",
        "u4",
        json!({"conversation_id": id, "system_prompt": "x".repeat(40_000)}),
    )
    .await;
    assert_eq!(long["chunk"]["code"], "invalid_request", "{long}");
    let typo = action(
        &mut socket,
        "update_conversation",
        "u5",
        json!({"conversation_id": id, "name": "x"}),
    )
    .await;
    assert_eq!(typo["chunk"]["code"], "invalid_request", "{typo}");
}

fn app_default_prompt() -> String {
    mcp_platform::config::Config::default()
        .chat
        .service
        .system_prompt
}

#[tokio::test]
async fn list_models_names_each_provider_its_models_and_whether_it_has_a_key() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    let frame = action(&mut socket, "list_models", "m1", json!({})).await;
    assert_eq!(frame["chunk"]["type"], "models", "{frame}");
    let metadata = &frame["chunk"]["metadata"];
    assert_eq!(metadata["default_provider"], "mock");
    let mock = &metadata["providers"][0];
    assert_eq!(mock["name"], "mock");
    assert_eq!(mock["configured"], true);
    assert_eq!(mock["models"][0], mock["default_model"]);
}

#[tokio::test]
async fn memories_are_listed_newest_first_searched_and_deleted() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            (
                "c1",
                "memory_store",
                json!({"text": "The user drinks green tea"}),
            ),
            (
                "c2",
                "memory_store",
                json!({"text": "The user lives in Lyon"}),
            ),
        ]),
        Reply::text("Noted."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "remember things", json!({}))).await;
    turn_frames(&mut socket, "r1").await;

    let page = action(&mut socket, "list_memories", "l1", json!({"limit": 1})).await;
    assert_eq!(page["chunk"]["type"], "memories", "{page}");
    let first = &page["chunk"]["metadata"]["memories"];
    assert_eq!(first.as_array().map(Vec::len), Some(1));
    let cursor = page["chunk"]["metadata"]["next_cursor"].clone();
    assert!(cursor.is_string(), "{page}");
    let rest = action(
        &mut socket,
        "list_memories",
        "l2",
        json!({"limit": 1, "cursor": cursor}),
    )
    .await;
    let second = &rest["chunk"]["metadata"]["memories"][0];
    assert!(
        second["id"].as_i64() < first[0]["id"].as_i64(),
        "newest first: {page} {rest}"
    );
    assert_eq!(rest["chunk"]["metadata"]["next_cursor"], Value::Null);

    let found = action(
        &mut socket,
        "list_memories",
        "s1",
        json!({"query": "green tea"}),
    )
    .await;
    let hits = found["chunk"]["metadata"]["memories"]
        .as_array()
        .expect("hits")
        .clone();
    assert_eq!(hits[0]["text"], "The user drinks green tea", "{found}");
    assert!(hits[0]["score"].is_number());

    let id = hits[0]["id"].clone();
    let deleted = action(&mut socket, "delete_memory", "d1", json!({"memory_id": id})).await;
    assert_eq!(
        deleted["chunk"]["metadata"],
        json!({"memory_id": id, "deleted": true})
    );
    let again = action(&mut socket, "delete_memory", "d2", json!({"memory_id": id})).await;
    assert_eq!(again["chunk"]["code"], "not_found", "{again}");
    let left = action(&mut socket, "list_memories", "l3", json!({})).await;
    assert_eq!(
        left["chunk"]["metadata"]["memories"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let bad = action(&mut socket, "list_memories", "l4", json!({"cursor": "x"})).await;
    assert_eq!(bad["chunk"]["code"], "invalid_request", "{bad}");
    let missing = action(&mut socket, "delete_memory", "d3", json!({})).await;
    assert_eq!(missing["chunk"]["code"], "invalid_request", "{missing}");
}
