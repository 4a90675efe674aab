//! The MCP host against the reference server `@modelcontextprotocol/server-everything` (npm,
//! over stdio): its elicitation tool answered through the `elicit` action (accept, decline,
//! an invalid answer then a valid one, no answer), its long-running tool's progress, and the
//! roots its entry lists.

use std::time::Duration;

use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

use crate::support::{
    Fake, Socket, TestApp, calls, chat, chat_bodies, connect, everything_app, next_frame,
    result_read, send, turn_frames,
};

/// Frames of `request_id` until one of chunk type `kind` (included).
async fn until_kind(socket: &mut Socket, request_id: &str, kind: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        if frame["request_id"] != request_id {
            continue;
        }
        let done = frame["chunk"]["type"] == kind || frame["status"] == "error";
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

async fn elicit(socket: &mut Socket, id: &Value, payload: Value) {
    let mut payload = payload;
    payload["elicitation_id"] = id.clone();
    send(
        socket,
        json!({"action": "elicit", "request_id": "r1", "payload": payload}),
    )
    .await;
}

async fn ask_question(app: &TestApp, fake: &Fake) -> (Socket, Value) {
    fake.mock.push([
        calls(&[("call_1", "trigger-elicitation-request", json!({}))]),
        Reply::text("Thanks."),
    ]);
    let mut socket = connect(app).await;
    send(&mut socket, chat("r1", "ask me", json!({}))).await;
    let frames = until_kind(&mut socket, "r1", "elicitation").await;
    let question = frames.last().expect("question").clone();
    assert_eq!(question["chunk"]["type"], "elicitation", "{frames:?}");
    (socket, question["chunk"]["metadata"].clone())
}

#[tokio::test]
async fn a_servers_question_reaches_the_client_and_its_answer_the_tool() {
    let (app, fake) = everything_app(json!({}), Duration::from_secs(60)).await;
    let (mut socket, question) = ask_question(&app, &fake).await;
    assert_eq!(question["server"], "everything");
    assert_eq!(question["call_id"], "call_1");
    assert!(
        question["message"]
            .as_str()
            .unwrap_or("")
            .contains("Please provide")
    );
    assert_eq!(question["schema"]["required"], json!(["name"]));
    assert_eq!(question["schema"]["properties"]["integer"]["maximum"], 100);
    let id = question["elicitation_id"].clone();

    // Does not fit the schema (no name, out of range): a notice, the question stays open.
    elicit(
        &mut socket,
        &id,
        json!({"action": "accept", "content": {"integer": 500}}),
    )
    .await;
    let notice = next_frame(&mut socket).await;
    assert_eq!(
        notice["chunk"]["metadata"]["code"], "invalid_answer",
        "{notice}"
    );
    assert_eq!(notice["chunk"]["metadata"]["question_id"], id);
    assert_eq!(notice["chunk"]["metadata"]["open"], true);
    assert!(
        notice["chunk"]["data"]
            .as_str()
            .unwrap_or("")
            .contains("name"),
        "{notice}"
    );

    elicit(
        &mut socket,
        &id,
        json!({"action": "accept", "content": {"name": "Ada Lovelace", "integer": 7, "check": true}}),
    )
    .await;
    let rest = turn_frames(&mut socket, "r1").await;
    let done = rest
        .iter()
        .find(|f| f["chunk"]["metadata"]["status"] == "ok")
        .expect("the call ends ok");
    assert!(
        done["chunk"]["data"]
            .as_str()
            .unwrap_or("")
            .contains("User provided"),
        "{done}"
    );
    assert_eq!(rest.last().expect("end")["status"], "complete");
    let read = result_read(&fake);
    assert!(
        read.contains("Ada Lovelace") && read.contains("\"integer\": 7"),
        "{read}"
    );
}

#[tokio::test]
async fn a_declined_or_unanswered_question_tells_the_server_so() {
    let (app, fake) = everything_app(json!({}), Duration::from_millis(500)).await;
    let (mut socket, question) = ask_question(&app, &fake).await;
    elicit(
        &mut socket,
        &question["elicitation_id"],
        json!({"action": "decline"}),
    )
    .await;
    turn_frames(&mut socket, "r1").await;
    assert!(
        result_read(&fake).contains("declined"),
        "{}",
        result_read(&fake)
    );

    // No answer within mcp.elicitation_timeout: cancelled.
    let (mut socket, question) = ask_question(&app, &fake).await;
    let rest = turn_frames(&mut socket, "r1").await;
    assert_eq!(rest.last().expect("end")["status"], "complete");
    assert!(
        rest.iter()
            .any(|f| f["chunk"]["metadata"]["code"] == "question_closed"
                && f["chunk"]["metadata"]["question_id"] == question["elicitation_id"]),
        "{rest:?}"
    );
    assert!(
        result_read(&fake).contains("cancelled"),
        "{}",
        result_read(&fake)
    );
    assert_eq!(
        app.health().await.1["websocket_stats"]["turns"]["elicitations_waiting"],
        0
    );
}

#[tokio::test]
async fn a_long_calls_progress_arrives_before_its_result() {
    let (app, fake) = everything_app(json!({}), Duration::from_secs(60)).await;
    fake.mock.push([
        calls(&[(
            "call_1",
            "trigger-long-running-operation",
            json!({"duration": 2, "steps": 4}),
        )]),
        Reply::text("Done."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "take your time", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let statuses: Vec<&Value> = frames
        .iter()
        .filter(|f| f["chunk"]["type"] == "tool_execution")
        .map(|f| &f["chunk"]["metadata"]["status"])
        .collect();
    let progress: Vec<&Value> = frames
        .iter()
        .filter(|f| f["chunk"]["metadata"]["status"] == "progress")
        .map(|f| &f["chunk"]["metadata"])
        .collect();
    // Steps of 0.5 s, shown at most every 0.25 s; the last may race the result.
    assert!(progress.len() >= 3, "{frames:?}");
    assert_eq!(progress[0]["total"], 4.0);
    assert_eq!(progress[0]["tool"], "trigger-long-running-operation");
    let steps: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["progress"].as_f64())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(statuses.first().copied(), Some(&json!("running")));
    assert_eq!(statuses.last().copied(), Some(&json!("ok")), "{statuses:?}");
}

#[tokio::test]
async fn the_roots_of_an_entry_are_what_the_server_lists() {
    let (app, fake) = everything_app(
        json!({"roots": ["/tmp", "/srv/my notes"]}),
        Duration::from_secs(60),
    )
    .await;
    fake.mock.push([
        calls(&[("call_1", "get-roots-list", json!({}))]),
        Reply::text("Listed."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "roots?", json!({}))).await;
    turn_frames(&mut socket, "r1").await;
    let read = result_read(&fake);
    assert!(read.contains("file:///tmp"), "{read}");
    assert!(read.contains("file:///srv/my%20notes"), "{read}");
}

#[tokio::test]
async fn on_the_openai_door_a_servers_question_is_declined() {
    let (app, fake) = everything_app(json!({}), Duration::from_secs(60)).await;
    fake.mock.push([
        calls(&[("call_1", "trigger-elicitation-request", json!({}))]),
        Reply::text("Thanks."),
    ]);
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "ask"}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        result_read(&fake).contains("declined"),
        "{}",
        result_read(&fake)
    );
}

#[tokio::test]
async fn a_server_with_sampling_asks_our_model_with_its_own_system_prompt() {
    let (app, fake) = everything_app(json!({"sampling": true}), Duration::from_secs(60)).await;
    fake.mock.push([
        calls(&[(
            "call_1",
            "trigger-sampling-request",
            json!({"prompt": "Say hi", "maxTokens": 50}),
        )]),
        Reply::text("hello from the host"),
        Reply::text("Done."),
    ]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "sample", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let sampled = frames
        .iter()
        .find(|f| f["chunk"]["metadata"]["status"] == "sampling")
        .unwrap_or_else(|| panic!("a sampling step: {frames:?}"));
    assert_eq!(
        sampled["chunk"]["metadata"]["tool"],
        "trigger-sampling-request"
    );
    assert_eq!(frames.last().expect("end")["status"], "complete");

    let bodies = chat_bodies(&fake);
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let sampling = &bodies[1];
    let messages = sampling["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], "You are a helpful test server.");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap_or("")
            .contains("Say hi")
    );
    assert!(
        sampling
            .get("tools")
            .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty))
    );
    let limit = sampling
        .get("max_completion_tokens")
        .or_else(|| sampling.get("max_tokens"))
        .cloned();
    assert_eq!(limit, Some(json!(50)), "{sampling}");
    let read = result_read(&fake);
    assert!(read.contains("hello from the host"), "{read}");
}

#[tokio::test]
async fn without_sampling_the_server_keeps_its_sampling_tool_to_itself() {
    let (app, fake) = everything_app(json!({}), Duration::from_secs(60)).await;
    fake.mock.push([Reply::text("Hi.")]);
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r1", "hello", json!({}))).await;
    turn_frames(&mut socket, "r1").await;
    let offered: Vec<String> = chat_bodies(&fake)[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(String::from))
        .collect();
    assert!(
        offered.iter().any(|t| t == "trigger-elicitation-request"),
        "{offered:?}"
    );
    assert!(
        !offered.iter().any(|t| t == "trigger-sampling-request"),
        "{offered:?}"
    );
}
