use rusqlite::Connection;

use crate::support::spawn_app;

#[tokio::test]
async fn graceful_shutdown_leaves_the_wal_checkpointed_and_the_data_in_the_file() {
    let app = spawn_app().await;
    let id = app.create_conversation().await;
    for i in 0..50 {
        assert_eq!(app.append(&id, &format!("m{i}")).await.0, 201);
    }
    let db = app.db_path.clone();
    let wal = db.with_file_name("chat.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0,
        "writes went to the WAL first"
    );
    let _dir = app.shutdown().await;
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "WAL checkpointed and truncated"
    );
    // Read the main file alone, as a backup tool copying only chat.db would.
    let copy = db.with_file_name("copy.db");
    std::fs::copy(&db, &copy).expect("copy the main file only");
    let conn = Connection::open(&copy).expect("open the copy");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 50);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
}
