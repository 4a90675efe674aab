//! The MCP host against real servers: this repo's `mcp-test-server` as a child over stdio and
//! over Streamable HTTP. Calls go through the host's API; the chat tests drive the same host
//! through the WebSocket.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{TEST_TOOLS, call, eventually, host, http_test_server, ready, stdio_entry};
use mcp_platform::config::McpServerConfig;
use mcp_platform::mcp::ServerState;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_stdio_server_lists_every_page_of_tools_and_answers_calls() {
    let host = host(vec![("test", stdio_entry(json!({})))], |_| {});
    ready(&host, "test", TEST_TOOLS).await;
    let snapshot = host.snapshot();
    let server = &snapshot.servers["test"];
    assert_eq!((server.tools, server.transport), (TEST_TOOLS, "stdio"));
    assert_eq!(server.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(snapshot.tools, TEST_TOOLS);
    assert_eq!(
        call(&host, "add", json!({"a": 2, "b": 3.5})).await,
        (true, "5.5".into())
    );
    assert_eq!(
        call(&host, "echo", json!({"text": "hi"})).await,
        (true, "hi".into())
    );
    // The `$ref`/`oneOf` schema arrives converted.
    let catalogue = host.catalogue();
    let area = catalogue.get("area").expect("area tool");
    let text = area.parameters.to_string();
    assert!(
        !text.contains("$ref") && !text.contains("oneOf") && text.contains("anyOf"),
        "{text}"
    );
    let circle = json!({"shape": {"kind": "circle", "radius": 1.0}, "precision": 3});
    assert_eq!(call(&host, "area", circle).await, (true, "3.142".into()));
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn errors_timeouts_and_bad_arguments_become_results_the_model_reads() {
    let host = host(
        vec![("test", stdio_entry(json!({"timeout": "300ms"})))],
        |config| config.max_result_bytes = 1000,
    );
    ready(&host, "test", TEST_TOOLS).await;
    assert_eq!(
        call(&host, "fail", json!({"text": "disk full"})).await,
        (false, "disk full".into())
    );
    let (ok, late) = call(&host, "sleep", json!({"ms": 3000})).await;
    assert!(
        !ok && late.contains("did not answer within 300 ms"),
        "{late}"
    );
    let outcome = host
        .call("echo", "{\"text\": ", &CancellationToken::new())
        .await;
    assert!(
        !outcome.ok && outcome.content.contains("not valid JSON"),
        "{outcome:?}"
    );
    let (ok, missing) = call(&host, "nope", json!({})).await;
    assert!(!ok && missing.contains("no tool named `nope`"));
    let (ok, big) = call(&host, "big", json!({"bytes": 5000})).await;
    assert!(
        ok && big.len() < 1200 && big.contains("first 1000 of 5000 bytes"),
        "{}",
        big.len()
    );
    let (ok, image) = call(&host, "image", json!({})).await;
    assert!(
        ok && image.starts_with("[image: image/png,") && image.ends_with("a red pixel"),
        "{image}"
    );
    // The server is still there after all that.
    assert_eq!(
        call(&host, "echo", json!({"text": "still here"})).await.1,
        "still here"
    );
    // Counted on the server: the calls that reached it (not the unknown tool or the bad JSON).
    let stats = &host.snapshot().servers["test"];
    assert_eq!((stats.calls, stats.errors), (5, 2));
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_crashed_server_is_restarted_and_its_tools_return() {
    let host = host(vec![("test", stdio_entry(json!({})))], |_| {});
    ready(&host, "test", TEST_TOOLS).await;
    let (ok, _) = call(&host, "crash", json!({})).await;
    assert!(!ok);
    // Its tools leave the catalogue while it restarts, then come back.
    ready(&host, "test", TEST_TOOLS).await;
    let snapshot = host.snapshot();
    let server = &snapshot.servers["test"];
    assert_eq!(server.restarts, 1);
    assert!(server.last_error.as_deref().is_some_and(|e| !e.is_empty()));
    assert_eq!(
        call(&host, "echo", json!({"text": "back"})).await,
        (true, "back".into())
    );
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_child_sees_only_its_own_environment_never_our_keys() {
    let entry =
        stdio_entry(json!({"env": {"GREETING": "hello"}, "inherit_env": ["SHARED_SETTING"]}));
    let host = host(vec![("test", entry)], |_| {});
    ready(&host, "test", TEST_TOOLS).await;
    let (ok, text) = call(&host, "env", json!({})).await;
    assert!(ok);
    let vars: BTreeMap<String, String> = serde_json::from_str(&text).expect("env JSON");
    assert_eq!(vars.get("GREETING").map(String::as_str), Some("hello"));
    assert_eq!(
        vars.get("SHARED_SETTING").map(String::as_str),
        Some("inherited")
    );
    assert!(vars.contains_key("PATH"));
    assert!(!vars.contains_key("OPENAI_API_KEY"), "{vars:?}");
    assert!(!text.contains("sk-must-not-leak"));
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn colliding_names_are_prefixed_with_the_server_and_calls_reach_the_right_one() {
    let host = host(
        vec![
            ("alpha", stdio_entry(json!({"env": {"WHO": "alpha"}}))),
            ("beta", stdio_entry(json!({"env": {"WHO": "beta"}}))),
        ],
        |_| {},
    );
    ready(&host, "alpha", TEST_TOOLS).await;
    ready(&host, "beta", TEST_TOOLS).await;
    let catalogue = host.catalogue();
    assert!(catalogue.get("echo").is_none());
    assert!(catalogue.get("alpha__echo").is_some() && catalogue.get("beta__echo").is_some());
    let (_, text) = call(&host, "beta__env", json!({})).await;
    assert!(text.contains("\"WHO\":\"beta\""), "{text}");
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_changed_tool_list_is_listed_again() {
    let host = host(vec![("test", stdio_entry(json!({})))], |_| {});
    ready(&host, "test", TEST_TOOLS).await;
    assert!(host.catalogue().get("bonus").is_none());
    assert_eq!(
        call(&host, "unlock", json!({})).await,
        (true, "unlocked".into())
    );
    ready(&host, "test", TEST_TOOLS + 1).await;
    assert_eq!(
        call(&host, "bonus", json!({})).await,
        (true, "bonus".into())
    );
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_server_over_streamable_http_works_like_a_child() {
    let (_child, url) = http_test_server().await;
    let entry: McpServerConfig =
        serde_json::from_value(json!({"type": "http", "url": url})).expect("entry");
    let host = host(vec![("remote", entry)], |_| {});
    ready(&host, "remote", TEST_TOOLS).await;
    assert_eq!(host.snapshot().servers["remote"].transport, "http");
    assert_eq!(
        call(&host, "add", json!({"a": 1, "b": 2})).await,
        (true, "3".into())
    );
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_server_that_cannot_start_is_retried_and_says_why() {
    let entry: McpServerConfig =
        serde_json::from_value(json!({"command": "/nonexistent/mcp-server"})).expect("entry");
    let host = host(
        vec![("broken", entry), ("test", stdio_entry(json!({})))],
        |_| {},
    );
    ready(&host, "test", TEST_TOOLS).await;
    let broken = eventually("the broken server's error", || async {
        let broken = host.snapshot().servers["broken"].clone();
        broken.last_error.is_some().then_some(broken)
    })
    .await;
    assert!(matches!(
        broken.state,
        ServerState::Restarting | ServerState::Starting | ServerState::Failed
    ));
    let error = broken.last_error.expect("an error");
    assert!(
        error.contains("cannot start `/nonexistent/mcp-server`"),
        "{error}"
    );
    // The healthy server's tools are unaffected.
    assert_eq!(host.catalogue().tools().len(), TEST_TOOLS);
    host.shutdown(Duration::from_secs(5)).await;
}
