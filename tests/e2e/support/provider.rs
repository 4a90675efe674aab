//! The fake provider: the crate's scriptable mock on 127.0.0.1, a provider entry pointing at
//! it, and what it was asked.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mcp_platform::config::ProviderConfig;
use mcp_platform::llm::{
    ChatEvent, ChatMessage, ChatRequest, MessageRole, Provider, ProviderError,
};
use mcp_platform::mock_provider::{MockCall, MockProvider, Reply};
use serde_json::Value;

use super::ws::chat_app;

/// The key a provider built here sends.
pub const KEY: &str = "sk-test-7f3a9c-secret";

pub struct Fake {
    pub mock: MockProvider,
    pub base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn fake() -> Fake {
    let mock = MockProvider::new(Reply::words(3));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let server = mock.spawn(listener);
    Fake {
        mock,
        base_url,
        server,
    }
}

/// A provider entry pointing at the fake, quick to retry.
pub fn entry(base_url: &str) -> ProviderConfig {
    let mut config = ProviderConfig::preset("local");
    config.base_url = base_url.to_string();
    config.model = "mock-model".into();
    config.api_key_env = Some("FAKE_API_KEY".into());
    config.http_client.max_retries = 2;
    config.http_client.backoff_factor = 0.01;
    config.http_client.read_timeout = Duration::from_secs(5);
    config
}

pub fn provider(config: &ProviderConfig) -> Arc<Provider> {
    Arc::new(Provider::new("local", config, Some(KEY.into())))
}

pub fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(MessageRole::User, text)],
        stream: true,
        ..ChatRequest::default()
    }
}

/// All events, or the first error with the events before it.
pub async fn collect(
    provider: &Arc<Provider>,
    request: ChatRequest,
) -> Result<Vec<ChatEvent>, (Vec<ChatEvent>, ProviderError)> {
    let mut stream = provider.chat(&request).await.map_err(|e| (Vec::new(), e))?;
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return Err((events, error)),
        }
    }
    Ok(events)
}

pub fn calls(list: &[(&str, &str, Value)]) -> Reply {
    Reply::ToolCalls {
        calls: list
            .iter()
            .map(|(id, name, arguments)| MockCall {
                id: (*id).to_string(),
                name: (*name).to_string(),
                arguments: arguments.to_string(),
            })
            .collect(),
        pieces: 2,
    }
}

/// The chat requests the fake received, as JSON bodies.
pub fn chat_bodies(fake: &Fake) -> Vec<Value> {
    fake.mock
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "chat/completions")
        .map(|r| r.body)
        .collect()
}

/// The app with the fake as `mock` and `backup` (another fake) as its fallback.
pub async fn with_backup() -> (crate::support::TestApp, Fake, Fake) {
    let backup = fake().await;
    let mut backup_entry = entry(&backup.base_url);
    backup_entry.api_key_env = None;
    backup_entry.model = "backup-model".into();
    let (app, primary) = chat_app(move |config| {
        config.llm.providers.insert("backup".into(), backup_entry);
        config.llm.fallback = vec!["backup".into()];
    })
    .await;
    (app, primary, backup)
}

/// The result of `call_1` as the model read it in its second request.
pub fn result_read(fake: &Fake) -> String {
    chat_bodies(fake)
        .last()
        .and_then(|body| body["messages"].as_array().cloned())
        .into_iter()
        .flatten()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str().map(ToString::to_string))
        .expect("a tool result")
}

/// The content of the tool result for `call_id` in a chat request body.
pub fn tool_result<'a>(body: &'a Value, call_id: &str) -> &'a str {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .and_then(|m| m["content"].as_str())
        .expect("the tool result reached the model")
}

/// The contents of the messages a chat request body carries, in order (`""` for none).
pub fn message_contents(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}
