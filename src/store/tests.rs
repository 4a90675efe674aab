use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::RepositoryConfig;

struct TempStore {
    store: Store,
    dir: tempfile::TempDir,
}

fn config_in(dir: &Path) -> RepositoryConfig {
    RepositoryConfig {
        path: dir.join("nested/chat.db"),
        ..RepositoryConfig::default()
    }
}

fn open_temp() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&config_in(dir.path())).expect("store opens");
    TempStore { store, dir }
}

fn user(text: &str) -> NewMessage {
    NewMessage::new(Role::User, text)
}

#[tokio::test]
async fn the_file_is_created_with_mode_0600_in_a_new_directory() {
    use std::os::unix::fs::PermissionsExt;
    let t = open_temp();
    let mode = std::fs::metadata(t.store.path())
        .expect("file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_vec0_knn_query_works_on_every_reader_connection() {
    let t = open_temp();
    t.store
        .write(|tx| {
            tx.execute_batch(
                "CREATE VIRTUAL TABLE v USING vec0(embedding float[3]);
                 INSERT INTO v (rowid, embedding) VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]');",
            )?;
            Ok(())
        })
        .await
        .expect("vec0 table written");
    // 16 reads held at once by a barrier, so each runs on a different pooled connection.
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let reads: Vec<_> = (0..16)
        .map(|_| {
            let (store, barrier) = (t.store.clone(), barrier.clone());
            tokio::spawn(async move {
                store
                    .read(move |conn| {
                        barrier.wait();
                        let mut st = conn.prepare(
                            "SELECT rowid FROM v WHERE embedding MATCH '[1,0,0]' ORDER BY distance LIMIT 2",
                        )?;
                        let ids = st.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
                        // 16 closures inside one barrier hold 16 distinct connections at once.
                        let worker = std::thread::current().name().map(str::to_string);
                        Ok((ids, worker))
                    })
                    .await
            })
        })
        .collect();
    let mut connections = std::collections::HashSet::new();
    for read in reads {
        let (hits, worker) = read.await.expect("task").expect("knn from a reader");
        assert_eq!(hits, vec![1, 3]);
        connections.insert(worker);
    }
    assert_eq!(
        connections.len(),
        16,
        "every reader worker (and connection) ran the query"
    );
}

#[tokio::test]
async fn readers_refuse_writes_on_every_connection() {
    let t = open_temp();
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let (store, barrier) = (t.store.clone(), barrier.clone());
            tokio::spawn(async move {
                store
                    .read(move |conn| {
                        barrier.wait();
                        Ok(conn.execute(
                            "INSERT INTO conversations (id, created_at, updated_at) VALUES (?1, 0, 0)",
                            [format!("x{i}")],
                        )?)
                    })
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        let err = attempt
            .await
            .expect("task")
            .expect_err("a reader must not write");
        assert!(
            err.to_string().contains("readonly") || err.to_string().contains("read-only"),
            "{err}"
        );
    }
    assert!(
        t.store.health().healthy,
        "a refused write is not a database fault"
    );
}

#[tokio::test]
async fn appended_messages_get_contiguous_order_under_concurrent_writers() {
    let t = open_temp();
    let conversation = t.store.conversations().create(None).await.expect("created");
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let (store, id) = (t.store.clone(), conversation.id.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let batch = vec![
                    user(&format!("w{writer} m{i}")),
                    NewMessage::new(Role::Assistant, "ok"),
                ];
                store
                    .conversations()
                    .append(&id, batch)
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let history = t
        .store
        .conversations()
        .history(&conversation.id)
        .await
        .expect("history");
    assert_eq!(history.len(), 400);
    assert!(
        history.iter().zip(1..).all(|(m, seq)| m.seq == seq),
        "seq must be 1..=400 without gaps"
    );
    // A batch stays together: each user message is directly followed by its answer.
    assert!(
        history
            .chunks(2)
            .all(|pair| pair[0].role == Role::User && pair[1].role == Role::Assistant)
    );
    let stored = t
        .store
        .conversations()
        .get(&conversation.id)
        .await
        .expect("get");
    assert_eq!(stored.message_count, 400);
}

#[tokio::test]
async fn a_repeated_request_id_is_refused_and_the_batch_rolled_back() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(Some("t".into())).await.expect("created");
    repo.append(&c.id, vec![user("hi").with_request_id("r1")])
        .await
        .expect("first");
    let again = vec![
        NewMessage::new(Role::Assistant, "x"),
        user("hi").with_request_id("r1"),
    ];
    let err = repo.append(&c.id, again).await.expect_err("duplicate");
    assert!(
        matches!(err, StoreError::DuplicateRequest { ref request_id } if request_id == "r1"),
        "{err}"
    );
    assert_eq!(
        repo.history(&c.id).await.expect("history").len(),
        1,
        "the batch is all or nothing"
    );
    let found = repo.find_by_request(&c.id, "r1").await.expect("find");
    assert_eq!(found.len(), 1);
    assert!(
        repo.find_by_request(&c.id, "nope")
            .await
            .expect("find")
            .is_empty()
    );
}

#[tokio::test]
async fn flat_tool_calls_are_stored_nested_and_malformed_ones_refused() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    let mut assistant = NewMessage::new(Role::Assistant, "");
    assistant.tool_calls = Some(serde_json::json!([
        {"id": "call_1", "name": "echo", "arguments": "{\"text\": \"x\"}"},
        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": {"tz": "UTC"}}}
    ]));
    let stored = repo.append(&c.id, vec![assistant]).await.expect("append");
    assert_eq!(
        stored[0].tool_calls,
        Some(serde_json::json!([
            {"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": "{\"text\": \"x\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{\"tz\":\"UTC\"}"}}
        ]))
    );
    let mut nameless = NewMessage::new(Role::Assistant, "");
    nameless.tool_calls = Some(serde_json::json!([{"id": "c", "function": {"arguments": "{}"}}]));
    let error = repo
        .append(&c.id, vec![nameless])
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("tool_calls[0]"), "{error}");
}

#[tokio::test]
async fn tool_calls_and_usage_round_trip_as_json() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    let mut assistant = NewMessage::new(Role::Assistant, "");
    assistant.tool_calls = Some(serde_json::json!([
        {"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": "{}"}}
    ]));
    assistant.usage = Some(serde_json::json!({"prompt_tokens": 3}));
    let mut tool = NewMessage::new(Role::Tool, "echoed");
    tool.tool_call_id = Some("call_1".into());
    let stored = repo
        .append(&c.id, vec![assistant.clone(), tool])
        .await
        .expect("append");
    let history = repo.history(&c.id).await.expect("history");
    assert_eq!(history, stored);
    assert_eq!(history[0].tool_calls, assistant.tool_calls);
    assert_eq!(history[1].tool_call_id.as_deref(), Some("call_1"));
}

#[tokio::test]
async fn malformed_messages_are_refused_before_touching_the_database() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    let orphan_tool = NewMessage::new(Role::Tool, "result");
    assert!(matches!(
        repo.append(&c.id, vec![orphan_tool]).await,
        Err(StoreError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn missing_conversations_are_not_found() {
    let t = open_temp();
    let repo = t.store.conversations();
    let ghost = ConversationId::generate();
    assert!(matches!(
        repo.get(&ghost).await,
        Err(StoreError::NotFound("conversation"))
    ));
    assert!(matches!(
        repo.append(&ghost, vec![user("x")]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        repo.history(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        repo.delete(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn conversations_page_by_recent_activity_and_delete_cascades() {
    let t = open_temp();
    let repo = t.store.conversations();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(repo.create(None).await.expect("created").id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    repo.append(&ids[0], vec![user("bump")])
        .await
        .expect("append");
    let first = repo.list(2, None).await.expect("page 1");
    assert_eq!(
        first.items[0].id, ids[0],
        "the conversation just written to comes first"
    );
    let second = repo
        .list(2, first.next_cursor.clone())
        .await
        .expect("page 2");
    let third = repo
        .list(2, second.next_cursor.clone())
        .await
        .expect("page 3");
    assert_eq!(third.next_cursor, None);
    let seen: Vec<_> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen[1..],
        [
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone()
        ]
    );

    repo.delete(&ids[0]).await.expect("deleted");
    let count: i64 = t
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))
        .await
        .expect("count");
    assert_eq!(count, 0, "messages go with their conversation");
    assert!(matches!(
        repo.list(2, Some("garbage".into())).await,
        Err(StoreError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn history_pages_walk_backwards_in_order() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    repo.append(&c.id, (0..5).map(|i| user(&i.to_string())).collect())
        .await
        .expect("append");
    let latest = repo.history_page(&c.id, None, 2).await.expect("page");
    assert_eq!(
        latest.items.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let before: i64 = latest
        .next_cursor
        .as_deref()
        .expect("more")
        .parse()
        .expect("seq");
    let older = repo
        .history_page(&c.id, Some(before), 10)
        .await
        .expect("page");
    assert_eq!(
        older.items.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(older.next_cursor, None);
}

#[tokio::test]
async fn stats_count_pool_use_and_the_health_probe_passes() {
    let t = open_temp();
    let report = t.store.check_health().await;
    assert!(report.healthy, "{report:?}");
    let stats = t.store.stats();
    assert_eq!((stats.readers.size, stats.writers.size), (16, 4));
    assert!(stats.readers.acquire_wait_ms.count >= 1);
    assert!(stats.write_gate.wait_ms.count >= 1);
    assert!(
        stats.wal_bytes > 0,
        "the probe's write went through the WAL"
    );
}

#[tokio::test]
async fn close_checkpoints_and_truncates_the_wal() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    repo.append(&c.id, vec![user("durable")])
        .await
        .expect("append");
    t.store.close(Duration::from_secs(5)).await.expect("closed");
    let wal = t.dir.path().join("nested/chat.db-wal");
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
    assert!(matches!(repo.get(&c.id).await, Err(StoreError::Closed)));
}

#[tokio::test]
async fn a_background_checkpoint_moves_commits_into_the_main_file() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("created");
    repo.append(&c.id, (0..20).map(|i| user(&i.to_string())).collect())
        .await
        .expect("append");
    t.store.checkpoint().await.expect("checkpoint");
    // The main file alone (as a backup copying only chat.db would see it) has the rows.
    let copy = t.dir.path().join("copy.db");
    std::fs::copy(t.store.path(), &copy).expect("copy");
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 20);
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("readable")
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_and_left_untouched() {
    let t = open_temp();
    let path = t.store.path().to_path_buf();
    t.store
        .write(|tx| {
            tx.execute(
                "INSERT INTO schema_migrations VALUES (99, 'future', 'x', 0)",
                [],
            )?;
            Ok(())
        })
        .await
        .expect("future row");
    t.store.close(Duration::from_secs(5)).await.expect("closed");
    drop(t.store);
    let before = file_bytes(&path);
    let err = Store::open(&config_in(t.dir.path()))
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::UnknownMigration { version: 99, .. }),
        "{err}"
    );
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(dir.path());
    std::fs::create_dir_all(dir.path().join("nested")).expect("dir");
    let garbage =
        b"this is certainly not a sqlite database, just some text padding it out".repeat(100);
    std::fs::write(&config.path, &garbage).expect("write");
    let err = Store::open(&config).err().expect("refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
    assert_eq!(file_bytes(&config.path), garbage);
}

#[test]
fn an_unwritable_path_is_a_clear_open_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").expect("write");
    let config = RepositoryConfig {
        path: blocker.join("chat.db"),
        ..RepositoryConfig::default()
    };
    let err = Store::open(&config).err().expect("refused");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("cannot create directory"), "{err}");
}

#[tokio::test]
async fn a_panic_inside_a_store_call_reaches_the_caller() {
    let t = open_temp();
    let store = Arc::new(t.store.clone());
    let outcome = tokio::spawn(async move {
        store
            .read(|_| -> Result<(), StoreError> { panic!("boom") })
            .await
    })
    .await;
    assert!(outcome.expect_err("panicked").is_panic());
    // The permit and connection came back: the store still works.
    assert!(t.store.conversations().create(None).await.is_ok());
}

/// The first column of every row `sql` returns.
fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Result<Vec<T>, StoreError> {
    Ok(conn
        .prepare(sql)?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

#[tokio::test]
async fn migration_9_rewrites_flat_tool_calls_nested_and_keeps_nested_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(dir.path());
    let flat = r#"[{"id":"a","name":"echo","arguments":"{\"x\":1}"},{"id":"b","type":"function","function":{"name":"time","arguments":"{}"}}]"#;
    let id = {
        let store = Store::open(&config).expect("store opens");
        let repo = store.conversations();
        let c = repo.create(None).await.expect("created");
        let mut assistant = NewMessage::new(Role::Assistant, "");
        assistant.tool_calls = Some(serde_json::json!([]));
        repo.append(&c.id, vec![assistant]).await.expect("append");
        // As a release before the migration stored it, and as if 9 had not run yet.
        let flat = flat.to_string();
        store
            .write(move |tx| {
                tx.execute("UPDATE messages SET tool_calls = ?1", [flat])?;
                tx.execute("DELETE FROM schema_migrations WHERE version = 9", [])?;
                Ok(())
            })
            .await
            .expect("rewound");
        store
            .close(std::time::Duration::from_secs(5))
            .await
            .expect("closed");
        c.id
    };
    let store = Store::open(&config).expect("store opens and migrates");
    let history = store.conversations().history(&id).await.expect("history");
    assert_eq!(
        history[0].tool_calls,
        Some(serde_json::json!([
            {"id": "a", "type": "function", "function": {"name": "echo", "arguments": "{\"x\":1}"}},
            {"id": "b", "type": "function", "function": {"name": "time", "arguments": "{}"}}
        ]))
    );
}

#[tokio::test]
async fn migration_4_rebuilds_the_vector_tables_in_small_chunks_keeping_their_vectors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(dir.path());
    let recorded = VectorSpace {
        embedder: "test".into(),
        dimensions: 4,
    };
    // A file as the previous release left it: migrations 1 to 3, vectors stored.
    connection::register_sqlite_vec().expect("sqlite-vec");
    connection::prepare_file(&config.path).expect("file");
    {
        let mut conn = Connection::open(&config.path).expect("open");
        let released: Vec<_> = migrate::MIGRATIONS
            .iter()
            .filter(|m| m.version <= 3)
            .collect();
        // A configuration asking for another size does not change what migration 4 builds.
        migrate::apply(&mut conn, &released, &recorded).expect("migrations 1-3");
        conn.execute_batch(
            "INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id)
                 VALUES (16, '[1,0,0,0]', '', ''), (17, '[1,0,0,0]', 'work', 'c1'),
                        (32, '[0,1,0,0]', '', '');
             INSERT INTO message_vectors (message_id, embedding, conversation_id)
                 VALUES (7, '[0,0,1,0]', 'c1'), (8, '[0,0,0,1]', 'c2');",
        )
        .expect("vectors");
        let chunk4 = migrate::MIGRATIONS
            .iter()
            .find(|m| m.version == 4)
            .expect("4");
        let wider = VectorSpace {
            embedder: "test".into(),
            dimensions: 8,
        };
        migrate::apply(&mut conn, &[chunk4], &wider).expect("migration 4");
    }
    let store = Store::open_with(&config, &recorded).expect("store opens");
    let (tables, nearest, tagged, messages) = store
        .read(|conn| {
            let tables: Vec<String> = column(
                conn,
                "SELECT sql FROM sqlite_schema WHERE name IN ('memory_vectors', 'message_vectors')",
            )?;
            let nearest: Vec<i64> = column(
                conn,
                "SELECT rowid FROM memory_vectors WHERE embedding MATCH '[0,1,0,0]' AND k = 1",
            )?;
            let tagged: Vec<i64> = column(
                conn,
                "SELECT rowid FROM memory_vectors WHERE embedding MATCH '[1,0,0,0]' AND k = 3 AND tag = 'work'",
            )?;
            let messages: Vec<i64> = column(
                conn,
                "SELECT message_id FROM message_vectors WHERE embedding MATCH '[0,0,0,1]' AND k = 2 AND conversation_id = 'c2'",
            )?;
            Ok((tables, nearest, tagged, messages))
        })
        .await
        .expect("read");
    assert_eq!(tables.len(), 2);
    for sql in &tables {
        assert!(
            sql.contains("chunk_size=64") && sql.contains("float[4]"),
            "{sql}"
        );
    }
    assert_eq!(nearest, vec![32]);
    assert_eq!(tagged, vec![17]);
    assert_eq!(messages, vec![8]);
}

/// How often `sql` was re-prepared over three runs with a different LIMIT each.
fn reprepares_over_limits(conn: &Connection, sql: &str) -> rusqlite::Result<i32> {
    for limit in [5, 50, 500] {
        conn.prepare_cached(sql)?
            .query_map(rusqlite::params!["c", 10, limit], |r| r.get::<_, i64>(0))?
            .for_each(drop);
    }
    Ok(conn
        .prepare_cached(sql)?
        .get_status(rusqlite::StatementStatus::RePrepare))
}

const RECENT_SQL: &str = "SELECT id FROM messages WHERE conversation_id = ?1 AND seq < ?2
                          ORDER BY seq DESC LIMIT ?3";

#[tokio::test]
async fn a_cached_statement_is_not_prepared_again_when_its_limit_changes() {
    // SQLite's default: a statement whose plan may depend on a bound LIMIT is re-prepared each
    // time that parameter is bound again.
    let plain = Connection::open_in_memory().expect("memory db");
    plain
        .execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT, seq INTEGER);
             CREATE UNIQUE INDEX m ON messages (conversation_id, seq);",
        )
        .expect("schema");
    assert!(reprepares_over_limits(&plain, RECENT_SQL).expect("plain") > 0);
    // The store's connections have the query planner stability guarantee on.
    let t = open_temp();
    let reprepared = t
        .store
        .read(|conn| Ok(reprepares_over_limits(conn, RECENT_SQL)?))
        .await
        .expect("read");
    assert_eq!(reprepared, 0);
}

#[tokio::test]
async fn recent_history_served_from_memory_matches_the_database() {
    let unshared = |messages: &[Arc<StoredMessage>]| -> Vec<StoredMessage> {
        messages.iter().map(|m| StoredMessage::clone(m)).collect()
    };
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("create");
    let first = repo
        .append(&c.id, vec![user("a"), user("b")])
        .await
        .expect("append");
    let next = first.last().expect("stored").seq + 1;
    // Cached from its creation (no prompt of its own; no messages, whole): every read is
    // served from memory.
    let prompt = t.store.prompt_cache().get(&c.id).map(|entry| entry.prompt);
    assert_eq!(prompt, Some(None));
    let read = repo.recent(&c.id, next, 10_000, 100).await.expect("recent");
    assert_eq!(unshared(&read), repo.history(&c.id).await.expect("history"));
    for round in 0..3 {
        let stored = repo
            .append(
                &c.id,
                vec![user(&format!("q{round}")), user(&format!("r{round}"))],
            )
            .await
            .expect("append");
        let next = stored.last().expect("stored").seq + 1;
        let served = repo.recent(&c.id, next, 10_000, 100).await.expect("recent");
        assert_eq!(
            unshared(&served),
            repo.history(&c.id).await.expect("history")
        );
        // What a turn reads: the history before its own (already stored) message.
        let before_own = repo
            .recent(&c.id, next - 1, 10_000, 100)
            .await
            .expect("recent");
        assert_eq!(before_own.len(), served.len() - 1);
    }
    let stats = t.store.history_cache_stats();
    assert_eq!((stats.hits, stats.misses), (7, 0), "{stats:?}");
    // Released when quiet: every idle connection shrinks, the cache empties, and the next
    // read (a miss) gives the same history from the database.
    assert_eq!(t.store.release_memory().await.expect("released"), 20);
    assert_eq!(t.store.history_cache_stats().entries, 0);
    let history = repo.history(&c.id).await.expect("history");
    let next = history.last().expect("stored").seq + 1;
    let reread = repo.recent(&c.id, next, 10_000, 100).await.expect("recent");
    assert_eq!(unshared(&reread), history);
    assert_eq!(t.store.history_cache_stats().misses, 1);
    // Deleted history is never served from memory.
    repo.delete(&c.id).await.expect("delete");
    let after = repo.recent(&c.id, 100, 10_000, 100).await.expect("recent");
    assert!(after.is_empty(), "{after:?}");
}

/// The caches forget when the guard drops: a deletion whose caller stops waiting still counts.
#[tokio::test]
async fn the_deletion_guard_makes_both_caches_forget_when_dropped() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("create");
    let stored = repo.append(&c.id, vec![user("a")]).await.expect("append");
    let next = stored.last().expect("stored").seq + 1;
    repo.recent(&c.id, next, 10_000, 100).await.expect("recent");
    repo.system_prompt(&c.id).await.expect("prompt");
    let history_cached = || {
        t.store
            .history_cache()
            .recent(&c.id, next, 10_000, 100)
            .is_some()
    };
    assert!(history_cached());
    assert!(t.store.prompt_cache().get(&c.id).is_some());
    drop(t.store.forget_deleted_on_drop());
    assert!(!history_cached());
    assert!(t.store.prompt_cache().get(&c.id).is_none());
}

#[tokio::test]
async fn attachments_are_stored_with_a_user_message_and_read_back() {
    let t = open_temp();
    let repo = t.store.conversations();
    let c = repo.create(None).await.expect("create");
    let mut message = user("what does this say?");
    message.attachments = vec![
        Attachment {
            uri: "file:///notes.txt".into(),
            server: "files".into(),
            mime_type: Some("text/plain".into()),
            text: Some("the notes".into()),
            bytes: 9,
            truncated: false,
        },
        Attachment {
            uri: "file:///logo.png".into(),
            server: "files".into(),
            mime_type: Some("image/png".into()),
            text: None,
            bytes: 2048,
            truncated: false,
        },
    ];
    let stored = repo
        .append(
            &c.id,
            vec![message.clone(), NewMessage::new(Role::Assistant, "ok")],
        )
        .await
        .expect("append");
    assert_eq!(stored[0].attachments, message.attachments);
    let read = repo.history(&c.id).await.expect("history");
    assert_eq!(read[0].attachments, message.attachments);
    assert!(read[1].attachments.is_empty());
    let sent = read[0].sent_content();
    assert!(sent.starts_with("what does this say?\n\n<attachment uri=\"file:///notes.txt\""));
    assert!(sent.contains("bytes=\"2048\">[binary contents, not shown]</attachment>"));

    let mut wrong = NewMessage::new(Role::Assistant, "x");
    wrong.attachments = message.attachments;
    let refused = repo.append(&c.id, vec![wrong]).await.expect_err("refused");
    assert!(
        refused.to_string().contains("only user messages"),
        "{refused}"
    );
}
