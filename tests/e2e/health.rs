use std::time::Duration;

use crate::support::{eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_reports_the_documented_shape() {
    let app = spawn_app().await;
    let (status, body) = app.health().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_s"].is_u64());
    let repo = &body["repository_stats"];
    assert_eq!(repo["readers"]["size"], 16);
    assert_eq!(repo["writers"]["size"], 4);
    for pool in ["readers", "writers"] {
        for key in ["open", "idle", "in_use", "waiting", "timeouts"] {
            assert!(repo[pool][key].is_u64(), "{pool}.{key} in {repo}");
        }
        // Every connection is opened at start (store/connection.rs says why).
        assert_eq!(repo[pool]["open"], repo[pool]["size"], "{repo}");
        assert!(repo[pool]["acquire_wait_ms"]["p50"].is_number());
        assert!(repo[pool]["acquire_wait_ms"]["p99"].is_number());
    }
    assert!(repo["write_gate"]["queue_depth"].is_u64());
    assert!(repo["write_gate"]["wait_ms"]["p99"].is_number());
    assert!(repo["wal_bytes"].is_u64());
    assert_eq!(repo["healthy"], true);
    // No keys in the test environment: every provider shows as not configured, with its limits.
    let openai = &body["llm_client_stats"]["openai"];
    assert_eq!(openai["configured"], false);
    assert_eq!(
        (
            openai["concurrent_limit"].as_u64(),
            openai["rpm_limit"].as_u64()
        ),
        (Some(25), Some(3500))
    );
    assert_eq!(openai["circuit"], "closed");
    assert!(openai["ttft_ms"]["p99"].is_number() && openai["tokens_in"].is_u64());
    assert_eq!(body["cache_stats"]["embeddings"]["hits"], 0);
    let sockets = &body["websocket_stats"];
    assert_eq!(
        (
            sockets["active"].as_u64(),
            sockets["max_connections"].as_u64()
        ),
        (Some(0), Some(1000))
    );
    assert!(sockets["turns"]["ttft_ms"]["p99"].is_number() && sockets["turns"]["started"].is_u64());
    // No MCP servers configured: an empty section, and an empty schema cache.
    assert_eq!(
        body["mcp_stats"],
        serde_json::json!({"tools": 0, "servers": {}})
    );
    assert_eq!(body["cache_stats"]["schema"]["misses"], 0);
    // The process: measured, not zero.
    let process = &body["process"];
    assert!(process["rss_bytes"].as_u64() > Some(1 << 20), "{process}");
    assert!(
        process["threads"].as_u64() > Some(1) && process["open_fds"].as_u64() > Some(3),
        "{process}"
    );
    assert!(process["cpu_seconds"].is_number(), "{process}");
    assert_eq!(
        body["memory"]["embedder"],
        "builtin (lexical feature hashing: shared words, not meaning)"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn health_figures_move_under_load() {
    let app = spawn_app().await;
    let (_, before) = app.health().await;
    let conversation = app.create_conversation().await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url_w, url_r) = (
            app.client.clone(),
            app.url(&format!("/api/conversations/{conversation}/messages")),
            app.url(&format!("/api/conversations/{conversation}")),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let body = serde_json::json!({"messages": [{"role": "user", "content": format!("{worker}-{i}")}]});
                let written = client.post(&url_w).json(&body).send().await.expect("append");
                assert_eq!(written.status().as_u16(), 201);
                let read = client.get(&url_r).send().await.expect("read");
                assert_eq!(read.status().as_u16(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let (_, after) = app.health().await;
    let count = |body: &serde_json::Value, path: &[&str]| {
        path.iter()
            .fold(body, |v, key| &v[key])
            .as_u64()
            .expect("a count")
    };
    let reads = ["repository_stats", "readers", "acquire_wait_ms", "count"];
    let writes = ["repository_stats", "write_gate", "wait_ms", "count"];
    assert!(
        count(&after, &reads) >= count(&before, &reads) + 200,
        "{after}"
    );
    assert!(
        count(&after, &writes) >= count(&before, &writes) + 200,
        "{after}"
    );
    assert!(
        count(&after, &["repository_stats", "wal_bytes"])
            > count(&before, &["repository_stats", "wal_bytes"])
    );
    app.shutdown().await;
}

#[tokio::test]
async fn health_is_503_once_the_database_file_is_gone() {
    let app = spawn_app_with(|config| {
        config
            .database
            .sqlite_mut()
            .connection_pool
            .health_check_interval = Duration::from_secs(1);
    })
    .await;
    assert_eq!(app.health().await.0, 200);
    std::fs::remove_file(&app.db_path).expect("remove the database file");
    let body = eventually("health turning 503", || async {
        let (status, body) = app.health().await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["repository_stats"]["healthy"], false);
    assert!(body["repository_stats"]["last_health_check"]["error"].is_string());
    app.shutdown().await;
}

#[tokio::test]
async fn retention_runs_in_the_background_and_shows_in_health() {
    let app = spawn_app_with(|config| {
        config.retention.policy = mcp_platform::config::RetentionPolicy::MessageCount;
        config.retention.max_messages = 2;
        config.retention.interval = Duration::from_secs(1);
    })
    .await;
    let conversation = app.create_conversation().await;
    for i in 0..5 {
        let (status, _) = app.append(&conversation, &format!("m{i}")).await;
        assert_eq!(status, 201);
    }
    let retention = eventually("retention deleting 3 messages", || async {
        let retention = app.health().await.1["repository_stats"]["retention"].clone();
        (retention["messages_deleted"] == 3).then_some(retention)
    })
    .await;
    assert!(retention["last_run"]["error"].is_null());
    let kept: Vec<String> = app
        .history(&conversation)
        .await
        .iter()
        .filter_map(|m| m["content"].as_str().map(String::from))
        .collect();
    assert_eq!(kept, ["m3", "m4"]);
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_show_the_health_figures_in_prometheus_format() {
    let (app, fake) = crate::support::chat_app(|_| {}).await;
    fake.mock
        .push([mcp_platform::mock_provider::Reply::words(3)]);
    let mut socket = crate::support::connect(&app).await;
    crate::support::send(
        &mut socket,
        crate::support::chat("r1", "hi", serde_json::json!({})),
    )
    .await;
    crate::support::turn_frames(&mut socket, "r1").await;
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(
        value("mcp_platform_websocket_turns_completed"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value("mcp_platform_websocket_active"), Some(1.0), "{text}");
    assert_eq!(
        value("mcp_platform_llm_requests{provider=\"mock\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("mcp_platform_status_info{value=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("mcp_platform_llm_circuit_info{provider=\"mock\",value=\"closed\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        value("mcp_platform_websocket_turns_turn_latency_ms{quantile=\"0.99\"}") > Some(0.0),
        "{text}"
    );
    assert!(
        value("mcp_platform_process_rss_bytes") > Some(1e6),
        "{text}"
    );
    assert!(
        value("mcp_platform_repository_readers_size") == Some(16.0),
        "{text}"
    );
    assert!(!text.contains("sk-"), "no secrets");
    drop(socket);
    app.shutdown().await;
}
