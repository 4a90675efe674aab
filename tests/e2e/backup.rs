//! `mcp-platform backup PATH`: a consistent copy taken while turns are being written opens,
//! passes `integrity_check` and holds every turn acknowledged before it began; it never
//! overwrites a file.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{BIN, chat, chat_app, connect, eventually, send, turn_frames};

#[tokio::test]
async fn a_backup_under_load_holds_every_acknowledged_turn() {
    let (app, _fake) = chat_app(|_| {}).await;
    // Turns one after another, the acknowledged ones (complete received) recorded.
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut socket = connect(&app).await;
    let done = acknowledged.clone();
    let load = tokio::spawn(async move {
        let mut conversation = Value::Null;
        for i in 0..60 {
            let request = format!("turn-{i}");
            let extra = if conversation.is_null() {
                json!({})
            } else {
                json!({"conversation_id": conversation})
            };
            send(&mut socket, chat(&request, "count", extra)).await;
            let frames = turn_frames(&mut socket, &request).await;
            conversation = frames[0]["chunk"]["metadata"]["conversation_id"].clone();
            if frames.last().expect("end")["status"] == "complete" {
                let id = conversation.as_str().unwrap_or_default().to_string();
                done.lock().expect("lock").push((id, request));
            }
        }
    });
    // Once some turns are in, back up while the others are being written.
    eventually("ten turns acknowledged", || async {
        (acknowledged.lock().expect("lock").len() >= 10).then_some(())
    })
    .await;
    let before: Vec<(String, String)> = acknowledged.lock().expect("lock").clone();
    let target = app.dir.path().join("backup.db");
    let (source, copy) = (app.db_path.clone(), target.clone());
    let report =
        tokio::task::spawn_blocking(move || mcp_platform::store::backup::backup(&source, &copy))
            .await
            .expect("task")
            .expect("backup");
    load.await.expect("load");
    assert!(report.messages >= 20, "{report:?}");

    let copy = rusqlite::Connection::open(&target).expect("open the copy");
    let verdict: String = copy
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("check");
    assert_eq!(verdict, "ok");
    for (conversation, request) in &before {
        let answered: i64 = copy
            .query_row(
                "SELECT count(*) FROM messages WHERE conversation_id = ?1 AND request_id = ?2
                 AND role = 'assistant' AND status = 'complete'",
                [conversation, request],
                |row| row.get(0),
            )
            .expect("query");
        assert_eq!(answered, 1, "{request} is missing from the backup");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_backup_command_writes_a_checked_copy_and_refuses_to_overwrite() {
    let (app, _fake) = chat_app(|_| {}).await;
    let mut socket = connect(&app).await;
    send(&mut socket, chat("r", "hello", json!({}))).await;
    turn_frames(&mut socket, "r").await;
    let config = crate::support::config_for(&app);
    let target = app.dir.path().join("copy.db");
    let run = || {
        std::process::Command::new(BIN)
            .args(["backup"])
            .arg(&target)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("the command runs")
    };
    let first = run();
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        said.contains("1 conversations, 2 messages") && said.contains("integrity_check ok"),
        "{said}"
    );
    let again = run();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{again:?}"
    );
    app.shutdown().await;
}
