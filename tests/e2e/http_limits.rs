//! Plain HTTP connections are bounded (`server.http`): a request head must arrive within the
//! header timeout (also the keep-alive idle timeout), and open connections are capped without
//! counting upgraded WebSockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{connect, eventually, raw_request, spawn_app_with};

const HALF_A_HEADER: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n";
const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// Reads until the server closes `stream`; false if it is still open after `deadline`.
async fn closed_by_server(stream: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn half_header(app_addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(app_addr).await.expect("connect");
    stream.write_all(HALF_A_HEADER).await.expect("write");
    stream
}

#[tokio::test]
async fn a_thousand_half_headers_are_all_closed_within_the_header_timeout_while_health_answers() {
    // Two thousand descriptors in this process (both ends); the CI default may be 1,024.
    let _ = mcp_platform::process::files::raise_open_files_limit(8192);
    let timeout = Duration::from_secs(2);
    let app = spawn_app_with(|config| config.server.http.header_read_timeout = timeout).await;
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(half_header(app.addr).await);
    }
    // Meanwhile a normal request is served.
    let (status, body) = raw_request(app.addr, HEALTH).await;
    assert_eq!(status, 200, "{body}");
    // Every one is closed by the server (the margin is for a loaded CI machine, not a bound on
    // the timeout's precision).
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(20);
    let mut still_open = 0;
    for stream in &mut streams {
        if !closed_by_server(stream, deadline).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections the server never closed");
    let health = app.health().await.1;
    assert!(
        health["http"]["header_timeouts"].as_u64() >= Some(1000),
        "{}",
        health["http"]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|config| {
        config.server.http.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buffer).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "a first request is answered and the connection kept alive"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(
        closed_by_server(&mut stream, deadline).await,
        "an idle keep-alive connection was held open"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_http_cap_refuses_new_connections_with_503_but_does_not_count_websockets() {
    let app = spawn_app_with(|config| config.server.http.max_connections = 3).await;
    // Three WebSockets: upgraded, they give their HTTP place back.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(connect(&app).await);
    }
    let (status, body) = raw_request(app.addr, HEALTH).await;
    assert_eq!(status, 200, "WebSockets must not fill the HTTP cap: {body}");
    // Three idle HTTP connections fill it: the next one is refused, clearly.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(half_header(app.addr).await);
    }
    // The server may not have accepted all three yet.
    let body = eventually("a connection over the cap refused", || async {
        let (status, body) = raw_request(app.addr, HEALTH).await;
        (status == 503).then_some(body)
    })
    .await;
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["error"]["code"], "too_many_connections");
    // Once they close, there is room again.
    drop(held);
    eventually("the cap giving places back", || async {
        (raw_request(app.addr, HEALTH).await.0 == 200).then_some(())
    })
    .await;
    let health = app.health().await.1;
    assert!(health["http"]["refused"].as_u64() >= Some(1));
    assert_eq!(health["http"]["upgraded"], 3);
    assert_eq!(health["websocket_stats"]["active"], 3);
    drop(sockets);
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_given_up_and_oversized_bodies_are_refused_per_route() {
    let app = spawn_app_with(|config| {
        config.server.http.body_read_timeout = Duration::from_millis(500);
    })
    .await;
    // Half a body, then nothing: the request fails instead of holding the connection.
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /api/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\":",
        )
        .await
        .expect("write");
    let mut response = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not received within"), "{text}");
    // A login body has no business being large.
    let big = format!(r#"{{"key": "{}"}}"#, "k".repeat(100_000));
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    assert_eq!(raw_request(app.addr, &request).await.0, 413);
    app.shutdown().await;
}
