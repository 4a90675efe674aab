//! `spawn_app()` and typed client helpers shared by the end-to-end tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;

use mcp_platform::app::{App, bind};
use mcp_platform::config::Config;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Test logs only when `TEST_LOG` is set.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_test_writer()
                .try_init();
        }
    });
}

/// Asks `check` every 20 ms until it answers `Some`, for up to 30 s (a liveness bound for a
/// loaded CI machine, not a timing claim), and returns that; panics naming `what` if it never
/// does. For a state the server reaches on its own time, instead of a sleep that guesses it.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, std::time::Duration::from_secs(30), check).await
}

/// [`eventually`] with another liveness bound (a toolchain's first start, a long cap).
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    patience: std::time::Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened within {patience:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The `usage` of a streamed `/v1` answer (the chunk `stream_options.include_usage` asks for).
pub fn streamed_usage(body: &str) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find_map(|chunk| chunk.get("usage").filter(|u| !u.is_null()).cloned())
        .unwrap_or_else(|| panic!("a usage chunk in {body}"))
}

/// GETs `url` and parses the JSON body, whatever the status.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("GET");
    response.json().await.expect("JSON body")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(edit: impl FnOnce(&mut Config)) -> TestApp {
    init_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.port = 0;
    config
        .database
        .use_sqlite_file(dir.path().join("data/chat.db"));
    // Chosen: a test's server never goes looking for a local engine on this machine.
    config.llm.chosen = true;
    edit(&mut config);
    let db_path = config.sqlite_store().expect("an SQLite database").path;
    let listener = bind(&config.server).await.expect("bind port 0");
    let app = App::start_with_env(config, |_| None)
        .await
        .expect("app starts");
    let addr = listener.local_addr().expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        // Idle pooled connections are dropped before the server's keep-alive timeout (10 s)
        // would close them under a request.
        client: reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("HTTP client"),
        db_path,
        dir,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn health(&self) -> (u16, Value) {
        let response = self
            .client
            .get(self.url("/health"))
            .send()
            .await
            .expect("GET /health");
        let status = response.status().as_u16();
        (status, response.json().await.expect("health is JSON"))
    }

    /// The whole `/health` document, as an admin key sees it once keys are required.
    pub async fn health_as(&self, admin: &str) -> Value {
        self.client
            .get(self.url("/health"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("health is JSON")
    }

    pub async fn create_conversation(&self) -> String {
        let response = self
            .client
            .post(self.url("/api/conversations"))
            .json(&json!({"title": "test"}))
            .send()
            .await
            .expect("POST /api/conversations");
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("JSON");
        body["id"].as_str().expect("id").to_string()
    }

    /// Appends one user message; returns the status and body.
    pub async fn append(&self, conversation: &str, text: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/api/conversations/{conversation}/messages")))
            .json(&json!({"messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .expect("POST messages");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn history(&self, conversation: &str) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let mut url = self.url(&format!(
                "/api/conversations/{conversation}/messages?limit=200"
            ));
            if let Some(seq) = before {
                url = format!("{url}&before={seq}");
            }
            let page = get_json(&self.client, &url).await;
            let mut items = page["items"].as_array().expect("items").clone();
            items.extend(messages);
            messages = items;
            match page["next_cursor"].as_str() {
                Some(cursor) => before = Some(cursor.parse().expect("seq cursor")),
                None => return messages,
            }
        }
    }

    /// Sends the stop signal without waiting; `shutdown` then waits for the end.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server the way a signal would and waits for it to finish.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        self.dir
    }
}

/// Sends `request` (a whole HTTP/1.1 request, head and body) on a new TCP connection and
/// returns the status code and the body (read up to its `Content-Length`, or until the server
/// closes). For what a browser or attacker sends that reqwest would not (a foreign `Host`).
pub async fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !whole_response(&response) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => response.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Whether `response` holds a head and as much body as its `Content-Length` says.
fn whole_response(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|length| body.len() >= length)
}

/// Creates a key over REST (with `bearer`'s credentials, or none while auth is off).
pub async fn create_key(app: &TestApp, bearer: Option<&str>, body: Value) -> String {
    let mut request = app.client.post(app.url("/api/keys")).json(&body);
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("POST /api/keys");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().expect("the new key").to_string()
}
