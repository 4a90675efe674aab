//! A WebSocket client for the end-to-end tests: speaks only the documented protocol.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mcp_platform::config::{Config, LlmConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{Fake, entry, fake};
use crate::support::{TestApp, spawn_app_with};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The app with the fake as its only provider (no key needed).
pub async fn chat_app(edit: impl FnOnce(&mut Config)) -> (TestApp, Fake) {
    let fake = fake().await;
    let mut provider = entry(&fake.base_url);
    provider.api_key_env = None;
    let llm = LlmConfig {
        active: "mock".into(),
        fallback: Vec::new(),
        providers: [("mock".to_string(), provider)].into(),
        embeddings: mcp_platform::config::EmbeddingsConfig::default(),
        chosen: true,
        found_locally: None,
    };
    let app = spawn_app_with(move |config| {
        config.llm = llm;
        edit(config);
    })
    .await;
    (app, fake)
}

pub async fn connect(app: &TestApp) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/chat", app.addr))
        .await
        .expect("upgrade");
    socket
}

/// Opens `/ws/chat` with `Authorization: Bearer key`; the HTTP status if the upgrade is refused.
pub async fn connect_with_key(app: &TestApp, key: Option<&str>) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws/chat", app.addr)
        .into_client_request()
        .expect("request");
    if let Some(key) = key {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("upgrade failed without an HTTP answer: {other}"),
    }
}

pub async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

pub async fn next_frame(socket: &mut Socket) -> Value {
    next_frame_within(socket, Duration::from_secs(10)).await
}

/// The next text frame, waiting up to `patience` (a liveness bound, not a timing claim).
pub async fn next_frame_within(socket: &mut Socket, patience: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(patience, socket.next())
            .await
            .unwrap_or_else(|_| panic!("a frame within {patience:?}"))
            .expect("socket open")
            .expect("read");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("frames are JSON");
        }
    }
}

pub fn chat(request_id: &str, text: &str, extra: Value) -> Value {
    let mut payload = json!({"text": text});
    if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
        payload.extend(extra);
    }
    json!({"action": "chat", "request_id": request_id, "payload": payload})
}

/// Frames of `request_id` until its `complete` or `error`.
pub async fn turn_frames(socket: &mut Socket, request_id: &str) -> Vec<Value> {
    turn_frames_within(socket, request_id, Duration::from_secs(10)).await
}

/// Like [`turn_frames`], waiting up to `patience` for each frame.
pub async fn turn_frames_within(
    socket: &mut Socket,
    request_id: &str,
    patience: Duration,
) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_frame_within(socket, patience).await;
        if frame["request_id"] != request_id {
            continue;
        }
        let done = frame["status"] == "complete" || frame["status"] == "error";
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

pub fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["status"] == "chunk")
        .filter_map(|f| f["chunk"]["data"].as_str())
        .collect()
}

/// Reads until the socket ends; the close code if a close frame came.
/// The close code the socket ends with (`None`: it ended without a close frame).
pub async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the socket ends within 30 s");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

pub async fn connect_with_small_buffer(app: &crate::support::TestApp) -> Socket {
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let stream = tcp.connect(app.addr).await.expect("connect");
    let url = format!("ws://{}/ws/chat", app.addr);
    // A small read buffer too: each read takes little more than a frame from the kernel.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        url,
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .expect("upgrade");
    socket
}

pub fn tool_frames(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["chunk"]["type"] == "tool_execution")
        .collect()
}
