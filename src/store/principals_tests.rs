//! Migration 0005 on a database of the previous release, and owner scoping in the store.

use rusqlite::Connection;

use super::*;
use crate::config::RepositoryConfig;

fn space() -> VectorSpace {
    VectorSpace {
        embedder: "test".into(),
        dimensions: 4,
    }
}

#[tokio::test]
async fn migration_5_keeps_ids_and_vectors_gives_rows_to_local_and_never_reuses_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RepositoryConfig {
        path: dir.path().join("chat.db"),
        ..RepositoryConfig::default()
    };
    // A file as the previous release left it: migrations 1 to 4 with data, the newest
    // message and memory already deleted (their ids were about to be handed out again).
    connection::register_sqlite_vec().expect("sqlite-vec");
    connection::prepare_file(&config.path).expect("file");
    {
        let mut conn = Connection::open(&config.path).expect("open");
        let released: Vec<_> = migrate::MIGRATIONS
            .iter()
            .filter(|m| m.version <= 4)
            .collect();
        migrate::apply(&mut conn, &released, &space()).expect("migrations 1-4");
        conn.execute_batch(
            "INSERT INTO conversations (id, title, created_at, updated_at, next_seq, message_count)
                 VALUES ('c1', 'old', 1, 1, 4, 3);
             INSERT INTO messages (id, conversation_id, seq, role, content, created_at)
                 VALUES (5, 'c1', 1, 'user', 'hello', 1), (6, 'c1', 2, 'assistant', 'hi', 1),
                        (7, 'c1', 3, 'user', 'gone', 1);
             INSERT INTO message_vectors (message_id, embedding, conversation_id)
                 VALUES (5, '[1,0,0,0]', 'c1'), (6, '[0,1,0,0]', 'c1');
             DELETE FROM messages WHERE id = 7;
             UPDATE vector_space SET messages_embedded_up_to = 7;
             INSERT INTO memories (id, text, tags, created_at) VALUES (3, 'kept', '[]', 1), (4, 'gone', '[]', 1);
             INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id)
                 VALUES (48, '[0,0,1,0]', '', '');
             DELETE FROM memories WHERE id = 4;",
        )
        .expect("old rows");
    }
    let store = Store::open_with(&config, &space()).expect("migrated");
    let conversation = store
        .conversations()
        .get(&ConversationId::try_from("c1".to_string()).expect("id"))
        .await
        .expect("kept");
    assert_eq!(conversation.owner, "local");
    let history = store
        .conversations()
        .history(&conversation.id)
        .await
        .expect("history");
    assert_eq!(history.iter().map(|m| m.id).collect::<Vec<_>>(), [5, 6]);

    // Vectors kept, now owned by `local`.
    let hits = store
        .memories_of(PrincipalId::LOCAL)
        .search_messages(&[0.0, 1.0, 0.0, 0.0], 1, None, 50)
        .await
        .expect("search");
    assert_eq!(hits[0].message_id, 6);
    let found = store
        .memories_of(PrincipalId::LOCAL)
        .find(&[0.0, 0.0, 1.0, 0.0], 1, Vec::new(), None)
        .await
        .expect("find");
    assert_eq!(found[0].memory.id, 3);

    // New rows get ids past the largest kept one and the indexer's watermark (7, deleted),
    // and from now on past deleted ones too.
    let appended = store
        .conversations()
        .append(&conversation.id, vec![NewMessage::new(Role::User, "new")])
        .await
        .expect("append");
    assert!(appended[0].id > 7, "{}", appended[0].id);
    let newest = appended[0].id;
    store
        .conversations()
        .delete(&conversation.id)
        .await
        .expect("delete");
    let again = store.conversations().create(None).await.expect("create");
    let appended = store
        .conversations()
        .append(&again.id, vec![NewMessage::new(Role::User, "after")])
        .await
        .expect("append");
    assert!(
        appended[0].id > newest,
        "message id {newest} handed out again"
    );

    let memories = store.memories_of(PrincipalId::LOCAL);
    let first = memories
        .store("one".into(), Vec::new(), None, &[1.0, 0.0, 0.0, 0.0])
        .await
        .expect("store");
    memories.delete(first.id).await.expect("delete");
    let second = memories
        .store("two".into(), Vec::new(), None, &[1.0, 0.0, 0.0, 0.0])
        .await
        .expect("store");
    assert!(
        second.id > first.id,
        "memory id {} handed out again",
        first.id
    );
}

/// A fresh store of the current schema, in a directory kept alive with it.
fn open_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RepositoryConfig {
        path: dir.path().join("chat.db"),
        ..RepositoryConfig::default()
    };
    let store = Store::open_with(&config, &space()).expect("open");
    (store, dir)
}

/// A user's key named `name`.
fn key(name: &str) -> NewKey {
    NewKey {
        name: name.into(),
        role: AccessRole::User,
        quotas: Quotas::default(),
        key_hash: crate::auth::secrets::hash(name),
        key_prefix: "mcpp_x…".into(),
    }
}

/// Two users' principals, `alice` and `bob`.
async fn alice_and_bob(store: &Store) -> (PrincipalRow, PrincipalRow) {
    let alice = store
        .principals()
        .create(key("alice"))
        .await
        .expect("alice");
    let bob = store.principals().create(key("bob")).await.expect("bob");
    (alice, bob)
}

#[tokio::test]
async fn an_owner_sees_only_its_conversations_and_an_admin_sees_all() {
    let (store, _dir) = open_store();
    let (alice, bob) = alice_and_bob(&store).await;
    let mine = store
        .conversations_of(Owner::only(alice.id))
        .create(Some("a".into()))
        .await
        .expect("create");
    assert_eq!(mine.owner, "alice");
    let bobs = store.conversations_of(Owner::only(bob.id));
    assert!(matches!(
        bobs.get(&mine.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        bobs.append(&mine.id, vec![NewMessage::new(Role::User, "x")])
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        bobs.delete(&mine.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(bobs.list(50, None).await.expect("list").items.is_empty());
    let admin = Owner {
        id: bob.id,
        sees_all: true,
    };
    let all = store
        .conversations_of(admin)
        .list(50, None)
        .await
        .expect("list");
    assert_eq!(all.items[0].id, mine.id);
    assert!(
        store.principals().create(key("alice")).await.is_err(),
        "names are unique"
    );
}

#[tokio::test]
async fn a_system_prompt_served_from_memory_follows_updates_owners_and_deletions() {
    let (store, _dir) = open_store();
    let (alice, bob) = alice_and_bob(&store).await;
    let alices = store.conversations_of(Owner::only(alice.id));
    let bobs = store.conversations_of(Owner::only(bob.id));
    let id = alices.create(None).await.expect("create").id;
    // Read (and so cached) before each change.
    assert_eq!(alices.system_prompt(&id).await.expect("prompt"), None);
    let update = |prompt: &str| ConversationUpdate {
        system_prompt: Some(prompt.into()),
        ..ConversationUpdate::default()
    };
    alices
        .update(&id, update("be brief"))
        .await
        .expect("update");
    assert_eq!(
        alices.system_prompt(&id).await.expect("prompt").as_deref(),
        Some("be brief")
    );
    assert!(
        matches!(bobs.system_prompt(&id).await, Err(StoreError::NotFound(_))),
        "another owner does not see it, cached or not"
    );
    alices.update(&id, update("")).await.expect("cleared");
    assert_eq!(alices.system_prompt(&id).await.expect("prompt"), None);
    alices.delete(&id).await.expect("delete");
    assert!(matches!(
        alices.system_prompt(&id).await,
        Err(StoreError::NotFound(_))
    ));
}
