//! API keys, credentials, per-user data and quotas, as clients see them.

use std::time::Duration;

use crate::support::{
    TestApp, chat, chat_app, close_code, connect_with_key, create_key, eventually, next_frame,
    send, spawn_app, turn_frames,
};
use serde_json::{Value, json};

/// A GET with an optional bearer key: status and JSON body (Null if not JSON).
async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keys_are_required_once_one_exists_on_every_route() {
    let app = spawn_app().await;
    // No key yet on a loopback bind: open, and the caller is `local`.
    let (status, _) = get(&app, "/api/conversations", None).await;
    assert_eq!(status, 200);
    let local = app.create_conversation().await;

    let admin = create_key(&app, None, json!({"name": "owner", "admin": true})).await;
    assert!(admin.starts_with("mcpp_") && admin.len() == 48, "{admin}");

    // Missing, wrong and malformed credentials: the same 401, with a Bearer challenge.
    let wrong = format!("mcpp_{}", "A".repeat(43));
    let mut bodies = Vec::new();
    for key in [None, Some(wrong.as_str()), Some("nonsense")] {
        let mut request = app.client.get(app.url("/api/conversations"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("GET");
        assert_eq!(response.status().as_u16(), 401);
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "unauthorized");
        bodies.push(body);
    }
    assert_eq!(bodies[1], bodies[2]);

    // Every protected route refuses before any handler or upgrade.
    for path in [
        "/api/conversations",
        &format!("/api/conversations/{local}"),
        "/api/keys",
        "/nowhere",
    ] {
        assert_eq!(get(&app, path, None).await.0, 401, "{path}");
    }
    assert_eq!(connect_with_key(&app, None).await.err(), Some(401));
    assert_eq!(connect_with_key(&app, Some(&wrong)).await.err(), Some(401));
    let mcp = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover"}))
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(mcp.status().as_u16(), 401);
    assert_eq!(get(&app, "/metrics", None).await.0, 401);

    // The admin key works everywhere and sees what `local` made.
    let (status, list) = get(&app, "/api/conversations", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["owner"], "local", "{list}");
    assert!(connect_with_key(&app, Some(&admin)).await.is_ok());
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status().as_u16(), 200);

    // /health: minimal without an admin key, full with one.
    let (status, minimal) = get(&app, "/health", None).await;
    assert_eq!(status, 200);
    let fields: Vec<&String> = minimal.as_object().expect("object").keys().collect();
    assert_eq!(fields, ["status", "version"], "{minimal}");
    let (_, full) = get(&app, "/health", Some(&admin)).await;
    assert_eq!(full["auth"]["required"], true, "{full}");
    assert!(full["auth"]["keys"]["owner"].is_object(), "{full}");
    assert!(full["access"]["auth_refused"].as_u64() >= Some(9), "{full}");
    assert!(!full.to_string().contains(&admin));
    app.shutdown().await;
}

#[tokio::test]
async fn each_key_sees_and_touches_only_its_own_conversations() {
    let app = spawn_app().await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let alice = create_key(&app, Some(&admin), json!({"name": "alice"})).await;
    let bob = create_key(&app, Some(&admin), json!({"name": "bob"})).await;

    let (status, created) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &alice,
        json!({"title": "a's"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], "alice");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/conversations/{id}");
    let messages = format!("{path}/messages");
    let (status, _) = send_json(
        &app,
        reqwest::Method::POST,
        &messages,
        &alice,
        json!({"messages": [{"role": "user", "content": "alice's secret"}]}),
    )
    .await;
    assert_eq!(status, 201);

    // Bob: not found everywhere, never forbidden.
    for (status, body) in [
        get(&app, &path, Some(&bob)).await,
        get(&app, &messages, Some(&bob)).await,
        send_json(
            &app,
            reqwest::Method::POST,
            &messages,
            &bob,
            json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
        send_json(&app, reqwest::Method::DELETE, &path, &bob, json!({})).await,
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (_, bobs) = get(&app, "/api/conversations", Some(&bob)).await;
    assert_eq!(bobs["items"], json!([]));
    // A user may not manage keys.
    assert_eq!(get(&app, "/api/keys", Some(&bob)).await.0, 403);

    // Over the WebSocket too.
    let mut socket = connect_with_key(&app, Some(&bob))
        .await
        .expect("bob's socket");
    send(
        &mut socket,
        json!({"action": "get_history", "request_id": "h", "payload": {"conversation_id": id}}),
    )
    .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["chunk"]["code"], "not_found", "{frame}");
    send(&mut socket, json!({"action": "delete_conversation", "request_id": "d", "payload": {"conversation_id": id}})).await;
    assert_eq!(next_frame(&mut socket).await["chunk"]["code"], "not_found");
    send(
        &mut socket,
        json!({"action": "list_conversations", "request_id": "l"}),
    )
    .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(
        frame["chunk"]["metadata"]["conversations"],
        json!([]),
        "{frame}"
    );

    // The admin's lists show everyone's, with the owner's name.
    let mut socket = connect_with_key(&app, Some(&admin))
        .await
        .expect("admin socket");
    send(
        &mut socket,
        json!({"action": "list_conversations", "request_id": "l"}),
    )
    .await;
    let frame = next_frame(&mut socket).await;
    let listed = &frame["chunk"]["metadata"]["conversations"];
    assert_eq!(listed[0]["id"], id.as_str(), "{frame}");
    assert_eq!(listed[0]["owner"], "alice");
    // Alice still has hers.
    let (status, mine) = get(&app, &messages, Some(&alice)).await;
    assert_eq!(status, 200);
    assert_eq!(mine["items"][0]["content"], "alice's secret");
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_like_an_unknown_one_and_its_sockets_close_4401() {
    let app = spawn_app().await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let user = create_key(&app, Some(&admin), json!({"name": "temp"})).await;
    let mut socket = connect_with_key(&app, Some(&user)).await.expect("socket");
    let unknown = get(
        &app,
        "/api/conversations",
        Some(&format!("mcpp_{}", "B".repeat(43))),
    )
    .await;

    let (status, body) = send_json(
        &app,
        reqwest::Method::DELETE,
        "/api/keys/temp",
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let code = tokio::time::timeout(Duration::from_secs(3), close_code(&mut socket))
        .await
        .expect("closed within 3 s");
    assert_eq!(code.map(u16::from), Some(4401));

    let revoked = get(&app, "/api/conversations", Some(&user)).await;
    assert_eq!(revoked, unknown);
    assert_eq!(revoked.0, 401);
    // Listed as revoked, never with its key.
    let (_, keys) = get(&app, "/api/keys", Some(&admin)).await;
    let temp = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "temp")
        .expect("temp listed")
        .clone();
    assert!(temp["revoked_at"].is_i64(), "{temp}");
    assert!(!keys.to_string().contains(&user));
    app.shutdown().await;
}

#[tokio::test]
async fn a_browser_logs_in_for_a_session_cookie_and_out_again() {
    let app = spawn_app().await;
    let key = create_key(&app, None, json!({"name": "browser"})).await;
    let login = app
        .client
        .post(app.url("/api/login"))
        .json(&json!({"key": key}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&key));
    let session = cookie.split(';').next().expect("pair").to_string();
    let with_cookie = |path: &str| {
        app.client
            .get(app.url(path))
            .header("cookie", session.clone())
            .send()
    };
    assert_eq!(
        with_cookie("/api/conversations")
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );

    let logout = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", session.clone())
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 204);
    assert_eq!(
        with_cookie("/api/conversations")
            .await
            .expect("GET")
            .status()
            .as_u16(),
        401
    );

    let wrong = app
        .client
        .post(app.url("/api/login"))
        .json(&json!({"key": "mcpp_wrong"}))
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status().as_u16(), 401);
    app.shutdown().await;
}

#[tokio::test]
async fn failed_attempts_are_throttled_per_address() {
    let app = crate::support::spawn_app_with(|config| {
        config.server.auth.max_failures_per_minute = 3;
    })
    .await;
    let key = create_key(&app, None, json!({"name": "k"})).await;
    let wrong = format!("mcpp_{}", "C".repeat(43));
    for _ in 0..3 {
        assert_eq!(get(&app, "/api/conversations", Some(&wrong)).await.0, 401);
    }
    let response = app
        .client
        .get(app.url("/api/conversations"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    app.shutdown().await;
}

#[tokio::test]
async fn quotas_stop_turns_before_any_provider_call() {
    let (app, fake) = chat_app(|_| {}).await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let limited = create_key(
        &app,
        Some(&admin),
        json!({"name": "limited", "turns_per_minute": 2}),
    )
    .await;
    let mut socket = connect_with_key(&app, Some(&limited))
        .await
        .expect("socket");
    for id in ["t1", "t2"] {
        send(&mut socket, chat(id, "hello", json!({}))).await;
        let frames = turn_frames(&mut socket, id).await;
        assert_eq!(
            frames.last().expect("end")["status"],
            "complete",
            "{frames:?}"
        );
    }
    send(&mut socket, chat("t3", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "t3").await;
    let error = &frames.last().expect("end")["chunk"];
    assert_eq!(error["code"], "quota_exceeded", "{frames:?}");
    assert_eq!(error["retryable"], true);
    assert!(
        (1..=61).contains(&error["retry_after"].as_u64().unwrap_or(0)),
        "{error}"
    );
    assert_eq!(frames.len(), 1, "nothing was acknowledged: {frames:?}");
    assert_eq!(fake.mock.requests().len(), 2);

    // tokens_per_day: the first turn spends them, the next is refused.
    let frugal = create_key(
        &app,
        Some(&admin),
        json!({"name": "frugal", "tokens_per_day": 1}),
    )
    .await;
    let mut socket = connect_with_key(&app, Some(&frugal)).await.expect("socket");
    send(&mut socket, chat("f1", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "f1").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    send(&mut socket, chat("f2", "hello", json!({}))).await;
    let frames = turn_frames(&mut socket, "f2").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["code"],
        "quota_exceeded"
    );
    assert_eq!(fake.mock.requests().len(), 3);

    // The admin (no quotas) is not limited, and /health shows each key's usage.
    let (_, health) = get(&app, "/health", Some(&admin)).await;
    assert_eq!(
        health["auth"]["keys"]["limited"]["turns_today"], 2,
        "{health}"
    );
    assert!(health["auth"]["keys"]["frugal"]["tokens_today"].as_u64() >= Some(1));
    app.shutdown().await;
}

#[tokio::test]
async fn concurrent_turns_are_capped_per_key() {
    use mcp_platform::mock_provider::Reply;
    let (app, fake) = chat_app(|_| {}).await;
    let key = create_key(
        &app,
        None,
        json!({"name": "one-at-a-time", "concurrent_turns": 1}),
    )
    .await;
    fake.mock.push([Reply::Text {
        pieces: vec!["slow ".into(), "answer".into()],
        first_byte_delay: Duration::from_millis(600),
        chunk_delay: Duration::ZERO,
    }]);
    let mut first = connect_with_key(&app, Some(&key)).await.expect("socket");
    let mut second = connect_with_key(&app, Some(&key)).await.expect("socket");
    send(&mut first, chat("a", "hello", json!({}))).await;
    assert_eq!(next_frame(&mut first).await["status"], "processing");
    send(&mut second, chat("b", "hello", json!({}))).await;
    let frames = turn_frames(&mut second, "b").await;
    assert_eq!(
        frames.last().expect("end")["chunk"]["code"],
        "quota_exceeded",
        "{frames:?}"
    );
    let frames = turn_frames(&mut first, "a").await;
    assert_eq!(frames.last().expect("end")["status"], "complete");
    // Once the first ended, the next is admitted.
    send(&mut second, chat("c", "hello", json!({}))).await;
    let frames = turn_frames(&mut second, "c").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    app.shutdown().await;
}

/// Our own MCP host, calling `/mcp` with `key`.
fn mcp_as(app: &TestApp, key: &str) -> mcp_platform::mcp::McpHost {
    let entry: mcp_platform::config::McpServerConfig = serde_json::from_value(json!({
        "type": "http",
        "url": format!("http://{}/mcp", app.addr),
        "headers": {"Authorization": format!("Bearer {key}")}
    }))
    .expect("entry");
    crate::support::host(vec![("platform", entry)], |_| {})
}

async fn tool(host: &mcp_platform::mcp::McpHost, name: &str, arguments: Value) -> (bool, Value) {
    let (ok, text) = crate::support::call(host, name, arguments).await;
    (
        ok,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn memories_and_search_hits_belong_to_their_key_and_ids_are_never_reused() {
    let app = spawn_app().await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let alice_key = create_key(&app, Some(&admin), json!({"name": "alice"})).await;
    let bob_key = create_key(&app, Some(&admin), json!({"name": "bob"})).await;
    let alice = mcp_as(&app, &alice_key);
    let bob = mcp_as(&app, &bob_key);
    crate::support::ready(&alice, "platform", 4).await;
    crate::support::ready(&bob, "platform", 4).await;

    let (ok, first) = tool(
        &alice,
        "memory_store",
        json!({"text": "Alice parks in bay 7"}),
    )
    .await;
    assert!(ok, "{first}");
    let (ok, _) = tool(&alice, "memory_delete", json!({"id": first["id"]})).await;
    assert!(ok);
    let (ok, second) = tool(
        &alice,
        "memory_store",
        json!({"text": "Alice parks in bay 9"}),
    )
    .await;
    assert!(ok, "{second}");
    // The deleted id (the largest one) is not handed out again.
    assert!(
        second["id"].as_i64() > first["id"].as_i64(),
        "{first} {second}"
    );

    // Bob neither finds nor deletes Alice's memory.
    let (ok, found) = tool(
        &bob,
        "memory_find",
        json!({"query": "where does Alice park"}),
    )
    .await;
    assert!(ok, "{found}");
    assert_eq!(found["memories"], json!([]), "{found}");
    let (ok, why) = tool(&bob, "memory_delete", json!({"id": second["id"]})).await;
    assert!(!ok, "bob deleted alice's memory: {why}");
    assert!(why.to_string().contains("not found"), "{why}");
    let (ok, found) = tool(
        &alice,
        "memory_find",
        json!({"query": "where does Alice park"}),
    )
    .await;
    assert!(ok);
    assert_eq!(found["memories"][0]["id"], second["id"], "{found}");

    // History search: Alice's messages are hers alone.
    let (status, created) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &alice_key,
        json!({"title": "plans"}),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().expect("id").to_string();
    let (status, _) = send_json(
        &app,
        reqwest::Method::POST,
        &format!("/api/conversations/{id}/messages"),
        &alice_key,
        json!({"messages": [{"role": "user", "content": "the launch code word is periwinkle"}]}),
    )
    .await;
    assert_eq!(status, 201);
    let query = json!({"query": "launch code word periwinkle"});
    let hits = eventually("alice's message indexed", || async {
        let (ok, searched) = tool(&alice, "conversation_search", query.clone()).await;
        assert!(ok, "{searched}");
        let found = searched["hits"].as_array().is_some_and(|h| !h.is_empty());
        found.then(|| searched["hits"].clone())
    })
    .await;
    assert_eq!(
        hits[0]["conversation_id"],
        id.as_str(),
        "never indexed: {hits}"
    );
    let (ok, searched) = tool(&bob, "conversation_search", query.clone()).await;
    assert!(ok);
    assert_eq!(searched["hits"], json!([]), "{searched}");
    let (ok, searched) = tool(
        &bob,
        "conversation_search",
        json!({"query": "periwinkle", "conversation_id": id}),
    )
    .await;
    assert!(ok);
    assert_eq!(searched["hits"], json!([]), "{searched}");
    alice.shutdown(Duration::from_secs(5)).await;
    bob.shutdown(Duration::from_secs(5)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_take_the_metrics_token_or_an_admin_key_once_auth_is_on() {
    let token = "scrape-token-0123456789";
    let app = crate::support::spawn_app_with(|config| {
        config.server.metrics_token = Some(mcp_platform::config::Secret::new(token));
    })
    .await;
    let user = create_key(&app, None, json!({"name": "user"})).await;
    let scrape = |key: String| app.client.get(app.url("/metrics")).bearer_auth(key).send();
    let ok = scrape(token.to_string()).await.expect("GET");
    assert_eq!(ok.status().as_u16(), 200);
    let text = ok.text().await.expect("text");
    assert!(text.contains("mcp_platform_"), "{text}");
    assert!(!text.contains(token));
    assert_eq!(scrape(user).await.expect("GET").status().as_u16(), 401);
    assert_eq!(
        scrape("wrong-token".into())
            .await
            .expect("GET")
            .status()
            .as_u16(),
        401
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_mcp_session_is_usable_only_by_the_key_that_opened_it() {
    let app = spawn_app().await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let alice = create_key(&app, Some(&admin), json!({"name": "alice"})).await;
    let bob = create_key(&app, Some(&admin), json!({"name": "bob"})).await;
    let post = |key: &str, session: Option<&str>, body: Value| {
        let mut request = app
            .client
            .post(app.url("/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let opened = post(&alice, None, init).await.expect("initialize");
    assert_eq!(opened.status().as_u16(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert!(
        post(&alice, Some(&session), initialized)
            .await
            .expect("notify")
            .status()
            .is_success()
    );

    // Bob, with a valid key of his own, cannot use, resume or end Alice's session.
    assert_eq!(
        post(&bob, Some(&session), list.clone())
            .await
            .expect("POST")
            .status()
            .as_u16(),
        404
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = app
            .client
            .request(method.clone(), app.url("/mcp"))
            .bearer_auth(&bob)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 404, "{method}");
    }
    let mine = post(&alice, Some(&session), list).await.expect("POST");
    assert_eq!(mine.status().as_u16(), 200, "alice's session survived");
    app.shutdown().await;
}

#[tokio::test]
async fn only_admins_choose_conversation_ids() {
    let app = spawn_app().await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let user = create_key(&app, Some(&admin), json!({"name": "user"})).await;
    let body = json!({"id": "notes"});
    let (status, refused) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &user,
        body.clone(),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden");
    // A body of the wrong shape is told in JSON's terms, not our type names.
    let (status, wrong) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &user,
        json!("notes"),
    )
    .await;
    assert_eq!(status, 422, "{wrong}");
    let message = wrong["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("expected an object") && !message.contains("CreateBody"),
        "{message}"
    );
    let (status, _) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &admin,
        body,
    )
    .await;
    assert_eq!(status, 201);
    let long_title = json!({"title": "t".repeat(600)});
    let (status, _) = send_json(
        &app,
        reqwest::Method::POST,
        "/api/conversations",
        &user,
        long_title,
    )
    .await;
    assert_eq!(status, 400);
    app.shutdown().await;
}

#[tokio::test]
async fn sockets_opened_without_a_key_close_when_keys_become_required() {
    let app = spawn_app().await;
    let mut socket = connect_with_key(&app, None)
        .await
        .expect("open while keys are off");
    create_key(&app, None, json!({"name": "first"})).await;
    let code = tokio::time::timeout(Duration::from_secs(3), close_code(&mut socket))
        .await
        .expect("closed within 3 s");
    assert_eq!(code.map(u16::from), Some(4401));
    assert_eq!(connect_with_key(&app, None).await.err(), Some(401));
    app.shutdown().await;
}
