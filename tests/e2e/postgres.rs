//! The PostgreSQL the tests run ([`crate::support::postgres`]): a real server with pgvector's
//! HNSW index, ready for issue 43's backend (the tests of that backend come with it).

use crate::support::postgres;

#[test]
fn the_tests_have_a_real_postgres_with_pgvector() {
    let server = postgres();
    let url = server.database();
    let database = url.rsplit('/').next().expect("a database name");
    let sql = |statement: &str| {
        server
            .psql(database, statement)
            .unwrap_or_else(|why| panic!("{statement}: {why}"))
    };
    let version: u32 = sql("SHOW server_version_num").parse().expect("a number");
    assert!(version >= 180_000, "PostgreSQL {version}");
    sql("CREATE EXTENSION vector");
    sql("CREATE TABLE memories (id int PRIMARY KEY, embedding vector(3))");
    sql("CREATE INDEX ON memories USING hnsw (embedding vector_cosine_ops)");
    sql("INSERT INTO memories VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]')");
    let nearest = sql("SELECT id FROM memories ORDER BY embedding <=> '[0.1,0.9,0.2]' LIMIT 1");
    assert_eq!(nearest, "2");
}

/// `serve` pointed at `url`: its exit code and the last line it wrote.
fn serve_on(url: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::support::write_config(dir.path(), "");
    let output = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--port", "0", "--config"])
        .arg(&config)
        .args(["--database", url])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !dir.path().join("data/chat.db").exists(),
        "no SQLite file on the side"
    );
    let last = stderr.lines().last().unwrap_or_default().to_string();
    (output.status.code(), last)
}

#[test]
fn a_start_on_postgres_checks_the_server_then_says_what_is_missing() {
    let server = postgres();
    // With a password the server shows nowhere (local connections need none here).
    let url = server.database().replacen("chat@", "chat:hunter2@", 1);
    let (code, last) = serve_on(&url);
    assert_eq!(code, Some(2), "{last}");
    assert!(
        last.starts_with("error: ") && last.contains("answers and has pgvector"),
        "{last}"
    );
    assert!(!last.contains("hunter2"), "{last}");

    // Nothing answers on port 1.
    let (code, last) = serve_on("postgres://chat@127.0.0.1:1/chat?connect_timeout=5");
    assert_eq!(code, Some(2), "{last}");
    assert!(last.contains("cannot reach PostgreSQL at"), "{last}");

    // TLS is not spoken yet: said, not attempted.
    let (code, last) = serve_on(&format!("{}?sslmode=require", server.database()));
    assert_eq!(code, Some(2), "{last}");
    assert!(last.contains("sslmode=require needs TLS"), "{last}");
}

#[test]
fn a_database_without_pgvector_is_refused_with_how_to_install_it() {
    let server = postgres();
    let url = server.database();
    let database = url.rsplit('/').next().expect("a database name");
    // PostgreSQL 18 looks for extensions only where extension_control_path says.
    server
        .psql(
            "postgres",
            &format!("ALTER DATABASE {database} SET extension_control_path = '/nonexistent'"),
        )
        .expect("extensions hidden");
    let (code, last) = serve_on(&url);
    assert_eq!(code, Some(2), "{last}");
    assert!(
        last.contains("has no pgvector extension") && last.contains("install it"),
        "{last}"
    );
}
