//! Local models first: with no key for the active provider, a local model server answering on
//! a preset's default port is named at start with how to use it; `--provider` picks a local
//! preset without a config entry, and refuses a name that is not a provider.

use std::time::Duration;

use mcp_platform::config::LOCAL_PRESETS;
use mcp_platform::mock_provider::{MockProvider, Reply};
use tokio::io::AsyncBufReadExt;

use crate::binary::BIN;

#[tokio::test]
async fn the_start_names_a_local_model_server_that_answers() {
    // The first preset port free here (vLLM's 8000 is left out: a server of ours may use it).
    let mut occupied_before = false;
    let mut found = None;
    for preset in LOCAL_PRESETS.iter().filter(|p| p.port != 8000) {
        match tokio::net::TcpListener::bind(("127.0.0.1", preset.port)).await {
            Ok(listener) => {
                found = Some((preset, listener));
                break;
            }
            Err(_) => occupied_before = true,
        }
    }
    let Some((preset, listener)) = found else {
        eprintln!("every local preset port is taken here: nothing to test");
        return;
    };
    let mock = MockProvider::new(Reply::words(3));
    let _server = mock.spawn(listener);

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "chat:\n  service:\n    repository:\n      path: {}\n",
            dir.path().join("chat.db").display()
        ),
    )
    .expect("config");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--config"])
        .arg(&config)
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let hint = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("answers at http://127.0.0.1:") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("a hint within 30 s");
    assert!(
        hint.contains("no API key") && hint.contains("OPENAI_API_KEY"),
        "{hint}"
    );
    assert!(hint.contains("--provider "), "{hint}");
    if !occupied_before {
        assert!(
            hint.contains(&format!(
                "{} answers at {}",
                preset.label,
                preset.base_url()
            )),
            "{hint}"
        );
        assert!(
            hint.contains(&format!("--provider {}", preset.name)),
            "{hint}"
        );
    }
    let _ = child.kill().await;
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
