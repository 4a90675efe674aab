//! `mcp-platform export` and `import`: conversations (with tool calls and results), their
//! messages and memories written as JSON Lines while the server runs, read into another
//! server's database whole; importing again changes nothing; a bad file writes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::{
    BIN, calls, chat, chat_app, config_for, connect, send, tool_frames, turn_frames,
};
use mcp_platform::mock_provider::Reply;
use serde_json::{Value, json};

fn run(args: &[&str], file: &Path, config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg(file)
        .arg("--config")
        .arg(config)
        .output()
        .expect("the command runs")
}

fn said(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

/// A message as both servers must show it (ids and times may differ: message ids are the
/// importing database's own).
fn essence(message: &Value) -> Value {
    json!({
        "seq": message["seq"], "role": message["role"], "content": message["content"],
        "tool_calls": message["tool_calls"], "tool_call_id": message["tool_call_id"],
        "status": message["status"], "request_id": message["request_id"],
        "created_at": message["created_at"],
    })
}

#[tokio::test]
async fn export_then_import_round_trips_conversations_and_memories() {
    let (source, fake) = chat_app(|_| {}).await;
    fake.mock.push([
        calls(&[(
            "m1",
            "memory_store",
            json!({"text": "The user's cat is called Miso", "tags": ["pets"]}),
        )]),
        Reply::text("I will remember Miso."),
    ]);
    let mut socket = connect(&source).await;
    send(&mut socket, chat("r1", "my cat is Miso", json!({}))).await;
    let frames = turn_frames(&mut socket, "r1").await;
    let conversation = frames[0]["chunk"]["metadata"]["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_string();
    send(
        &mut socket,
        chat("r2", "and now?", json!({"conversation_id": conversation})),
    )
    .await;
    turn_frames(&mut socket, "r2").await;
    send(&mut socket, chat("r3", "another chat", json!({}))).await;
    turn_frames(&mut socket, "r3").await;
    let original = source.history(&conversation).await;
    assert_eq!(original.len(), 6, "{original:?}");

    // Exported while the server runs, over a file (and a leftover partial one) anyone could
    // read: the export is left readable by its owner only.
    let file = source.dir.path().join("export.jsonl");
    for stale in [file.clone(), source.dir.path().join("export.jsonl.partial")] {
        std::fs::write(&stale, "old").expect("stale file");
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let exported = run(&["export", "--output"], &file, &config_for(&source));
    assert!(exported.status.success(), "{}", said(&exported));
    let mode = std::fs::metadata(&file)
        .expect("export")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert!(
        said(&exported).contains("exported 2 conversations (8 messages) and 1 memories"),
        "{}",
        said(&exported)
    );
    let text = std::fs::read_to_string(&file).expect("export file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["format"], "mcp-platform.export");
    assert_eq!(lines[0]["version"], 1);
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(kinds, ["header", "conversation", "conversation", "memory"]);
    assert_eq!(lines[3]["text"], "The user's cat is called Miso");
    assert_eq!(lines[3]["owner"], "local");

    // Into a fresh server's database, beside that server.
    let (target, fake) = chat_app(|_| {}).await;
    let target_config = config_for(&target);
    let imported = run(&["import"], &file, &target_config);
    assert!(imported.status.success(), "{}", said(&imported));
    assert!(
        said(&imported).contains("imported 2 conversations (8 messages) and 1 memories"),
        "{}",
        said(&imported)
    );
    let copy = target.history(&conversation).await;
    let essence_of = |messages: &[Value]| messages.iter().map(essence).collect::<Vec<_>>();
    assert_eq!(essence_of(&copy), essence_of(&original));

    // The memory came with a vector: the new server's memory_find finds it.
    fake.mock.push([
        calls(&[("f1", "memory_find", json!({"query": "cat called"}))]),
        Reply::text("Miso."),
    ]);
    let mut socket = connect(&target).await;
    send(&mut socket, chat("q", "what is my cat called?", json!({}))).await;
    let frames = turn_frames(&mut socket, "q").await;
    let tools = tool_frames(&frames);
    let result = tools.last().expect("memory_find ended");
    assert_eq!(result["chunk"]["metadata"]["status"], "ok", "{result}");
    assert!(
        result["chunk"]["data"]
            .as_str()
            .unwrap_or_default()
            .contains("Miso"),
        "{result}"
    );

    // Again: everything is already there.
    let again = run(&["import"], &file, &target_config);
    assert!(again.status.success(), "{}", said(&again));
    assert!(
        said(&again).contains("imported 0 conversations (0 messages) and 0 memories; already there: 2 conversations, 1 memories"),
        "{}",
        said(&again)
    );
    assert_eq!(target.history(&conversation).await.len(), 6);
    source.shutdown().await;
    target.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_or_an_unknown_key_is_refused_and_nothing_is_written() {
    let (app, _fake) = chat_app(|_| {}).await;
    let config = config_for(&app);
    let dir = app.dir.path();
    let good_conversation = json!({"type": "conversation", "id": "imported-1", "owner": "local",
        "created_at": 1, "updated_at": 2,
        "messages": [{"seq": 1, "role": "user", "content": "hi", "created_at": 1}]});
    let header = json!({"type": "header", "format": "mcp-platform.export", "version": 1,
        "exported_at": 3, "key": null});
    let cases = [
        (
            vec![
                header.clone(),
                good_conversation.clone(),
                json!({"type": "conversation", "id": "x"}),
            ],
            "line 3",
        ),
        (vec![good_conversation.clone()], "header"),
        (
            vec![
                json!({"type": "header", "format": "mcp-platform.export", "version": 9,
                "exported_at": 3, "key": null}),
            ],
            "version 9",
        ),
        (
            vec![
                header.clone(),
                good_conversation.clone(),
                json!({"type": "conversation",
                "id": "imported-2", "owner": "local", "created_at": 1, "updated_at": 2,
                "messages": [{"seq": 2, "role": "user", "content": "a", "created_at": 1},
                             {"seq": 1, "role": "user", "content": "b", "created_at": 1}]}),
            ],
            "seqs must increase",
        ),
        (
            vec![
                header.clone(),
                json!({"type": "memory", "owner": "nobody", "text": "t",
                "created_at": 1}),
                good_conversation.clone(),
            ],
            "no key is named `nobody`",
        ),
    ];
    for (n, (records, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad-{n}.jsonl"));
        let text = records
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&file, text).expect("write");
        let output = run(&["import"], &file, &config);
        assert_eq!(output.status.code(), Some(2), "case {n}: {}", said(&output));
        assert!(
            said(&output).contains(expected),
            "case {n}: {}",
            said(&output)
        );
    }
    // Not one of those files wrote its good conversation.
    let client = reqwest::Client::new();
    let response = client
        .get(app.url("/api/conversations/imported-1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 404);

    let unknown = run(
        &["export", "--key", "nobody", "--output"],
        &dir.join("x.jsonl"),
        &config,
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        said(&unknown).contains("no key is named `nobody` here (keys: local)"),
        "{}",
        said(&unknown)
    );
    assert!(!dir.join("x.jsonl").exists() && !dir.join("x.jsonl.partial").exists());
    app.shutdown().await;
}
