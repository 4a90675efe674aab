//! A socket belongs to the credentials it was opened with: when a browser session is logged
//! out (or expires), its sockets close with 4401, as a revoked key's do.

use std::time::Duration;

use crate::support::{
    Socket, TestApp, close_code, create_key, mcp_status, next_frame, open_mcp_session, send,
    spawn_app_with,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn login(app: &TestApp, key: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/login"))
        .json(&json!({"key": key}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    cookie.split(';').next().expect("pair").to_string()
}

async fn socket_with_cookie(app: &TestApp, cookie: &str) -> Socket {
    let mut request = format!("ws://{}/ws/chat", app.addr)
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert("cookie", cookie.parse().expect("header"));
    headers.insert(
        "origin",
        format!("http://{}", app.addr).parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade")
        .0
}

#[tokio::test]
async fn logging_out_closes_the_sessions_sockets_with_4401_and_leaves_others_open() {
    let app = spawn_app_with(|_| {}).await;
    let key = create_key(&app, None, json!({"name": "browser", "admin": true})).await;
    let (first, second) = (login(&app, &key).await, login(&app, &key).await);
    let mut ending = socket_with_cookie(&app, &first).await;
    let mut staying = socket_with_cookie(&app, &second).await;
    send(
        &mut ending,
        json!({"action": "list_conversations", "request_id": "l1"}),
    )
    .await;
    assert_eq!(next_frame(&mut ending).await["status"], "complete");

    let logout = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", first.clone())
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 204);
    let code = tokio::time::timeout(Duration::from_secs(3), close_code(&mut ending))
        .await
        .expect("closed within 3 s");
    assert_eq!(code.map(u16::from), Some(4401));

    // The other session of the same key goes on.
    send(
        &mut staying,
        json!({"action": "list_conversations", "request_id": "l2"}),
    )
    .await;
    assert_eq!(next_frame(&mut staying).await["status"], "complete");
    app.shutdown().await;
}

#[tokio::test]
async fn one_key_cannot_crowd_other_keys_out_of_the_mcp_sessions() {
    let app = spawn_app_with(|config| {
        config.server.mcp.max_sessions = 4;
        config.server.mcp.max_sessions_per_key = 2;
    })
    .await;
    let admin = create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let alice = create_key(&app, Some(&admin), json!({"name": "alice"})).await;
    let bob = create_key(&app, Some(&admin), json!({"name": "bob"})).await;
    let bobs = open_mcp_session(&app, Some(&bob))
        .await
        .expect("bob's session");
    let mut alices = Vec::new();
    for _ in 0..2 {
        alices.push(open_mcp_session(&app, Some(&alice)).await.expect("alice's"));
    }
    // Alice is at her cap, her sessions in use: hers is refused, nobody's is closed.
    for _ in 0..3 {
        assert_eq!(
            open_mcp_session(&app, Some(&alice))
                .await
                .map_err(|(status, _)| status),
            Err(503)
        );
    }
    for session in &alices {
        assert_eq!(mcp_status(&app, Some(&alice), session).await, 200);
    }
    assert_eq!(mcp_status(&app, Some(&bob), &bobs).await, 200);
    // Bob is not crowded out: 3 of 4 are open.
    let more = open_mcp_session(&app, Some(&bob))
        .await
        .expect("bob's second");
    assert_eq!(mcp_status(&app, Some(&bob), &more).await, 200);
    let health = app.health_as(&admin).await;
    let endpoint = health["mcp_endpoint"].clone();
    assert_eq!(endpoint["sessions"], 4, "{endpoint}");
    assert_eq!(endpoint["evicted"], 0, "{endpoint}");
    assert_eq!(endpoint["refused"], 3, "{endpoint}");
    app.shutdown().await;
}
