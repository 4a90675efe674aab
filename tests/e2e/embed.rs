//! Embedding and sidecars: `examples/embed.rs` (the library API: start on port 0 with a config
//! built in code, learn the address, stop gracefully) runs; `serve --ready-json` announces its
//! address on one line; `--version` names the commit.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::support::BIN;

#[tokio::test]
async fn the_embedding_example_starts_answers_and_stops() {
    // Examples are built by `cargo test` next to the binaries' directory.
    let example = std::path::Path::new(BIN)
        .parent()
        .expect("target dir")
        .join("examples/embed");
    assert!(example.is_file(), "{} was not built", example.display());
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&example)
            .env_remove("OPENAI_API_KEY")
            .output(),
    )
    .await
    .expect("the example ends")
    .expect("the example runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let first: serde_json::Value =
        serde_json::from_str(said.lines().next().unwrap_or("")).expect("a JSON line first");
    assert!(
        first["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("http://127.0.0.1:"),
        "{said}"
    );
    assert!(
        said.contains("health: 200 OK") && said.contains("stopped"),
        "{said}"
    );
}

#[tokio::test]
async fn a_sidecar_reads_the_address_from_one_json_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--ready-json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line in time")
        .expect("read")
        .expect("a line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let address = ready["address"].as_str().expect("address");
    assert_eq!(ready["pid"].as_u64(), child.id().map(u64::from));
    let health = reqwest::get(format!("{address}/health"))
        .await
        .expect("answers");
    assert_eq!(health.status(), 200);
    let _ = child.kill().await;
}

#[test]
fn the_version_names_the_commit() {
    let output = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected_commit = head.unwrap_or_else(|| "unknown".into());
    assert_eq!(
        said,
        format!(
            "mcp-platform {} ({expected_commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
