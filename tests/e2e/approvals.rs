//! Tool approval (`approval: auto | ask | deny`): the turn asks with an `approval_required`
//! frame, waits for `approve`, and a call that is not allowed never reaches its server.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Fake, Socket, TestApp, calls, chat, connect, next_frame, result_read, send, stdio_entry,
    tool_app, turn_frames,
};

/// The app with the test server `test` under `entry` (merged into its stdio entry).
async fn app_with(entry: Value, timeout: Duration) -> (TestApp, Fake) {
    tool_app(move |config| {
        config.mcp.servers.insert("test".into(), stdio_entry(entry));
        config.mcp.approval_timeout = timeout;
    })
    .await
}

/// The model calls `echo` once, then answers.
fn echo_then_answer(fake: &Fake) {
    fake.mock.push([
        calls(&[("call_1", "echo", json!({"text": "pong"}))]),
        Reply::text("Done."),
    ]);
}

/// Frames of `request_id` until one satisfies `stop` (included).
async fn frames_until(
    socket: &mut Socket,
    request_id: &str,
    stop: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        if frame["request_id"] != request_id {
            continue;
        }
        let done = stop(&frame);
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

fn is_question(frame: &Value) -> bool {
    frame["chunk"]["type"] == "approval_required"
}

async fn approve(socket: &mut Socket, request_id: &str, approval_id: &Value, payload: Value) {
    let mut payload = payload;
    payload["approval_id"] = approval_id.clone();
    send(
        socket,
        json!({"action": "approve", "request_id": request_id, "payload": payload}),
    )
    .await;
}

fn finished(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| {
            f["chunk"]["type"] == "tool_execution" && f["chunk"]["metadata"]["status"] != "running"
        })
        .collect()
}

async fn server_calls(app: &TestApp) -> u64 {
    app.health().await.1["mcp_stats"]["servers"]["test"]["calls"]
        .as_u64()
        .expect("calls")
}

#[tokio::test]
async fn ask_waits_for_the_user_and_allow_runs_the_call() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let asked = frames_until(&mut socket, "r1", is_question).await;
    let question = &asked.last().expect("question")["chunk"];
    assert_eq!(question["data"], "");
    let meta = &question["metadata"];
    assert_eq!(meta["server"], "test");
    assert_eq!(meta["tool"], "echo");
    assert_eq!(meta["call_id"], "call_1");
    assert_eq!(meta["arguments"], json!({"text": "pong"}));
    assert!(meta["approval_id"].as_str().is_some_and(|id| id.len() > 20));
    // Nothing ran while it waited.
    assert_eq!(server_calls(&app).await, 0);
    assert_eq!(
        app.health().await.1["websocket_stats"]["turns"]["approvals_waiting"],
        1
    );

    approve(
        &mut socket,
        "r1",
        &meta["approval_id"],
        json!({"decision": "allow"}),
    )
    .await;
    let rest = turn_frames(&mut socket, "r1").await;
    let done = finished(&rest);
    assert_eq!(done.len(), 1, "{rest:?}");
    assert_eq!(done[0]["chunk"]["metadata"]["status"], "ok");
    assert_eq!(done[0]["chunk"]["data"], "pong");
    assert_eq!(rest.last().expect("end")["status"], "complete");
    assert_eq!(server_calls(&app).await, 1);
    assert_eq!(
        app.health().await.1["websocket_stats"]["turns"]["approvals_waiting"],
        0
    );
}

#[tokio::test]
async fn deny_by_the_user_or_by_policy_never_reaches_the_server_and_the_model_reads_why() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let asked = frames_until(&mut socket, "r1", is_question).await;
    let id = asked.last().expect("question")["chunk"]["metadata"]["approval_id"].clone();
    approve(&mut socket, "r1", &id, json!({"decision": "deny"})).await;
    let rest = turn_frames(&mut socket, "r1").await;
    let done = finished(&rest);
    assert_eq!(done[0]["chunk"]["metadata"]["status"], "denied", "{rest:?}");
    assert_eq!(rest.last().expect("end")["status"], "complete");
    assert!(result_read(&fake).contains("the user declined"));
    assert_eq!(server_calls(&app).await, 0);

    // A per-tool `deny` (over `auto`): not asked, not run.
    let (app, fake) = app_with(
        json!({"approval": "auto", "tools": {"echo": "deny"}}),
        Duration::from_secs(60),
    )
    .await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert!(!frames.iter().any(is_question), "{frames:?}");
    assert_eq!(
        finished(&frames)[0]["chunk"]["metadata"]["status"],
        "denied"
    );
    assert!(result_read(&fake).contains("approval policy"));
    assert_eq!(server_calls(&app).await, 0);
}

#[tokio::test]
async fn an_unanswered_question_is_denied_at_the_timeout() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_millis(300)).await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    assert!(frames.iter().any(is_question));
    assert_eq!(
        finished(&frames)[0]["chunk"]["metadata"]["status"],
        "denied"
    );
    assert_eq!(frames.last().expect("end")["status"], "complete");
    assert!(result_read(&fake).contains("no one approved"));
    assert_eq!(server_calls(&app).await, 0);
    let id = frames.iter().find(|f| is_question(f)).expect("question")["chunk"]["metadata"]["approval_id"].clone();
    // The client is told the question closed, so it can close its dialog.
    let closed = frames
        .iter()
        .find(|f| f["chunk"]["metadata"]["code"] == "question_closed")
        .expect("a question_closed notice");
    assert_eq!(closed["chunk"]["metadata"]["question_id"], id, "{closed}");
    assert_eq!(closed["chunk"]["metadata"]["open"], false);
    // Answering it now: too late, and said so (the turn is over: an error).
    approve(&mut socket, "r1", &id, json!({"decision": "allow"})).await;
    let late = next_frame(&mut socket).await;
    assert_eq!(late["status"], "error", "{late}");
    assert_eq!(late["chunk"]["code"], "not_found");
}

#[tokio::test]
async fn a_remembered_decision_holds_for_the_conversation_only() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    echo_then_answer(&fake);
    echo_then_answer(&fake);
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let asked = frames_until(&mut socket, "r1", is_question).await;
    let conversation = asked[0]["chunk"]["metadata"]["conversation_id"].clone();
    let id = asked.last().expect("question")["chunk"]["metadata"]["approval_id"].clone();
    approve(
        &mut socket,
        "r1",
        &id,
        json!({"decision": "allow", "remember": "conversation"}),
    )
    .await;
    turn_frames(&mut socket, "r1").await;
    // Same conversation: not asked again.
    send(
        &mut socket,
        chat("r2", "again", json!({"conversation_id": conversation})),
    )
    .await;
    let second = turn_frames(&mut socket, "r2").await;
    assert!(!second.iter().any(is_question), "{second:?}");
    assert_eq!(finished(&second)[0]["chunk"]["metadata"]["status"], "ok");
    // Another conversation: asked.
    send(&mut socket, chat("r3", "elsewhere", json!({}))).await;
    let third = frames_until(&mut socket, "r3", is_question).await;
    assert!(is_question(third.last().expect("question")));
    assert_eq!(server_calls(&app).await, 2);
}

#[tokio::test]
async fn cancelling_a_turn_that_waits_for_approval_ends_it_and_nothing_runs() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    frames_until(&mut socket, "r1", is_question).await;
    send(&mut socket, json!({"action": "cancel", "request_id": "r1"})).await;
    let rest = turn_frames(&mut socket, "r1").await;
    let end = rest.last().expect("end");
    assert_eq!(end["chunk"]["code"], "cancelled", "{rest:?}");
    assert_eq!(server_calls(&app).await, 0);
    assert_eq!(
        app.health().await.1["websocket_stats"]["turns"]["approvals_waiting"],
        0
    );
}

#[tokio::test]
async fn a_wrong_answer_is_a_notice_on_the_turn_and_the_question_stays_open() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    echo_then_answer(&fake);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "echo pong", json!({}))).await;
    let asked = frames_until(&mut socket, "r1", is_question).await;
    let id = asked.last().expect("question")["chunk"]["metadata"]["approval_id"].clone();
    approve(
        &mut socket,
        "r1",
        &json!("appr_unknown"),
        json!({"decision": "allow"}),
    )
    .await;
    let notice = next_frame(&mut socket).await;
    assert_eq!(notice["request_id"], "r1", "{notice}");
    assert_eq!(notice["chunk"]["type"], "notice");
    assert_eq!(notice["chunk"]["metadata"]["code"], "invalid_answer");
    // It names the question it was about, not the one still waiting.
    assert_eq!(notice["chunk"]["metadata"]["question_id"], "appr_unknown");
    assert_eq!(notice["chunk"]["metadata"]["open"], false);
    // Malformed: an error frame, the turn unaffected.
    send(
        &mut socket,
        json!({"action": "approve", "request_id": "r1", "payload": {"approval_id": id, "decision": "maybe"}}),
    )
    .await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused["chunk"]["code"], "invalid_request", "{refused}");
    approve(&mut socket, "r1", &id, json!({"decision": "allow"})).await;
    let rest = turn_frames(&mut socket, "r1").await;
    assert_eq!(finished(&rest)[0]["chunk"]["metadata"]["status"], "ok");
}

#[tokio::test]
async fn on_the_openai_door_ask_means_deny_unless_the_request_allows_it() {
    let (app, fake) = app_with(json!({"approval": "ask"}), Duration::from_secs(60)).await;
    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": "echo"}]});
    for (header, expected) in [(None, "needs the user's approval"), (Some("allow"), "pong")] {
        echo_then_answer(&fake);
        let mut request = app.client.post(app.url("/v1/chat/completions")).json(&body);
        if let Some(value) = header {
            request = request.header("X-Approve-Tools", value);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status().as_u16(), 200);
        assert!(result_read(&fake).contains(expected), "{header:?}");
    }
    assert_eq!(server_calls(&app).await, 1);
    let bad = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("X-Approve-Tools", "sometimes")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status().as_u16(), 400);
}
