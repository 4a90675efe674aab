//! Providers against the scripted fake: streaming, tool calls, retries, limits, breaker,
//! fallback, headers, and keys kept out of errors, `Debug` and `/health`.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Fake, KEY, ask, collect, entry, fake, provider};
use futures::StreamExt;
use mcp_platform::config::{LlmConfig, ProviderConfig};
use mcp_platform::llm::{ChatEvent, ChatRequest, FinishReason, ProviderError, Providers};
use mcp_platform::mock_provider::{MockCall, MockProvider, Reply};

fn text_of(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| {
            if let ChatEvent::Text(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_answer_arrives_with_usage_and_the_request_is_well_formed() {
    let fake = fake().await;
    fake.mock.push([Reply::words(5)]);
    let events = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect("answer");
    assert_eq!(text_of(&events), "w0 w1 w2 w3 w4 ");
    assert!(matches!(events[events.len() - 2], ChatEvent::Usage(u) if u.completion_tokens == 5));
    assert_eq!(events.last(), Some(&ChatEvent::Finish(FinishReason::Stop)));
    let sent = &fake.mock.requests()[0];
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(sent.body["model"], "mock-model");
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(sent.body["messages"][0]["content"], "hi");
}

#[tokio::test]
async fn a_non_streaming_answer_gives_the_same_events() {
    let fake = fake().await;
    fake.mock.push([Reply::text("whole answer")]);
    let request = ChatRequest {
        stream: false,
        ..ask("hi")
    };
    let events = collect(&provider(&entry(&fake.base_url)), request)
        .await
        .expect("answer");
    assert_eq!(text_of(&events), "whole answer");
    assert_eq!(events.last(), Some(&ChatEvent::Finish(FinishReason::Stop)));
}

#[tokio::test]
async fn parallel_tool_calls_are_assembled_across_chunks() {
    let fake = fake().await;
    let calls = vec![
        MockCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: r#"{"city": "Zürich", "days": 3}"#.into(),
        },
        MockCall {
            id: "call_2".into(),
            name: "time".into(),
            arguments: r#"{"tz": "Europe/Paris"}"#.into(),
        },
    ];
    fake.mock.push([Reply::ToolCalls {
        calls: calls.clone(),
        pieces: 5,
    }]);
    let events = collect(&provider(&entry(&fake.base_url)), ask("weather?"))
        .await
        .expect("answer");
    let got: Vec<(String, String, String)> = events
        .iter()
        .filter_map(|e| {
            if let ChatEvent::ToolCall(c) = e {
                Some((c.id.clone(), c.name.clone(), c.arguments.clone()))
            } else {
                None
            }
        })
        .collect();
    let want: Vec<(String, String, String)> = calls
        .into_iter()
        .map(|c| (c.id, c.name, c.arguments))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        events.last(),
        Some(&ChatEvent::Finish(FinishReason::ToolCalls))
    );
}

#[tokio::test]
async fn events_and_characters_split_across_network_chunks_are_reassembled() {
    let fake = fake().await;
    let text = "héllo wörld 🎉";
    let stream = format!(
        ": OPENROUTER PROCESSING\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
        serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    )
    .into_bytes();
    // Cut inside the comment, inside "data:", and inside the multibyte characters.
    let emoji_at = stream
        .windows(4)
        .position(|w| w == "🎉".as_bytes())
        .expect("emoji");
    let e_at = stream
        .windows(2)
        .position(|w| w == "é".as_bytes())
        .expect("é");
    let mut cuts = vec![5, 30, e_at + 1, emoji_at + 2, emoji_at + 3];
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(stream[start..cut].to_vec());
        start = cut;
    }
    chunks.push(stream[start..].to_vec());
    fake.mock.push([Reply::RawChunks(chunks)]);
    let events = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect("answer");
    assert_eq!(text_of(&events), text);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_counted_as_the_providers() {
    let fake = fake().await;
    fake.mock.push([
        Reply::Status {
            status: 429,
            retry_after: Some("1".into()),
            body: String::new(),
        },
        Reply::words(2),
    ]);
    let provider = provider(&entry(&fake.base_url));
    let events = collect(&provider, ask("hi"))
        .await
        .expect("answer after the retry");
    assert_eq!(text_of(&events), "w0 w1 ");
    let requests = fake.mock.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    let stats = provider.snapshot();
    assert_eq!(
        (stats.retries, stats.rate_limited.provider, stats.errors),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = fake().await;
    fake.mock
        .push([Reply::status(500), Reply::status(502), Reply::status(503)]);
    let (_, error) = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect_err("fails");
    assert!(
        matches!(error, ProviderError::Server { status: 503, .. }),
        "{error}"
    );
    assert_eq!(
        (error.code().as_str(), error.retryable()),
        ("provider_error", true)
    );
    assert_eq!(
        fake.mock.requests().len(),
        3,
        "one try and max_retries = 2 retries"
    );
}

#[tokio::test]
async fn garbage_before_the_first_event_is_retried_and_becomes_a_clear_error() {
    let fake = fake().await;
    fake.mock
        .push([Reply::Garbage, Reply::Garbage, Reply::Garbage]);
    let (_, error) = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect_err("fails");
    assert!(
        matches!(
            error,
            ProviderError::Stream {
                before_first_event: true,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("not valid JSON"), "{error}");
    assert_eq!(fake.mock.requests().len(), 3);
}

#[tokio::test]
async fn an_error_after_the_first_delta_ends_the_stream_and_is_not_retried() {
    let fake = fake().await;
    fake.mock.push([Reply::ErrorMidStream { pieces_before: 2 }]);
    let (events, error) = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect_err("fails");
    assert_eq!(text_of(&events), "w0 w1 ");
    assert!(error.to_string().contains("the model crashed"), "{error}");
    assert_eq!(fake.mock.requests().len(), 1);
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_an_error_not_a_hang() {
    let fake = fake().await;
    fake.mock.push([Reply::DropAfter { pieces_before: 3 }]);
    let (events, error) = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect_err("fails");
    assert_eq!(text_of(&events), "w0 w1 w2 ");
    assert!(
        matches!(
            error,
            ProviderError::Stream {
                before_first_event: false,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(fake.mock.requests().len(), 1);
}

#[tokio::test]
async fn a_slow_first_byte_times_out() {
    let fake = fake().await;
    let slow = Reply::Text {
        pieces: vec!["late".into()],
        first_byte_delay: Duration::from_secs(3),
        chunk_delay: Duration::ZERO,
    };
    fake.mock.push([slow]);
    let mut config = entry(&fake.base_url);
    config.http_client.read_timeout = Duration::from_millis(300);
    config.http_client.max_retries = 0;
    let (_, error) = collect(&provider(&config), ask("hi"))
        .await
        .expect_err("times out");
    assert_eq!(error.code().as_str(), "provider_error");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn in_flight_requests_never_exceed_the_concurrency_cap() {
    let fake = fake().await;
    let slow = Reply::Text {
        pieces: vec!["a".into(), "b".into()],
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(30),
    };
    fake.mock.push(std::iter::repeat_n(slow, 12));
    let mut config = entry(&fake.base_url);
    config.http_client.concurrent_requests = 3;
    config.http_client.requests_per_minute = 600_000; // let the cap, not the rate, bind
    let provider = provider(&config);
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { collect(&provider, ask("hi")).await.map(|e| text_of(&e)) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("task").expect("answer"), "ab");
    }
    assert_eq!(fake.mock.requests().len(), 12);
    assert!(
        fake.mock.peak_in_flight() <= 3,
        "peak {} > cap 3",
        fake.mock.peak_in_flight()
    );
    assert!(
        fake.mock.peak_in_flight() >= 2,
        "the test did not exercise concurrency"
    );
}

#[tokio::test]
async fn auth_and_model_errors_are_not_retried_and_never_show_the_key() {
    let fake = fake().await;
    fake.mock.push([Reply::status(401), Reply::status(404)]);
    let provider = provider(&entry(&fake.base_url));
    let (_, auth) = collect(&provider, ask("hi")).await.expect_err("401");
    assert_eq!(auth.code().as_str(), "auth_error");
    assert!(
        auth.to_string().contains("FAKE_API_KEY") && !auth.to_string().contains(KEY),
        "{auth}"
    );
    let (_, missing) = collect(&provider, ask("hi")).await.expect_err("404");
    assert_eq!(missing.code().as_str(), "model_not_found");
    assert_eq!(fake.mock.requests().len(), 2);
    assert!(!format!("{provider:?}").contains(KEY));
    assert!(
        !serde_json::to_string(&provider.snapshot())
            .expect("json")
            .contains(KEY)
    );
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_outages_and_fails_fast() {
    let fake = fake().await;
    fake.mock.push([Reply::status(500), Reply::status(500)]);
    let mut config = entry(&fake.base_url);
    config.http_client.max_retries = 0;
    config.circuit_breaker.failure_threshold = 2;
    config.circuit_breaker.open_for = Duration::from_secs(60);
    let provider = provider(&config);
    for _ in 0..2 {
        assert!(collect(&provider, ask("hi")).await.is_err());
    }
    let (_, error) = collect(&provider, ask("hi"))
        .await
        .expect_err("circuit open");
    assert_eq!(error.code().as_str(), "provider_unavailable");
    assert_eq!(
        fake.mock.requests().len(),
        2,
        "an open circuit sends nothing"
    );
    assert_eq!(provider.snapshot().circuit, "open");
}

#[tokio::test]
async fn openrouter_attribution_headers_are_sent() {
    let fake = fake().await;
    let mut config = entry(&fake.base_url);
    config.http_referer = Some("https://example.org/app".into());
    config.x_title = Some("My App".into());
    collect(&provider(&config), ask("hi"))
        .await
        .expect("answer");
    let headers = &fake.mock.requests()[0].headers;
    assert_eq!(headers["http-referer"], "https://example.org/app");
    assert_eq!(headers["x-title"], "My App");
}

fn llm_config(entries: Vec<(&str, ProviderConfig)>, active: &str, fallback: &[&str]) -> LlmConfig {
    LlmConfig {
        active: active.into(),
        fallback: fallback.iter().map(|s| (*s).to_string()).collect(),
        providers: entries
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect(),
        embeddings: mcp_platform::config::EmbeddingsConfig::default(),
        chosen: true,
        found_locally: None,
    }
}

#[tokio::test]
async fn a_missing_key_means_not_configured_and_fallback_answers() {
    let (down, up) = (fake().await, fake().await);
    let mut backup = entry(&up.base_url);
    backup.api_key_env = Some("BACKUP_KEY".into());
    let config = llm_config(
        vec![("primary", entry(&down.base_url)), ("backup", backup)],
        "primary",
        &["backup"],
    );
    // Only the backup's key is set.
    let providers = Providers::new(&config, |name| {
        (name == "BACKUP_KEY").then(|| KEY.to_string())
    });
    let primary = providers.get("primary").expect("primary");
    let (_, error) = collect(primary, ask("hi")).await.expect_err("no key");
    assert_eq!(error.code().as_str(), "provider_not_configured");
    assert!(error.to_string().contains("FAKE_API_KEY"), "{error}");

    let (answered, mut stream) = providers
        .chat(None, &ask("hi"))
        .await
        .expect("fallback answers");
    assert_eq!(answered.name(), "backup");
    assert!(matches!(stream.next().await, Some(Ok(ChatEvent::Text(_)))));
    assert!(down.mock.requests().is_empty());
    assert_eq!(up.mock.requests()[0].body["model"], "mock-model");
}

fn embedding_providers(fake: &Fake, window_ms: u64, max_batch: usize) -> Providers {
    let mut entry = entry(&fake.base_url);
    entry.embedding_model = Some("mock-embedding".into());
    let mut config = llm_config(vec![("local", entry)], "local", &[]);
    config.embeddings.batch_window = Duration::from_millis(window_ms);
    config.embeddings.max_batch = max_batch;
    Providers::new(&config, |_| Some(KEY.to_string()))
}

fn embedding_requests(mock: &MockProvider) -> Vec<Vec<String>> {
    mock.requests()
        .into_iter()
        .filter(|r| r.endpoint == "embeddings")
        .map(|r| {
            r.body["input"]
                .as_array()
                .expect("input")
                .iter()
                .map(|v| v.as_str().expect("text").to_string())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn concurrent_embeddings_are_coalesced_into_batches() {
    let fake = fake().await;
    let providers = embedding_providers(&fake, 50, 64);
    let embedder = providers.embedder(None).expect("embedder");
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let embedder = embedder.clone();
            tokio::spawn(async move { (i, embedder.embed(&[format!("text {i}")]).await) })
        })
        .collect();
    for call in calls {
        let (i, vectors) = call.await.expect("task");
        let vectors = vectors.expect("embedded");
        assert_eq!(
            &*vectors[0],
            mcp_platform::mock_provider::vector_for(&format!("text {i}")).as_slice()
        );
    }
    let requests = embedding_requests(&fake.mock);
    assert!(
        requests.len() < 20,
        "20 concurrent texts went out in {} requests",
        requests.len()
    );
    assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 20);
    let stats = providers.snapshot()["local"]
        .embeddings
        .clone()
        .expect("embedder stats");
    assert_eq!(stats.texts, 20);
    assert!(stats.largest_batch > 1);
}

#[tokio::test]
async fn batches_respect_the_size_limit_and_the_cache_answers_repeats() {
    let fake = fake().await;
    let providers = embedding_providers(&fake, 20, 4);
    let embedder = providers.embedder(None).expect("embedder");
    let texts: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let first = embedder.embed(&texts).await.expect("embedded");
    assert!(
        embedding_requests(&fake.mock)
            .iter()
            .all(|batch| batch.len() <= 4)
    );
    let sent = fake.mock.requests().len();
    let again = embedder.embed(&texts[..3]).await.expect("cached");
    assert_eq!(
        fake.mock.requests().len(),
        sent,
        "cached texts are not sent again"
    );
    assert_eq!(again, first[..3].to_vec());
    let cache = providers.cache_snapshot();
    assert_eq!((cache.hits, cache.misses, cache.entries), (3, 10, 10));
}

#[tokio::test]
async fn embedding_errors_and_empty_texts_are_clear() {
    let fake = fake().await;
    let providers = embedding_providers(&fake, 1, 8);
    let embedder = providers.embedder(None).expect("embedder");
    let empty = embedder
        .embed(&["ok".into(), "  ".into()])
        .await
        .expect_err("empty text");
    assert_eq!(empty.code().as_str(), "invalid_request");
    fake.mock.push([Reply::status(400)]);
    let refused = embedder
        .embed(&["x".into()])
        .await
        .expect_err("provider refused");
    assert_eq!(refused.code().as_str(), "invalid_request");
    assert!(
        embedder.embed(&["x".into()]).await.is_ok(),
        "the embedder goes on after an error"
    );
    let no_model = Providers::new(
        &llm_config(vec![("local", entry(&fake.base_url))], "local", &[]),
        |_| None,
    );
    assert!(
        no_model.embedder(None).is_err(),
        "a provider without embedding_model has no embedder"
    );
}

/// Collects everything logged on this thread (the test runtime is single-threaded, so the
/// provider, the fake and reqwest all log here).
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_api_key_reaches_the_logs_even_at_trace_level() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _scope = tracing::subscriber::set_default(subscriber);
    // Other tests' threads may have cached these callsites as uninteresting meanwhile:
    // recompute, so this thread's subscriber sees them.
    tracing::callsite::rebuild_interest_cache();
    let fake = fake().await;
    fake.mock
        .push([Reply::status(401), Reply::status(500), Reply::words(2)]);
    let provider = provider(&entry(&fake.base_url));
    assert!(collect(&provider, ask("hi")).await.is_err());
    assert!(
        collect(&provider, ask("hi")).await.is_ok(),
        "a 500 then a retried success"
    );
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        text.contains("provider request failed") && text.contains("retrying"),
        "nothing was logged: {text}"
    );
    assert!(!text.contains(KEY), "the API key was logged");
}
