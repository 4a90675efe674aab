//! The real binary and API keys: a refused exposed start, the `keys` command beside a running
//! server, and the `none` opt-out's warning.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{
    BIN, assert_one_clear_line, eventually, run_to_completion, start_server, write_config,
};

async fn keys(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().expect("utf-8 path")]);
    run_to_completion(&all).await
}

/// The status of GET /api/conversations with `key`.
async fn status_with(client: &reqwest::Client, address: &str, key: Option<&str>) -> u16 {
    let mut request = client.get(format!("{address}/api/conversations"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("GET").status().as_u16()
}

/// Polls until GET with `key` answers `want` (the server reads keys every 500 ms).
async fn until_status(client: &reqwest::Client, address: &str, key: Option<&str>, want: u16) {
    let what = format!("GET with {key:?} answering {want}");
    eventually(&what, || async {
        (status_with(client, address, key).await == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_network_bind_without_any_key_exits_2_before_binding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    // Never bound: the refusal comes first.
    let (code, _, stderr) = run_to_completion(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--host",
        "0.0.0.0",
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert_one_clear_line(&stderr, "mcp-platform keys create");
    assert!(!dir.path().join("data/chat.db").exists(), "nothing written");
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let (mut server, address) = start_server(&config).await;
    let client = reqwest::Client::new();
    assert_eq!(
        status_with(&client, &address, None).await,
        200,
        "open before any key"
    );

    let (code, stdout, stderr) = keys(
        &config,
        &[
            "create",
            "--name",
            "ci-bot",
            "--admin",
            "--turns-per-minute",
            "30",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.lines().last().expect("a last line").to_string();
    assert!(key.starts_with("mcpp_") && key.len() == 48, "{stdout}");
    assert_eq!(stdout.matches(&key).count(), 1, "shown once: {stdout}");

    // The running server sees it within a second: now keys are required.
    until_status(&client, &address, None, 401).await;
    assert_eq!(status_with(&client, &address, Some(&key)).await, 200);

    let (code, listed, _) = keys(&config, &["list"]).await;
    assert_eq!(code, 0);
    assert!(
        listed.contains("ci-bot") && listed.contains("admin") && listed.contains("30 turns/min"),
        "{listed}"
    );
    assert!(
        !listed.contains(&key[5..]),
        "the key itself is never listed: {listed}"
    );
    let (_, json, _) = keys(&config, &["list", "--json"]).await;
    let rows: Value = serde_json::from_str(&json).expect("JSON list");
    assert_eq!(rows[1]["key"]["name"], "ci-bot", "{rows}");
    assert_eq!(rows[0]["key"]["name"], "local");

    // Bad input: a taken name, the reserved one, a zero quota.
    let (code, _, stderr) = keys(&config, &["create", "--name", "ci-bot"]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "already exists");
    let (code, _, stderr) = keys(&config, &["create", "--name", "local"]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "local");
    let (code, _, _) = keys(
        &config,
        &["create", "--name", "z", "--concurrent-turns", "0"],
    )
    .await;
    assert_eq!(code, 2);

    let (code, stdout, stderr) = keys(&config, &["revoke", "ci-bot"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revoked"), "{stdout}");
    until_status(&client, &address, Some(&key), 401).await;
    let (code, _, stderr) = keys(&config, &["revoke", "ci-bot"]).await;
    assert_eq!(code, 2);
    assert_one_clear_line(&stderr, "not found");

    server.start_kill().expect("kill");
    let _ = server.wait().await;
}

#[tokio::test]
async fn auth_mode_none_is_warned_about_at_every_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace("server:\n", "server:\n  auth:\n    mode: none\n"),
    )
    .expect("write");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut warned = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if event["level"] == "WARN" && line.contains("server.auth.mode is none") {
                warned = true;
            }
            if event["address"].is_string() {
                return;
            }
        }
    })
    .await
    .expect("ready");
    assert!(warned, "no warning before the ready line");
    child.start_kill().expect("kill");
    let _ = child.wait().await;
}
