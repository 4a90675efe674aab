//! The real binary: its path, a config file for it, a server started from it, a command run
//! to its end, and what its errors must look like.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::app::TestApp;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-platform");

pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    let db = dir.join("data/chat.db");
    let text = format!(
        "server:\n  port: 0\nlogging:\n  format: json\ndatabase:\n  url: sqlite:{}\n{extra}",
        db.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts the server and returns it with its address, read from the JSON start-up log line.
/// stderr keeps being drained so the child never blocks on a full pipe.
pub async fn start_server(config: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(address) = event["address"].as_str() {
                return address.to_string();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

pub async fn run_to_completion(args: &[&str]) -> (i32, String, String) {
    run_with_env(args, &[]).await
}

/// Runs the binary to its end with `env` added to its environment (and no
/// `MCPP_DATABASE_URL` of the test process's own): exit code, stdout, stderr.
pub async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("MCPP_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn assert_one_clear_line(stderr: &str, mentions: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(mentions),
        "{stderr}"
    );
}

/// A config file for the commands, naming `app`'s database.
pub fn config_for(app: &TestApp) -> PathBuf {
    let config = app.dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("database:\n  url: sqlite:{}\n", app.db_path.display()),
    )
    .expect("config");
    config
}
