//! The PostgreSQL the tests run ([`crate::support::postgres`]): a real server with pgvector's
//! HNSW index, for issue 43's backend. Until that backend exists, the server pointed at it
//! refuses in one clear line and leaves the database untouched.

use crate::support::{BIN, postgres, write_config};

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

#[test]
fn the_server_pointed_at_postgres_refuses_in_one_line_and_touches_nothing() {
    let server = postgres();
    let url = server.database();
    let database = url.rsplit('/').next().expect("a database name");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let output = std::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--config"])
        .arg(&config)
        .args(["--database", &url])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("PostgreSQL"),
        "{stderr}"
    );
    let tables = server
        .psql(
            database,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        )
        .expect("counted");
    assert_eq!(tables, "0");
}
