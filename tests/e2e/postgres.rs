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
