//! Promises of the README checked from outside: secrets stay out of check-config, logs and
//! `/health`; a draining server answers 503; a refused start leaves nothing behind.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{BIN, eventually, write_config};

const ARG_SECRET: &str = "sk-ARGSECRET777";
const ENV_SECRET: &str = "tok_SECRET_from_env";
const URL_TOKEN: &str = "PLANTEDURLTOKEN42";
const URL_PASSWORD: &str = "hunter2pass";

/// A config whose inline MCP servers carry secrets in args, an interpolated value and URLs.
fn secret_config(dir: &std::path::Path) -> std::path::PathBuf {
    let extra = format!(
        "mcp:\n  servers:\n    t:\n      command: some-mcp\n      args: [\"--api-key\", \"{ARG_SECRET}\", \"${{E2E_TOKEN}}\"]\n    \
         remote:\n      url: \"http://bob:{URL_PASSWORD}@127.0.0.1:1/mcp?access_token={URL_TOKEN}&region=eu\"\n"
    );
    write_config(dir, &extra)
}

#[tokio::test]
async fn check_config_redacts_args_interpolated_values_and_url_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = secret_config(dir.path());
    let output = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .env("E2E_TOKEN", ENV_SECRET)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for secret in [ARG_SECRET, ENV_SECRET, URL_TOKEN, URL_PASSWORD] {
        assert!(!stdout.contains(secret), "{secret} in stdout: {stdout}");
        assert!(!stderr.contains(secret), "{secret} in stderr: {stderr}");
    }
    assert!(
        stdout.contains("some-mcp") && stdout.contains("region=eu"),
        "{stdout}"
    );
}

#[tokio::test]
async fn url_credentials_never_reach_the_log_or_health() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = secret_config(dir.path());
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("E2E_TOKEN", ENV_SECRET)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut reader = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let collected = lines.clone();
    tokio::spawn(async move {
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = reader.next_line().await {
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let Some(address) = event["address"].as_str()
                && let Some(tx) = address_tx.take()
            {
                let _ = tx.send(address.to_string());
            }
            collected.lock().expect("lines").push(line);
        }
    });
    let address = tokio::time::timeout(Duration::from_secs(30), address_rx)
        .await
        .expect("ready")
        .expect("address");
    // The remote server (port 1) refuses: wait for its failure to be logged and shown.
    let client = reqwest::Client::new();
    let health = eventually("the remote server's failure in /health", || async {
        let health: Value = client
            .get(format!("{address}/health"))
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("JSON");
        let failed = health["mcp_stats"]["servers"]["remote"]["last_error"].is_string();
        failed.then_some(health)
    })
    .await;
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    let log = lines.lock().expect("lines").join("\n");
    assert!(log.contains("remote"), "the failure was logged: {log}");
    // The URL itself was logged, with its credentials hidden.
    assert!(log.contains("access_token=[redacted]"), "{log}");
    let health = health.to_string();
    for secret in [URL_TOKEN, URL_PASSWORD, ARG_SECRET, ENV_SECRET] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!health.contains(secret), "{secret} in /health: {health}");
    }
}

#[tokio::test]
async fn a_draining_server_answers_new_sockets_and_health_with_503() {
    use mcp_platform::mock_provider::Reply;
    let (mut app, fake) = crate::support::chat_app(|config| {
        config.server.shutdown_timeout = Duration::from_secs(5);
    })
    .await;
    fake.mock.push([Reply::Text {
        pieces: vec!["slow ".into(), "answer".into()],
        first_byte_delay: Duration::from_millis(1500),
        chunk_delay: Duration::ZERO,
    }]);
    let mut socket = crate::support::connect(&app).await;
    crate::support::send(&mut socket, crate::support::chat("r1", "hello", json!({}))).await;
    assert_eq!(
        crate::support::next_frame(&mut socket).await["status"],
        "processing"
    );
    app.signal_stop();
    // Still listening while the turn finishes: a clear 503, not a refused connection, once the
    // server has begun to stop.
    crate::support::eventually("new sockets get 503", || async {
        (crate::support::connect_with_key(&app, None).await.err() == Some(503)).then_some(())
    })
    .await;
    let response = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "shutting_down");
    let frames = crate::support::turn_frames(&mut socket, "r1").await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    app.shutdown().await;
}
