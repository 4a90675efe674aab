//! `/v1/chat/completions` and `/v1/models` driven by the official `openai` Python SDK
//! (pinned in tests/python/requirements.txt): streamed and whole answers, an MCP tool run
//! server-side, an unknown model, a bad key, a provider's 429.

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::python::python;
use crate::support::{TestApp, calls, chat_app, chat_bodies, tool_app};

/// Runs the SDK script for `scenario`; its one JSON report.
async fn sdk(app: &TestApp, key: &str, scenario: &str, model: &str) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openai_client_check.py"
    );
    let output = tokio::process::Command::new(python())
        .arg(script)
        .arg(format!("http://{}/v1", app.addr))
        .args([key, scenario, model])
        .output()
        .await
        .expect("run the SDK script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK script failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[tokio::test]
async fn the_official_sdk_gets_streamed_and_whole_answers_with_usage() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock
        .push([Reply::text("Hello from the fake."), Reply::text("Whole.")]);
    let streamed = sdk(&app, "unused", "stream", "mock-model").await;
    assert_eq!(streamed["text"], "Hello from the fake.", "{streamed}");
    assert_eq!(streamed["finish_reason"], "stop");
    assert!(
        streamed["usage"]["total_tokens"].as_u64() > Some(0),
        "{streamed}"
    );
    let whole = sdk(&app, "unused", "whole", "mock/mock-model").await;
    assert_eq!(whole["text"], "Whole.", "{whole}");
    assert_eq!(whole["finish_reason"], "stop");
    let models = sdk(&app, "unused", "models", "").await;
    assert_eq!(models["ids"], json!(["mock-model", "mock/mock-model"]));
    // Stateless: nothing was stored.
    let conversations = crate::support::get_json(&app.client, &app.url("/api/conversations")).await;
    assert_eq!(conversations["items"], json!([]));
    app.shutdown().await;
}

#[tokio::test]
async fn an_mcp_tool_runs_server_side_and_the_sdk_gets_the_final_answer() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[("call_1", "echo", json!({"text": "pong"}))]),
        Reply::text("The tool said pong."),
    ]);
    let whole = sdk(&app, "unused", "whole", "mock-model").await;
    assert_eq!(whole["text"], "The tool said pong.", "{whole}");
    // The model read the tool's result in its second request.
    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 2);
    let last = bodies[1]["messages"].as_array().expect("messages");
    let result = last
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result");
    assert_eq!(result["tool_call_id"], "call_1");
    assert!(
        result["content"]
            .as_str()
            .unwrap_or_default()
            .contains("pong")
    );
    // Tool activity rides in the documented extension, which the SDK keeps as extra data.
    let activity = whole["mcp_platform"]["activity"]
        .as_array()
        .expect("activity");
    assert_eq!(activity[0]["event"], "tool_call_started");
    assert_eq!(activity[1]["event"], "tool_call_finished");
    assert_eq!(activity[1]["ok"], true);
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_models_bad_keys_and_provider_429s_become_the_sdks_errors() {
    let (app, fake) = chat_app(|_| {}).await;
    let unknown = sdk(&app, "unused", "whole", "gpt-7").await;
    assert_eq!(unknown, json!({"error": "NotFoundError", "status": 404}));
    assert!(
        chat_bodies(&fake).is_empty(),
        "no provider call for an unknown model"
    );
    // The provider keeps answering 429: after our retries, the SDK sees a rate limit.
    fake.mock.push(std::iter::repeat_n(Reply::status(429), 3));
    let limited = sdk(&app, "unused", "stream", "mock-model").await;
    assert_eq!(limited, json!({"error": "RateLimitError", "status": 429}));
    // Once a key exists, a wrong one is refused.
    let admin =
        crate::support::create_key(&app, None, json!({"name": "root", "admin": true})).await;
    let refused = sdk(&app, "mcpp_wrong", "whole", "mock-model").await;
    assert_eq!(
        refused,
        json!({"error": "AuthenticationError", "status": 401})
    );
    fake.mock.push([Reply::text("with a key")]);
    let allowed = sdk(&app, &admin, "whole", "mock-model").await;
    assert_eq!(allowed["text"], "with a key", "{allowed}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_exchange_with_x_conversation_id_is_stored_and_continues_the_conversation() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock
        .push([Reply::text("First answer."), Reply::text("Second answer.")]);
    let post = |conversation: &str, messages: Value| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .header("x-conversation-id", conversation)
            .json(&json!({"model": "mock-model", "messages": messages}))
            .send()
    };
    let first = post("new", json!([{"role": "user", "content": "one"}]))
        .await
        .expect("POST");
    assert_eq!(first.status().as_u16(), 200);
    let id = first.headers()["x-conversation-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let history = json!([
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "two"}
    ]);
    let second = post(&id, history).await.expect("POST");
    assert_eq!(
        second.headers()["x-conversation-id"].to_str().ok(),
        Some(id.as_str())
    );
    let body: Value = second.json().await.expect("JSON");
    assert_eq!(body["choices"][0]["message"]["content"], "Second answer.");
    // Stored once each: the new user message and the answer, in order.
    let stored: Vec<(String, String)> = app
        .history(&id)
        .await
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        ("user", "one"),
        ("assistant", "First answer."),
        ("user", "two"),
        ("assistant", "Second answer."),
    ]
    .map(|(r, c)| (r.to_string(), c.to_string()));
    assert_eq!(stored, expected);
    // An unknown conversation is 404, with nothing sent to the provider.
    let before = chat_bodies(&fake).len();
    let unknown = post(
        "0193aaaa-0000-7000-8000-000000000000",
        json!([{"role": "user", "content": "x"}]),
    )
    .await
    .expect("POST");
    assert_eq!(unknown.status().as_u16(), 404);
    let error: Value = unknown.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "not_found");
    assert_eq!(chat_bodies(&fake).len(), before);
    app.shutdown().await;
}

#[tokio::test]
async fn a_call_of_the_clients_own_tool_is_returned_as_tool_calls() {
    let (app, fake) = tool_app(|_| {}).await;
    let weather = || calls(&[("call_w", "get_weather", json!({"city": "Paris"}))]);
    fake.mock.push([weather(), weather()]);
    let expected = json!([{"id": "call_w", "name": "get_weather",
                           "arguments": json!({"city": "Paris"}).to_string()}]);
    let whole = sdk(&app, "unused", "client_tool", "mock-model").await;
    assert_eq!(whole["finish_reason"], "tool_calls", "{whole}");
    assert_eq!(whole["calls"], expected);
    let streamed = sdk(&app, "unused", "client_tool_stream", "mock-model").await;
    assert_eq!(streamed["finish_reason"], "tool_calls", "{streamed}");
    assert_eq!(streamed["calls"], expected);
    // The model was offered the client's tool alongside the server's own.
    let offered: Vec<String> = chat_bodies(&fake)[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(String::from))
        .collect();
    assert!(offered.contains(&"get_weather".to_string()), "{offered:?}");
    assert!(offered.contains(&"echo".to_string()), "{offered:?}");
    app.shutdown().await;
}
