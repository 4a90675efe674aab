//! The real `mcp-platform` binary: start-up refusals, check-config, SIGTERM, and SIGKILL in the
//! middle of writes.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{
    BIN, assert_one_clear_line, get_json, run_to_completion, start_server, write_config,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[tokio::test]
async fn a_bad_config_exits_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "  sqlite:\n    connection_pool:\n      max_readers: 0\n",
    );
    let (code, _, stderr) = run_to_completion(&["--config", config.to_str().expect("utf-8")]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "database.sqlite.connection_pool.max_readers");
    assert!(
        !dir.path().join("data/chat.db").exists(),
        "a refused start creates nothing"
    );
}

#[tokio::test]
async fn a_busy_port_exits_2_before_the_database_is_touched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let config = write_config(dir.path(), "");
    let (code, _, stderr) =
        run_to_completion(&["--config", config.to_str().expect("utf-8"), "--port", &port]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "cannot listen on 127.0.0.1");
    assert!(
        !dir.path().join("data/chat.db").exists(),
        "the database was created anyway"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_version_exits_2_and_is_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let db = dir.path().join("data/chat.db");
    {
        let (mut child, _) = start_server(&config).await;
        child.kill().await.expect("stop");
    }
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "INSERT INTO schema_migrations VALUES (999, 'from_the_future', 'x', 0)",
        [],
    )
    .expect("insert");
    conn.pragma_update(None, "journal_mode", "DELETE")
        .expect("leave WAL so the file is self-contained");
    drop(conn);
    let before = std::fs::read(&db).expect("read");
    let (code, _, stderr) = run_to_completion(&["--config", config.to_str().expect("utf-8")]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "migration 999 (from_the_future)");
    assert_eq!(
        std::fs::read(&db).expect("read"),
        before,
        "the file was modified"
    );
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = "mcp:\n  servers:\n    github:\n      command: github-mcp\n      env: {GITHUB_TOKEN: \"${E2E_SECRET_TOKEN:-ghp_supersecret}\"}\n";
    let config = write_config(dir.path(), extra);
    let (code, stdout, stderr) =
        run_to_completion(&["check-config", "--config", config.to_str().expect("utf-8")]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("github-mcp") && stdout.contains("max_readers: 16"),
        "{stdout}"
    );
    assert!(!stdout.contains("ghp_supersecret"), "{stdout}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
    assert!(
        stderr.contains("MCP server github: stdio, `github-mcp` with 0 args"),
        "{stderr}"
    );
    assert!(!stderr.contains("ghp_supersecret"), "{stderr}");
}

/// A key this version no longer reads: the file still loads, and check-config says so.
#[tokio::test]
async fn check_config_names_a_key_no_longer_read_and_accepts_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    let text = "server:\n  port: 0\n  http:\n    realtime_front: true\n";
    std::fs::write(&config, text).expect("write config");
    let (code, stdout, stderr) =
        run_to_completion(&["check-config", "--config", config.to_str().expect("utf-8")]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: server.http.realtime_front is ignored"),
        "{stderr}"
    );
    assert!(!stdout.contains("realtime_front"), "{stdout}");
}

#[tokio::test]
async fn check_config_reads_the_mcp_servers_file_and_names_a_bad_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = dir.path().join("servers.json");
    let config = write_config(
        dir.path(),
        &format!("mcp:\n  servers_file: {}\n", servers.display()),
    );
    let config = config.to_str().expect("utf-8");
    let good = r#"{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]},
        "remote": {"type": "http", "url": "https://mcp.example.com/v1?token=hidden"}}}"#;
    std::fs::write(&servers, good).expect("write");
    let (code, _, stderr) = run_to_completion(&["check-config", "--config", config]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("MCP server time: stdio, `uvx` with 1 args"),
        "{stderr}"
    );
    assert!(
        stderr.contains("MCP server remote: Streamable HTTP at https://mcp.example.com"),
        "{stderr}"
    );
    assert!(!stderr.contains("hidden"), "{stderr}");

    std::fs::write(&servers, r#"{"mcpServers": {"broken": {"args": ["x"]}}}"#).expect("write");
    let (code, _, stderr) = run_to_completion(&["check-config", "--config", config]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "mcpServers.broken");
}

async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let response = client.post(url).json(body).send().await.ok()?;
    if response.status().as_u16() != 201 {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test]
async fn killed_mid_write_every_acknowledged_write_survives_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let (mut child, address) = start_server(&config).await;
    let client = reqwest::Client::new();
    let created = post_json(&client, &format!("{address}/api/conversations"), &json!({}))
        .await
        .expect("create");
    let id = created["id"].as_str().expect("id").to_string();

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, acknowledged) = (client.clone(), acknowledged.clone());
        let url = format!("{address}/api/conversations/{id}/messages");
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let text = format!("{writer}:{i}");
                let body = json!({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ack"}]});
                if post_json(&client, &url, &body).await.is_none() {
                    return;
                }
                acknowledged.lock().expect("lock").push(text);
            }
        }));
    }
    let enough = async {
        while acknowledged.lock().expect("lock").len() < 400 {
            assert!(
                !writers.iter().all(tokio::task::JoinHandle::is_finished),
                "every writer stopped early"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), enough)
        .await
        .expect("400 writes acknowledged in time");
    child.kill().await.expect("SIGKILL");
    for writer in writers {
        writer.await.expect("writer task");
    }

    let acked = acknowledged.lock().expect("lock").clone();
    let conn = rusqlite::Connection::open(dir.path().join("data/chat.db")).expect("reopen");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let mut statement = conn
        .prepare("SELECT content FROM messages WHERE role = 'user'")
        .expect("prepare");
    let stored: std::collections::HashSet<String> = statement
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|text| !stored.contains(*text))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let pairs: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE role = 'assistant'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        usize::try_from(pairs).expect("count"),
        stored.len(),
        "a batch is never half-written"
    );
    drop(statement);
    drop(conn);

    // The same file serves again, and SIGTERM stops the server with exit code 0.
    let (mut child, address) = start_server(&config).await;
    let health = get_json(&client, &format!("{address}/health")).await;
    assert_eq!(health["status"], "ok");
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill -TERM");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(0));
}

/// The real binary, stopped the moment it is ready. The race this guards (handlers installed
/// only on first poll) is microseconds wide, so this is a smoke check; the deterministic test is
/// `app::tests::signal_handlers_are_installed_when_called_not_when_first_polled`.
#[tokio::test]
async fn sigterm_the_moment_the_server_is_ready_still_shuts_down_gracefully() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    for _ in 0..3 {
        let (mut child, _) = start_server(&config).await;
        let pid = child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill -TERM");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("exits")
            .expect("status");
        assert_eq!(
            status.code(),
            Some(0),
            "killed by the signal instead of shutting down"
        );
    }
}

/// A database with memories and messages made by the built-in embedder at 384 dimensions.
async fn seed_memories(db: &Path) {
    use mcp_platform::config::{MemoryConfig, RepositoryConfig};
    use mcp_platform::memory::LexicalEmbedder;
    use mcp_platform::store::{NewMessage, Role, Store};
    let config = RepositoryConfig {
        path: db.to_path_buf(),
        ..RepositoryConfig::default()
    };
    let space = MemoryConfig::default().vector_space(&mcp_platform::config::LlmConfig::default());
    let store = Store::open_with(&config, &space).expect("open");
    let embedder = LexicalEmbedder::new(space.dimensions);
    for text in ["The printer is on the third floor", "Lunch is at noon"] {
        let vector = embedder.embed(text).expect("words");
        store
            .memories()
            .store(text.into(), vec!["office".into()], None, &vector)
            .await
            .expect("stored");
    }
    let conversation = store.conversations().create(None).await.expect("created");
    let messages = vec![
        NewMessage::new(Role::User, "where is the printer"),
        NewMessage::new(Role::Assistant, "third floor"),
    ];
    store
        .conversations()
        .append(&conversation.id, messages)
        .await
        .expect("appended");
    store.close(Duration::from_secs(5)).await.expect("closed");
}

#[tokio::test]
async fn a_changed_embedding_size_is_refused_at_start_until_reembed_rebuilds_the_vectors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data/chat.db");
    std::fs::create_dir_all(db.parent().expect("dir")).expect("mkdir");
    seed_memories(&db).await;
    let config = write_config(dir.path(), "memory:\n  dimensions: 256\n");
    let config = config.to_str().expect("utf-8");

    let (code, _, stderr) = run_to_completion(&["--config", config]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "run `mcp-platform reembed`");
    // A refused start changes nothing on disk: no -wal or -shm left beside the file.
    let mut files: Vec<String> = std::fs::read_dir(db.parent().expect("dir"))
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(files, ["chat.db"], "left behind by a refused start");
    assert!(
        stderr.contains("(384 dimensions)") && stderr.contains("(256)"),
        "{stderr}"
    );

    let (code, _, stderr) = run_to_completion(&["reembed", "--config", config]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("done: 2 memories and 2 messages re-embedded")
            && stderr.contains("(256 dimensions)"),
        "{stderr}"
    );

    // The new vectors answer queries of the new size.
    let space = mcp_platform::config::VectorSpace {
        embedder: mcp_platform::config::BUILTIN_LABEL.into(),
        dimensions: 256,
    };
    let repository = mcp_platform::config::RepositoryConfig::at(db.clone());
    let store = mcp_platform::store::Store::open_with(&repository, &space)
        .expect("the rebuilt database opens");
    let query = mcp_platform::memory::LexicalEmbedder::new(256)
        .embed("which floor is the printer on")
        .expect("words");
    let hits = store
        .memories()
        .find(&query, 1, vec!["office".into()], None)
        .await
        .expect("find");
    assert_eq!(hits[0].memory.text, "The printer is on the third floor");
    let messages = store
        .memories()
        .search_messages(&query, 1, None, 50)
        .await
        .expect("search");
    assert_eq!(messages[0].snippet, "where is the printer");
    let counts = store.memories().counts().await.expect("counts");
    assert_eq!(
        (
            counts.memory_vectors,
            counts.message_vectors,
            counts.messages_pending
        ),
        (4, 2, 0)
    );
    store.close(Duration::from_secs(5)).await.expect("closed");
}

/// Starts `mcp-platform mock-provider` with `args` and returns it with its base URL.
async fn start_mock(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("mock-provider")
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mock provider starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("a line");
    let url = line
        .strip_prefix("mock provider listening on ")
        .expect("the address line")
        .to_string();
    (child, url)
}

#[tokio::test]
async fn the_mock_provider_command_streams_calls_tools_embeds_and_fails_on_request() {
    let (_child, url) = start_mock(&["--chunks", "5"]).await;
    let client = reqwest::Client::new();
    let chat = |body: Value| {
        client
            .post(format!("{url}/chat/completions"))
            .json(&body)
            .send()
    };
    let streamed = chat(json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}))
    .await
    .expect("chat")
    .text()
    .await
    .expect("body");
    assert_eq!(streamed.matches("\"content\"").count(), 5, "{streamed}");
    assert!(streamed.contains("[DONE]"));
    let tools = json!([{"type": "function", "function": {"name": "echo", "parameters": {}}}]);
    let called: Value = chat(json!({"model": "m", "stream": false, "tools": tools,
        "messages": [{"role": "user", "content": "/tool echo {\"text\": \"x\"}"}]}))
    .await
    .expect("chat")
    .json()
    .await
    .expect("JSON");
    let call = &called["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "echo", "{called}");
    assert_eq!(call["arguments"], "{\"text\": \"x\"}", "{called}");
    let embedded: Value = client
        .post(format!("{url}/embeddings"))
        .json(&json!({"model": "e", "input": ["a", "b"]}))
        .send()
        .await
        .expect("embeddings")
        .json()
        .await
        .expect("JSON");
    assert_eq!(embedded["data"].as_array().map(Vec::len), Some(2));

    let (_failing, url) = start_mock(&["--fail-rate", "1"]).await;
    let status = client
        .post(format!("{url}/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat")
        .status();
    assert_eq!(status.as_u16(), 500);
}

#[tokio::test]
async fn loadtest_drives_a_server_reports_figures_and_judges_slos() {
    let (app, _fake) = crate::support::chat_app(|_| {}).await;
    let url = format!("ws://{}/ws/chat", app.addr);
    let (code, stdout, stderr) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--connections",
        "5",
        "--turns",
        "3",
        "--json",
        "--slo",
        "p99_ms=60000,error_rate=0",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["turns_completed"], 15, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
    assert_eq!(report["turn_ms"]["count"], 15);
    assert!(report["ttft_ms"]["p99"].as_f64() > Some(0.0), "{report}");
    assert!(report["server"]["cpu_ms_per_turn"].is_number(), "{report}");
    assert_eq!(report["slos"][0]["met"], true);

    let (code, stdout, _) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--connections",
        "2",
        "--turns",
        "1",
        "--slo",
        "p99_ms=0",
    ])
    .await;
    assert_eq!(code, 1, "a missed SLO exits 1: {stdout}");
    assert!(
        stdout.contains("SLO p99_ms <= 0") && stdout.contains("MISSED"),
        "{stdout}"
    );

    let (code, stdout, stderr) =
        run_to_completion(&["loadtest", "--url", &url, "--idle", "20", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let idle: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(
        (idle["opened"].as_u64(), idle["server_active"].as_u64()),
        (Some(20), Some(20)),
        "{idle}"
    );
    assert!(idle["rss_bytes_after_close"].as_u64() > Some(0), "{idle}");

    let (code, _, stderr) = run_to_completion(&["loadtest", "--url", &url, "--slo", "p99=1"]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "unknown SLO");
    app.shutdown().await;
}

#[tokio::test]
async fn loadtest_drives_the_openai_door_too() {
    let (app, fake) = crate::support::chat_app(|_| {}).await;
    let url = format!("ws://{}/ws/chat", app.addr);
    let (code, stdout, stderr) = run_to_completion(&[
        "loadtest",
        "--url",
        &url,
        "--api",
        "openai",
        "--connections",
        "3",
        "--turns",
        "4",
        "--conversation-turns",
        "2",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["turns_completed"], 12, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
    assert!(report["ttft_ms"]["p99"].as_f64() > Some(0.0), "{report}");
    // Each client sent its conversation so far: a second turn carries three messages, after
    // the server's system prompt.
    let longest = crate::support::chat_bodies(&fake)
        .iter()
        .map(|body| body["messages"].as_array().map_or(0, Vec::len))
        .max();
    assert_eq!(
        longest,
        Some(4),
        "two turns per conversation, then a new one"
    );
    app.shutdown().await;
}
