//! The MCP conformance suite's server checks (`@modelcontextprotocol/conformance`, run with the
//! Node 22 it needs, both from `tests/node`) against our `/mcp`. The scenarios that do not
//! apply are listed, each with its reason, in `tests/node/conformance-expected-failures.yml`;
//! the suite fails the run if any other scenario fails, or if a listed one starts passing.

use crate::support::node::conformance;
use crate::support::spawn_app_with;

const EXPECTED_FAILURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/node/conformance-expected-failures.yml"
);

#[tokio::test]
async fn the_conformance_suites_server_scenarios_pass_except_those_listed_as_not_applying() {
    let (node, suite) = tokio::task::spawn_blocking(conformance)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let app = spawn_app_with(|_| {}).await;
    let results = tempfile::tempdir().expect("results dir");
    let output = tokio::process::Command::new(node)
        .arg(suite)
        .args(["server", "--url", &app.url("/mcp")])
        .args(["--expected-failures", EXPECTED_FAILURES])
        .arg("-o")
        .arg(results.path())
        .output()
        .await
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the conformance suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // What passed, from the suite's own results: the scenarios /mcp is expected to meet.
    let mut passed = Vec::new();
    for entry in std::fs::read_dir(results.path()).expect("results") {
        let dir = entry.expect("entry").path();
        let checks = std::fs::read_to_string(dir.join("checks.json")).unwrap_or_default();
        let checks: serde_json::Value = serde_json::from_str(&checks).unwrap_or_default();
        let all_ok = checks
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["status"] != "FAILURE"));
        if all_ok {
            passed.push(dir.file_name().expect("name").to_string_lossy().to_string());
        }
    }
    for scenario in [
        "server-initialize",
        "server-session-lifecycle",
        "logging-set-level",
        "ping",
        "completion-complete",
        "tools-list",
        "resources-list",
        "prompts-list",
        "dns-rebinding-protection",
    ] {
        assert!(
            passed
                .iter()
                .any(|p| p.starts_with(&format!("server-{scenario}-"))),
            "{scenario} did not pass: {passed:?}\n{stdout}"
        );
    }
    app.shutdown().await;
}
