//! Local models first: with no provider chosen and no key for the default one, a local engine
//! answering on a preset's port is used; a chosen provider is kept; `--provider` picks a local
//! preset without a config entry, and refuses a name that is not a provider.

use std::time::Duration;

use mcp_platform::mock_provider::{MockProvider, Reply};
use tokio::io::AsyncBufReadExt;

use crate::support::BIN;

/// Starts the binary with `config` (YAML) and no OpenAI key; the first log line that has
/// `needle`.
async fn start_and_find(dir: &std::path::Path, config: &str, needle: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--config"])
        .arg(&path)
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the line within 30 s");
    let _ = child.kill().await;
    found
}

#[tokio::test]
async fn with_no_provider_chosen_a_local_engine_that_answers_is_used_and_a_chosen_one_is_kept() {
    // An engine where the config's `ollama` entry says (the preset's own port may be taken
    // here, and a test must not bind it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mock = MockProvider::new(Reply::words(3));
    let _engine = mock.spawn(listener);
    let dir = tempfile::tempdir().expect("dir");
    let common = format!(
        "database:\n  url: sqlite:{}\n",
        dir.path().join("chat.db").display()
    );
    let providers = format!(
        "  providers:\n    openai: {{}}\n    ollama:\n      base_url: http://127.0.0.1:{port}/v1\n"
    );

    // Nothing chosen: the engine is used, with the model it lists.
    let config = format!("{common}llm:\n{providers}");
    let using = start_and_find(dir.path(), &config, "using ").await;
    assert!(
        using.contains(&format!("Ollama at 127.0.0.1:{port}, model mock-model")),
        "{using}"
    );
    assert!(using.contains("no provider chosen"), "{using}");
    let asked: Vec<_> = mock.requests().iter().map(|r| r.endpoint).collect();
    assert!(asked.is_empty(), "no chat request at start: {asked:?}");

    // Chosen: kept, and the log says how to use the engine instead.
    let config = format!("{common}llm:\n  active: openai\n{providers}");
    let ready = start_and_find(dir.path(), &config, "listening").await;
    assert!(ready.contains("openai (no key"), "{ready}");
}

#[tokio::test]
async fn provider_picks_a_local_preset_and_refuses_an_unknown_name() {
    let dir = tempfile::tempdir().expect("dir");
    let refused = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--provider", "nope"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("`nope` is not a provider")
            && said.contains("ollama")
            && said.contains("lmstudio"),
        "{said}"
    );

    // A local preset, no entry: the server runs with it active.
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--provider", "ollama"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("ready");
    assert!(ready.contains("ollama"), "{ready}");
    let _ = child.kill().await;
}
