//! OAuth logins to remote MCP servers, against a fake authorization server and a protected MCP
//! server written here (one axum app on 127.0.0.1): protected resource metadata, authorization
//! server metadata, dynamic client registration, PKCE (S256, checked), the code exchange, and
//! refresh (tokens live 4 s). The login runs as a person would: `mcp-platform mcp login`,
//! the authorization URL opened by an HTTP client standing in for the browser.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{
    BIN, Fake, TOKEN_LIFE, TestApp, calls, chat, chat_app, chat_bodies, connect, remote_entry,
    send, server_health, start_auth_server, turn_frames, wait_ready, wait_state,
};
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

/// Runs `mcp-platform mcp login NAME` against `app`, opening the URL it prints with an HTTP
/// client (following the redirects, as a browser would); its exit status, its output, and the
/// page the browser ended on.
async fn login_with_cli(app: &TestApp, name: &str) -> (bool, String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "mcp",
            "login",
            name,
            "--server",
            &app.url(""),
            "--wait",
            "60",
        ])
        .env_remove("MCPP_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the CLI starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = String::new();
    let mut url = None;
    while let Some(line) = lines.next_line().await.expect("read") {
        printed.push_str(&line);
        printed.push('\n');
        if let Some(found) = line.trim().strip_prefix("http") {
            url = Some(format!("http{found}"));
            break;
        }
    }
    let Some(url) = url else {
        let output = child.wait_with_output().await.expect("output");
        panic!(
            "no URL printed: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let page = reqwest::get(&url).await.expect("the browser follows");
    let page = page.text().await.expect("page");
    while let Some(line) = lines.next_line().await.expect("read") {
        printed.push_str(&line);
        printed.push('\n');
    }
    let output = child.wait_with_output().await.expect("exit");
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed, page)
}

/// One chat turn calling the remote `whoami`; the tool result the model got.
async fn whoami_turn(app: &TestApp, fake: &Fake, request_id: &str) -> String {
    fake.mock.push([
        calls(&[("call_1", "whoami", json!({}))]),
        Reply::text("Done."),
    ]);
    let mut socket = connect(app).await;
    send(&mut socket, chat(request_id, "who am I?", json!({}))).await;
    let frames = turn_frames(&mut socket, request_id).await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let bodies = chat_bodies(fake);
    let last = bodies.last().expect("a provider request");
    last["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_protected_server_needs_a_login_then_works_refreshes_and_survives_a_restart() {
    let auth = start_auth_server().await;
    let entry = remote_entry(&auth);
    let first = entry.clone();
    let (app, fake) = chat_app(move |config| {
        config.mcp.servers.insert("remote".into(), first);
    })
    .await;
    wait_state(&app, "remote", "needs_login").await;
    let health = server_health(&app, "remote").await;
    assert_eq!(health["tools"], 0, "{health}");
    assert!(
        health["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("mcp-platform mcp login remote"),
        "{health}"
    );

    let (ok, printed, page) = login_with_cli(&app, "remote").await;
    assert!(ok, "{printed}");
    assert!(printed.contains("Logged in to `remote`"), "{printed}");
    assert!(page.contains("Logged in to remote"), "{page}");
    assert_eq!(auth.registrations.load(Ordering::SeqCst), 1);
    wait_ready(&app, "remote").await;
    assert!(
        whoami_turn(&app, &fake, "t1")
            .await
            .contains("an authorized client")
    );

    // Past half the token's life: the host refreshes it before use.
    tokio::time::sleep(Duration::from_secs(TOKEN_LIFE / 2 + 1)).await;
    assert!(
        whoami_turn(&app, &fake, "t2")
            .await
            .contains("an authorized client")
    );
    assert!(auth.refreshes.load(Ordering::SeqCst) >= 1);

    // No token in /health, in the log's view of a login, or on the page.
    let shown = app.health().await.1.to_string();
    for secret in auth.secrets() {
        assert!(!shown.contains(&secret), "{secret} in /health");
        assert!(!page.contains(&secret) && !printed.contains(&secret));
    }

    // A restart on the same database: ready again without a login (refreshing as needed).
    let db = app.db_path.clone();
    let dir = app.shutdown().await;
    let (app, _fake) = chat_app(move |config| {
        config.database.use_sqlite_file(db);
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    wait_ready(&app, "remote").await;
    assert_eq!(auth.registrations.load(Ordering::SeqCst), 1);
    app.shutdown().await;
    drop(dir);
}

#[tokio::test]
async fn a_login_refused_or_misdirected_says_why_and_changes_nothing() {
    let auth = start_auth_server().await;
    let entry = remote_entry(&auth);
    let (app, _fake) = crate::support::tool_app(move |config| {
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    wait_state(&app, "remote", "needs_login").await;
    let post = |path: &str| app.client.post(app.url(path)).send();

    let unknown = post("/api/mcp/servers/ghost/login").await.expect("post");
    assert_eq!(unknown.status(), 404);
    let local = post("/api/mcp/servers/test/login").await.expect("post");
    assert_eq!(local.status(), 400);
    let body: Value = local.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a remote"),
        "{body}"
    );

    // A callback nobody started, and one without a code.
    let stray = app
        .client
        .get(app.url("/oauth/callback?code=x&state=forged"))
        .send()
        .await
        .expect("get");
    assert_eq!(stray.status(), 404);
    let text = stray.text().await.expect("text");
    assert!(text.contains("unknown or expired"), "{text}");

    // The user refuses at the authorization server: the login ends failed.
    let started: Value = post("/api/mcp/servers/remote/login")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = started["login_id"].as_str().expect("login_id").to_string();
    let url = started["authorization_url"].as_str().expect("url");
    let refusing = format!("{url}&scope=refuse");
    let page = reqwest::get(&refusing).await.expect("browser");
    assert_eq!(page.status(), 400);
    assert!(
        page.text()
            .await
            .expect("page")
            .contains("the user said no")
    );
    let outcome: Value = app
        .client
        .get(app.url(&format!("/api/mcp/logins/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert_eq!(server_health(&app, "remote").await["state"], "needs_login");
    let missing = app
        .client
        .get(app.url("/api/mcp/logins/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    app.shutdown().await;
}
