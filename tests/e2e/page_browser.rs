//! The chat page in a real headless Chromium (tests/browser/page.py, driven by Playwright),
//! against the real server, the fake provider and the real `mcp-test-server`. Each scenario
//! saves screenshots under `target/screenshots/page-SCENARIO/`.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::browser::run_page_script;
use crate::support::{TestApp, calls, chat_app, create_key, tool_app};

/// Runs a scenario of page.py and checks that nothing went wrong in the page on the way:
/// no uncaught error, no dialog, no console error but those `expected` names.
async fn browse(app: &TestApp, scenario: &str, env: &[(&str, &str)], expected: &[&str]) -> Value {
    let report = run_page_script("page.py", &app.url(""), scenario, env).await;
    assert_eq!(report["page_errors"], json!([]), "{report}");
    assert_eq!(report["dialogs"], json!([]), "{report}");
    let unexpected: Vec<&Value> = report["console_errors"]
        .as_array()
        .expect("console_errors")
        .iter()
        .filter(|e| {
            let text = e["text"].as_str().unwrap_or("");
            !expected.iter().any(|allowed| text.contains(allowed))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {report}");
    report
}

fn slow_text(pieces: &[&str], delay_ms: u64) -> Reply {
    Reply::Text {
        pieces: pieces.iter().map(ToString::to_string).collect(),
        first_byte_delay: Duration::ZERO,
        chunk_delay: Duration::from_millis(delay_ms),
    }
}

fn texts(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn an_answer_streams_in_pieces_as_markdown_and_a_reload_reopens_the_conversation() {
    let (app, fake) = chat_app(|_| {}).await;
    let pieces = [
        "Streams ",
        "are **ordered** ",
        "sequences.\n\n",
        "- one\n",
        "- two\n\n",
        "```rust\n",
        "let x = 1;\n",
        "```\n",
    ];
    fake.mock.push([slow_text(&pieces, 60)]);
    let report = browse(&app, "stream", &[], &[]).await;

    let seen = texts(&report["seen"]);
    assert!(
        seen.len() >= 3,
        "the answer should grow in pieces: {report}"
    );
    let last = seen.last().expect("a final text");
    assert!(last.contains("Streams are ordered sequences."), "{last}");
    assert!(last.contains("let x = 1;"), "{last}");
    // Markdown was rendered: the bold has no stars, the list no dashes.
    assert!(!last.contains("**") && !last.contains("- one"), "{last}");

    let hash = report["hash"].as_str().expect("hash");
    assert!(hash.starts_with("#/c/"), "{report}");
    assert_eq!(report["reloaded_hash"], hash);
    // Titled from its first message, listed, and marked as the one open.
    assert_eq!(report["title"], "Tell me about streams");
    assert_eq!(texts(&report["current"]), ["Tell me about streams"]);
    let history = texts(&report["history"]);
    assert_eq!(history.len(), 2, "{report}");
    assert!(history[0].contains("Tell me about streams"));
    assert!(history[1].contains("Streams are ordered sequences."));

    // The server has the same conversation.
    let id = hash.trim_start_matches("#/c/");
    let stored = app.history(id).await;
    assert_eq!(stored.len(), 2);
}

#[tokio::test]
async fn a_tool_call_shows_as_a_block_with_its_server_arguments_and_result() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[("call_1", "echo", json!({"text": "pong"}))]),
        Reply::text(
            "The tool said **pong**.\n\n| tool | server | result |\n|---|---|---|\n\
             | `echo` | test | pong |\n\nTo do the same in a shell:\n\n```sh\necho pong\n```",
        ),
    ]);
    let report = browse(&app, "tool", &[], &[]).await;
    assert_eq!(report["name"], "echo", "{report}");
    assert_eq!(report["server"], "on test");
    assert_eq!(report["badge"], "done");
    assert!(report["classes"].as_str().unwrap_or("").contains("ok"));
    assert!(report["duration"].as_str().unwrap_or("").ends_with(" ms"));
    let arguments: Value =
        serde_json::from_str(report["arguments"].as_str().expect("arguments")).expect("JSON");
    assert_eq!(arguments, json!({"text": "pong"}));
    assert_eq!(report["result"], "pong");
    let answer = report["answer"].as_str().expect("answer");
    assert!(answer.starts_with("The tool said pong."), "{answer}");
    assert_eq!(
        report["table_cells"],
        json!(["echo", "test", "pong"]),
        "{report}"
    );
    assert_eq!(report["code"], "echo pong");

    // Reopened from the stored history: the same block and answer, no script error (browse).
    let reopened = &report["reopened"];
    assert_eq!(reopened["hash"], report["hash"], "{report}");
    assert_eq!(reopened["name"], "echo", "{report}");
    assert_eq!(reopened["badge"], "done", "{report}");
    let arguments: Value =
        serde_json::from_str(reopened["arguments"].as_str().expect("arguments")).expect("JSON");
    assert_eq!(arguments, json!({"text": "pong"}));
    assert_eq!(reopened["result"], "pong", "{report}");
    let answer = reopened["answer"].as_str().expect("answer");
    assert!(answer.starts_with("The tool said pong."), "{answer}");
}

#[tokio::test]
async fn html_and_script_links_in_an_answer_show_as_text_and_nothing_runs() {
    let (app, fake) = chat_app(|_| {}).await;
    let nasty = "Look: <img src=x onerror=alert(1)> and <script>alert(1)</script> and \
                 [x](javascript:alert(1)) and [y](JaVaScRiPt:window.__pwned=true) and \
                 <img src=x onerror=\"window.__pwned=true\"> and [ok](https://example.com/a)";
    // And a line made to be slow to parse: emphasis and links that never close.
    let pathological = format!("{nasty}\n\n{}{}", "**a ".repeat(5000), "[x".repeat(5000));
    fake.mock.push([Reply::text(&pathological)]);
    let report = browse(&app, "hostile", &[], &[]).await;
    let text = report["text"].as_str().expect("text");
    assert!(text.contains("<img src=x onerror=alert(1)>"), "{text}");
    assert!(text.contains("<script>alert(1)</script>"), "{text}");
    assert!(
        text.contains("**a **a") && text.ends_with("[x[x"),
        "the long line shows as text"
    );
    assert_eq!(report["images"], 0, "{report}");
    assert_eq!(report["scripts"], 0, "{report}");
    assert_eq!(report["javascript_links"], 0, "{report}");
    assert_eq!(report["unsafe_links"], 2, "{report}");
    // The one safe link stays a link.
    assert_eq!(report["anchors"], 1, "{report}");
    assert_eq!(report["pwned"], false);
}

#[tokio::test]
async fn with_keys_required_the_page_asks_for_one_refuses_a_wrong_one_and_accepts_a_right_one() {
    let (app, fake) = chat_app(|_| {}).await;
    let key = create_key(&app, None, json!({"name": "alice"})).await;
    fake.mock.push([Reply::text("Hello, Alice.")]);
    // The page's first question (/api/session) and the wrong key are answered 401, which
    // Chromium logs as failed loads.
    let report = browse(&app, "login", &[("API_KEY", &key)], &["401"]).await;
    assert!(
        report["refused"]
            .as_str()
            .unwrap_or("")
            .contains("not valid"),
        "{report}"
    );
    assert_eq!(report["answer"], "Hello, Alice.");
    assert_eq!(report["logout_visible"], true);
    // alice is not an admin: no status view.
    assert_eq!(report["status_visible"], false);
    // Logged out: the session cookie no longer works, and the page asks again.
    assert_eq!(report["after_logout"], 401);
}

#[tokio::test]
async fn stop_cancels_a_slow_answer_and_the_partial_answer_stays_marked() {
    let (app, fake) = chat_app(|_| {}).await;
    let words: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    fake.mock.push([slow_text(&words, 100)]);
    let report = browse(&app, "stop", &[], &[]).await;
    let partial = report["partial"].as_str().expect("partial");
    assert!(partial.contains("w2"), "{report}");
    assert!(!partial.contains("w199"), "{report}");
    assert!(
        report["state"]
            .as_str()
            .unwrap_or("")
            .starts_with("Stopped")
    );
    assert_eq!(report["retry"], 1);
    assert_eq!(report["reloaded_retry"], 1);
    // Stored as cancelled: after a reload it is still marked.
    assert!(
        texts(&report["reloaded_state"])
            .iter()
            .any(|s| s.starts_with("cancelled") || s.starts_with("Stopped")),
        "{report}"
    );
}

#[tokio::test]
async fn at_360_pixels_the_message_box_fits_and_the_list_opens_from_a_button() {
    let (app, _fake) = chat_app(|_| {}).await;
    let report = browse(&app, "narrow", &[], &[]).await;
    assert!(
        report["page_width"].as_f64().expect("width") <= 360.0,
        "{report}"
    );
    let right = |b: &Value| b["x"].as_f64().unwrap_or(0.0) + b["width"].as_f64().unwrap_or(0.0);
    assert!(right(&report["box"]) <= 360.0, "{report}");
    assert!(right(&report["send"]) <= 360.0, "{report}");
    assert_eq!(report["sidebar_visible"], true);
    assert_eq!(report["typed"], "first line\nsecond line");
    assert_eq!(report["sent"], 0);
}

/// Not a timed assertion: the figures are printed for the README (run with --nocapture).
#[tokio::test]
async fn a_conversation_of_500_messages_opens_whole_and_scrolls() {
    let (app, _fake) = chat_app(|_| {}).await;
    let id = app.create_conversation().await;
    let mut messages = Vec::new();
    for i in 0..500 {
        let (role, content) = if i % 2 == 0 {
            ("user", format!("Question {i}: how does *this* work?"))
        } else {
            (
                "assistant",
                format!(
                    "Answer {i}: it works **like this**.\n\n- a point\n- another\n\n```\ncode {i}\n```"
                ),
            )
        };
        messages.push(json!({"role": role, "content": content}));
    }
    for chunk in messages.chunks(100) {
        let response = app
            .client
            .post(app.url(&format!("/api/conversations/{id}/messages")))
            .json(&json!({"messages": chunk}))
            .send()
            .await
            .expect("POST messages");
        assert_eq!(response.status().as_u16(), 201);
    }
    let report = browse(
        &app,
        "long_conversation",
        &[("CONVERSATION_ID", &id), ("MESSAGES", "500")],
        &[],
    )
    .await;
    assert_eq!(report["messages"], 500, "{report}");
    assert!(report["frames"].as_u64().unwrap_or(0) > 10, "{report}");
    println!("500-message conversation in Chromium: {report}");
}

#[tokio::test]
async fn search_jumps_to_the_message_and_conversations_are_renamed_and_deleted() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        Reply::text("Feed the starter flour and water every day."),
        Reply::text("In Rome, see the Colosseum."),
    ]);
    let report = browse(&app, "manage", &[], &[]).await;
    let hits = texts(&report["hits"]);
    assert!(!hits.is_empty(), "{report}");
    assert!(hits[0].contains("flour and water"), "{report}");
    assert_eq!(report["jumped"], report["sourdough"], "{report}");
    assert!(
        report["highlighted"]
            .as_str()
            .unwrap_or("")
            .contains("flour and water"),
        "{report}"
    );
    assert_eq!(texts(&report["titles"]), ["Bread"]);
    // The server has what the page set.
    let id = report["sourdough"]
        .as_str()
        .expect("hash")
        .trim_start_matches("#/c/");
    let stored =
        crate::support::get_json(&app.client, &app.url(&format!("/api/conversations/{id}"))).await;
    assert_eq!(stored["title"], "Bread", "{stored}");
    assert_eq!(stored["system_prompt"], "Be brief.", "{stored}");
    let all = crate::support::get_json(&app.client, &app.url("/api/conversations")).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
}

#[tokio::test]
async fn memories_are_listed_searched_and_deleted_and_the_status_view_charts_health() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([
        calls(&[
            (
                "c1",
                "memory_store",
                json!({"text": "The user drinks green tea"}),
            ),
            (
                "c2",
                "memory_store",
                json!({"text": "The user lives in Lyon"}),
            ),
        ]),
        Reply::text("Noted."),
    ]);
    let report = browse(&app, "admin", &[], &[]).await;
    let listed = texts(&report["listed"]);
    assert_eq!(listed.len(), 2, "{report}");
    assert!(
        report["found"]
            .as_str()
            .unwrap_or("")
            .starts_with("The user drinks green tea")
    );
    assert_eq!(
        report["drawn"].as_array().map(Vec::len),
        Some(6),
        "{report}"
    );
    let providers = report["providers"].as_str().expect("providers");
    assert!(
        providers.contains("mock") && providers.contains("closed"),
        "{providers}"
    );
    let mcp = report["mcp"].as_str().expect("mcp");
    assert!(mcp.contains("test") && mcp.contains("ready"), "{mcp}");
    // One turn done: its latency is charted.
    let latency = texts(&report["now"])[1].clone();
    assert!(
        latency.starts_with("p50 ") && !latency.starts_with("p50 0.00"),
        "{latency}"
    );
    // Deleted on the server too.
    assert_eq!(app.health().await.1["memory"]["memories"], 1);
}

#[tokio::test]
async fn after_a_dropped_socket_the_page_reconnects_and_goes_on_in_the_same_conversation() {
    let (app, fake) = chat_app(|_| {}).await;
    fake.mock
        .push([Reply::text("First answer."), Reply::text("Second answer.")]);
    let report = browse(&app, "reconnect", &[], &[]).await;
    assert!(report["sockets"].as_u64().unwrap_or(0) >= 2, "{report}");
    assert!(
        report["offline"]
            .as_str()
            .unwrap_or("")
            .contains("reconnecting"),
        "{report}"
    );
    assert_eq!(report["before"], report["after"], "{report}");
    assert_eq!(report["messages"], 4, "{report}");
    assert_eq!(report["answer"], "Second answer.");
}

#[tokio::test]
async fn a_provider_without_a_key_is_explained_on_the_page_and_in_the_answer() {
    let (app, _fake) = chat_app(|config| {
        if let Some(mock) = config.llm.providers.get_mut("mock") {
            mock.api_key_env = Some("MOCK_PROVIDER_KEY".into());
        }
    })
    .await;
    let report = browse(&app, "unconfigured", &[], &[]).await;
    let banner = report["banner"].as_str().expect("banner");
    assert!(banner.contains("MOCK_PROVIDER_KEY"), "{banner}");
    let alert = report["alert"].as_str().expect("alert");
    assert!(alert.contains("MOCK_PROVIDER_KEY"), "{alert}");
    assert!(alert.contains("local model server"), "{alert}");
    // Nothing was answered: not "partial".
    assert_eq!(report["state"], "Failed before any answer", "{report}");
}

#[tokio::test]
async fn a_tool_that_needs_approval_asks_in_a_dialog_and_runs_only_when_allowed() {
    let (app, fake) = tool_app(|config| {
        config.mcp.servers.insert(
            "test".into(),
            crate::support::stdio_entry(json!({"approval": "ask"})),
        );
    })
    .await;
    for _ in 0..2 {
        fake.mock.push([
            calls(&[("call_1", "echo", json!({"text": "pong"}))]),
            Reply::text("Done."),
        ]);
    }
    let report = browse(&app, "approval", &[], &[]).await;
    let asked = report["asked"].as_str().expect("asked");
    assert!(
        asked.contains("echo") && asked.contains("test") && asked.contains("pong"),
        "{asked}"
    );
    assert!(
        report["allowed"].as_str().unwrap_or("").contains("ok"),
        "{report}"
    );
    assert!(
        report["denied"].as_str().unwrap_or("").contains("denied"),
        "{report}"
    );
    assert_eq!(report["denied_badge"], "denied");
    let calls = app.health().await.1["mcp_stats"]["servers"]["test"]["calls"].clone();
    assert_eq!(calls, 1, "only the allowed call reached the server");
}

#[tokio::test]
async fn an_approval_nobody_answers_closes_its_dialog_when_the_server_withdraws_it() {
    let (app, fake) = tool_app(|config| {
        config.mcp.servers.insert(
            "test".into(),
            crate::support::stdio_entry(json!({"approval": "ask"})),
        );
        config.mcp.approval_timeout = Duration::from_secs(1);
    })
    .await;
    fake.mock.push([
        calls(&[("call_1", "echo", json!({"text": "pong"}))]),
        Reply::Text {
            pieces: vec!["Done.".into()],
            first_byte_delay: Duration::from_secs(4),
            chunk_delay: Duration::ZERO,
        },
    ]);
    let report = browse(&app, "approval_expires", &[], &[]).await;
    assert_eq!(report["still_typing"], 1, "{report}");
    assert_eq!(report["open_dialogs"], 0, "{report}");
    assert_eq!(report["denied_badge"], "denied", "{report}");
    assert!(
        report["notices"].to_string().contains("no one approved"),
        "{report}"
    );
}

#[tokio::test]
async fn a_servers_question_is_a_form_whose_answer_reaches_the_tool() {
    let (app, fake) = crate::support::everything_app(json!({}), Duration::from_secs(60)).await;
    fake.mock.push([
        calls(&[("call_1", "trigger-elicitation-request", json!({}))]),
        Reply::text("Thanks, Ada."),
    ]);
    let report = browse(&app, "question", &[], &[]).await;
    let asked = report["asked"].as_str().expect("asked");
    assert!(
        asked.contains("everything") && asked.contains("Please provide"),
        "{asked}"
    );
    assert!(
        report["classes"].as_str().unwrap_or("").contains("ok"),
        "{report}"
    );
    let result = report["result"].as_str().expect("result");
    assert!(result.contains("User provided"), "{result}");
    let read = crate::support::chat_bodies(&fake)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(read.contains("Ada Lovelace"), "the tool got the answer");
}

#[tokio::test]
async fn a_resource_is_attached_and_a_prompt_fills_the_message_from_the_page() {
    let (app, fake) = tool_app(|_| {}).await;
    fake.mock.push([Reply::text("Friday, Ada.")]);
    let report = browse(&app, "library", &[], &[]).await;
    let listed = report["listed"].to_string();
    assert!(
        listed.contains("Read me") && listed.contains("test://notes/logo"),
        "{report}"
    );
    assert_eq!(texts(&report["chips"]).len(), 1, "{report}");
    assert!(texts(&report["chips"])[0].contains("Read me"), "{report}");
    assert_eq!(report["filled"], "Say hello to Ada.", "{report}");
    assert_eq!(texts(&report["shown"]), ["readme"], "{report}");
    assert_eq!(report["chips_after"], 0, "{report}");
    assert_eq!(texts(&report["reloaded"]), ["readme"], "{report}");
    assert!(
        report["answer"]
            .as_str()
            .unwrap_or("")
            .contains("Friday, Ada."),
        "{report}"
    );
    // The model got the resource with the prompt's text.
    let sent = fake.mock.requests()[0].body["messages"].to_string();
    assert!(
        sent.contains("Say hello to Ada.") && sent.contains("The launch is on Friday."),
        "{sent}"
    );
}

#[tokio::test]
async fn the_status_view_offers_the_login_a_remote_server_needs() {
    let auth = crate::support::start_auth_server().await;
    let entry = crate::support::remote_entry(&auth);
    let (app, _fake) = chat_app(move |config| {
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    crate::support::wait_state(&app, "remote", "needs_login").await;
    let report = browse(&app, "oauth_login", &[], &[]).await;
    assert!(
        report["before"]
            .as_str()
            .unwrap_or("")
            .contains("needs_login"),
        "{report}"
    );
    assert_eq!(report["landed"], "Logged in to remote", "{report}");
    assert!(
        report["url"]
            .as_str()
            .unwrap_or("")
            .contains("/oauth/callback?code="),
        "{report}"
    );
    assert!(
        report["after"].as_str().unwrap_or("").contains("ready"),
        "{report}"
    );
    assert_eq!(
        crate::support::server_health(&app, "remote").await["state"],
        "ready"
    );
}

#[tokio::test]
async fn an_answer_restarted_on_the_fallback_replaces_the_partial_text() {
    let (app, primary, backup) = crate::support::with_backup().await;
    primary.mock.push([Reply::DropAfter { pieces_before: 4 }]);
    backup
        .mock
        .push([slow_text(&["Once ", "upon ", "a time."], 30)]);
    let report = browse(&app, "restart", &[], &[]).await;
    let answer = report["answer"].as_str().expect("answer");
    assert!(answer.contains("Once upon a time."), "{report}");
    assert!(!answer.contains("w0"), "the partial text stayed: {report}");
    assert!(
        report["notices"].to_string().contains("starts again"),
        "{report}"
    );
}

#[tokio::test]
async fn a_dropped_socket_mid_answer_is_followed_again_and_the_answer_shown_whole() {
    let (app, fake) = chat_app(|_| {}).await;
    let pieces: Vec<String> = (0..40).map(|i| format!("n{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    fake.mock.push([slow_text(&refs, 40)]);
    let report = browse(&app, "reattach", &[], &[]).await;
    assert!(report["sockets"].as_u64().unwrap_or(0) >= 2, "{report}");
    let answer = report["answer"].as_str().expect("answer");
    assert_eq!(answer.trim(), pieces.concat().trim(), "{report}");
    assert_eq!(report["alerts"], 0, "{report}");
    assert_eq!(fake.mock.requests().len(), 1);
}
