//! The Host check (DNS rebinding) and the Origin check, on every route.

use serde_json::Value;

use crate::support::{raw_request, spawn_app, spawn_app_with};

/// Requests a DNS-rebound page (or anything naming another host) could send.
fn foreign_requests(host: &str) -> Vec<(&'static str, String)> {
    let discover = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#;
    let create = r#"{"title":"x"}"#;
    vec![
        (
            "GET /api/conversations",
            format!("GET /api/conversations HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "POST /api/conversations",
            format!(
                "POST /api/conversations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}",
                create.len()
            ),
        ),
        (
            "GET /health",
            format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "GET /metrics",
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "GET /nowhere",
            format!("GET /nowhere HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "POST /mcp server/discover",
            format!(
                "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{discover}",
                discover.len()
            ),
        ),
        (
            "GET /ws/chat upgrade",
            format!(
                "GET /ws/chat HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        ),
    ]
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route_before_any_handler() {
    let app = spawn_app().await;
    let port = app.addr.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        for (what, request) in foreign_requests(&host) {
            let (status, body) = raw_request(app.addr, &request).await;
            assert_eq!(status, 421, "{what} with Host {host}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "host_not_allowed", "{what}: {body}");
        }
    }
    // A request without any Host is refused too.
    let (status, _) = raw_request(app.addr, "GET /health HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 421);
    // Nothing was created by the refused POST.
    let list: Value = app
        .client
        .get(app.url("/api/conversations"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    let (_, health) = app.health().await;
    assert!(
        health["access"]["host_refused"].as_u64() >= Some(22),
        "{health}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn two_host_headers_are_refused_on_every_route_whichever_comes_first() {
    let app = spawn_app().await;
    let port = app.addr.port();
    for host in [
        format!("localhost:{port}\r\nHost: evil.example"),
        format!("evil.example\r\nHost: localhost:{port}"),
        format!("localhost:{port}\r\nHost: localhost:{port}"),
    ] {
        for (what, request) in foreign_requests(&host) {
            let (status, body) = raw_request(app.addr, &request).await;
            assert_eq!(status, 400, "{what} with Host {host:?}: {body}");
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn loopback_names_and_configured_hosts_are_served() {
    let app = spawn_app_with(|config| {
        config.server.allowed_hosts = vec!["chat.example.com".into(), "*.corp.example".into()];
    })
    .await;
    let port = app.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "localhost".into(),
        "chat.example.com".into(),
        format!("team.corp.example:{port}"),
    ] {
        let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(app.addr, &request).await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    let request = "GET /health HTTP/1.1\r\nHost: corp.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(app.addr, request).await.0, 421);
    app.shutdown().await;
}

#[tokio::test]
async fn a_page_served_under_an_allowed_host_may_call_it_and_no_other_origin_may() {
    let app = spawn_app_with(|config| {
        config.server.allowed_hosts = vec!["chat.example.com".into()];
    })
    .await;
    let port = app.addr.port();
    let request_from = |origin: &str| {
        format!(
            "POST /api/conversations HTTP/1.1\r\nHost: chat.example.com:{port}\r\nOrigin: {origin}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let own = format!("http://chat.example.com:{port}");
    assert_eq!(raw_request(app.addr, &request_from(&own)).await.0, 201);
    for foreign in [
        "http://evil.example".to_string(),
        format!("http://chat.example.com:{}", port + 1),
        format!("http://127.0.0.1:{port}.evil.example"),
    ] {
        assert_eq!(
            raw_request(app.addr, &request_from(&foreign)).await.0,
            403,
            "{foreign}"
        );
    }
    app.shutdown().await;
}
