//! Embedded migrations: planned on a read-only look at the file (so a refused start changes
//! nothing), then applied in order, each in its own transaction, recorded with a checksum.

use std::fmt::Write;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::config::VectorSpace;

#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. Never edit a released one; add a file.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "conversations",
        sql: include_str!("../../migrations/0001_conversations.sql"),
    },
    Migration {
        version: 2,
        name: "retention",
        sql: include_str!("../../migrations/0002_retention.sql"),
    },
    Migration {
        version: 3,
        name: "memory",
        sql: include_str!("../../migrations/0003_memory.sql"),
    },
    Migration {
        version: 4,
        name: "vector_chunks",
        sql: include_str!("../../migrations/0004_vector_chunks.sql"),
    },
    Migration {
        version: 5,
        name: "principals",
        sql: include_str!("../../migrations/0005_principals.sql"),
    },
    Migration {
        version: 6,
        name: "conversation_settings",
        sql: include_str!("../../migrations/0006_conversation_settings.sql"),
    },
    Migration {
        version: 7,
        name: "attachments",
        sql: include_str!("../../migrations/0007_attachments.sql"),
    },
    Migration {
        version: 8,
        name: "mcp_logins",
        sql: include_str!("../../migrations/0008_mcp_logins.sql"),
    },
    Migration {
        version: 9,
        name: "nested_tool_calls",
        sql: include_str!("../../migrations/0009_nested_tool_calls.sql"),
    },
];

/// The version that creates the vector tables.
pub const VECTOR_MIGRATION: i64 = 3;

impl Migration {
    /// The SQL to run: `{{dimensions}}` and `{{embedder}}` (a quoted literal) filled in.
    pub fn sql_for(&self, space: &VectorSpace) -> String {
        let embedder = format!("'{}'", space.embedder.replace('\'', "''"));
        self.sql
            .replace("{{dimensions}}", &space.dimensions.to_string())
            .replace("{{embedder}}", &embedder)
    }

    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            })
    }
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT";

/// Compares the file's ledger with `known` and returns the migrations still to apply.
/// Refuses unknown versions, changed checksums and foreign databases. Reads only.
pub fn plan<'a>(
    conn: &Connection,
    known: &'a [Migration],
    path: &Path,
) -> Result<Vec<&'a Migration>, StoreError> {
    if !table_exists(conn, "schema_migrations")? {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "it is a SQLite database of another application (it has tables but no \
                         schema_migrations); refusing to change it"
                    .into(),
            });
        }
        return Ok(known.iter().collect());
    }
    let mut statement = conn.prepare("SELECT version, name, checksum FROM schema_migrations")?;
    let applied = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (version, name, checksum) in &applied {
        let Some(migration) = known.iter().find(|m| m.version == *version) else {
            return Err(StoreError::UnknownMigration {
                path: path.to_path_buf(),
                version: *version,
                name: name.clone(),
            });
        };
        if migration.checksum() != *checksum {
            return Err(StoreError::ChecksumMismatch {
                path: path.to_path_buf(),
                version: *version,
                name: name.clone(),
            });
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
        .collect())
}

/// Applies `pending` in version order, each with its ledger row in one transaction. Templates
/// are filled from the vector space the file records once it records one (so a later migration
/// rebuilding vector tables keeps their size, whatever the configuration asks), else `space`.
pub fn apply(
    conn: &mut Connection,
    pending: &[&Migration],
    space: &VectorSpace,
) -> Result<(), StoreError> {
    conn.execute_batch(LEDGER)?;
    let mut ordered = pending.to_vec();
    ordered.sort_by_key(|m| m.version);
    for migration in ordered {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded = recorded_space(&tx)?;
        tx.execute_batch(&migration.sql_for(recorded.as_ref().unwrap_or(space)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            (migration.version, migration.name, migration.checksum(), super::now_ms()),
        )?;
        tx.commit()?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(())
}

/// The vector space in the file, if migration 3 has made its table.
fn recorded_space(conn: &Connection) -> Result<Option<VectorSpace>, StoreError> {
    if !table_exists(conn, "vector_space")? {
        return Ok(None);
    }
    super::vectors::stored_space(conn)
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Migration = Migration {
        version: 1,
        name: "a",
        sql: "CREATE TABLE a (x INTEGER);",
    };
    const B: Migration = Migration {
        version: 2,
        name: "b",
        sql: "INSERT INTO a VALUES (1);",
    };
    const B_EDITED: Migration = Migration {
        version: 2,
        name: "b",
        sql: "INSERT INTO a VALUES (2);",
    };

    fn space() -> VectorSpace {
        VectorSpace {
            embedder: "it's".into(),
            dimensions: 3,
        }
    }

    #[test]
    fn placeholders_are_filled_and_quoted() {
        let m = Migration {
            version: 9,
            name: "v",
            sql: "SELECT {{embedder}}, {{dimensions}};",
        };
        assert_eq!(m.sql_for(&space()), "SELECT 'it''s', 3;");
    }

    fn path() -> &'static Path {
        Path::new("test.db")
    }

    #[test]
    fn migrations_apply_in_version_order_and_are_recorded() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        let known = [A, B];
        let pending = plan(&conn, &known, path()).expect("plan");
        // Given out of order, still applied in order: B needs A's table.
        apply(&mut conn, &[pending[1], pending[0]], &space()).expect("apply");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .expect("a");
        assert_eq!(rows, 1);
        assert!(plan(&conn, &known, path()).expect("replan").is_empty());
    }

    #[test]
    fn an_edited_migration_is_refused_by_checksum() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        apply(&mut conn, &[&A, &B], &space()).expect("apply");
        let err = plan(&conn, &[A, B_EDITED], path()).expect_err("edited");
        assert!(
            matches!(err, StoreError::ChecksumMismatch { version: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_migration_from_a_newer_binary_is_refused() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        apply(&mut conn, &[&A, &B], &space()).expect("apply");
        let err = plan(&conn, &[A], path()).expect_err("unknown");
        assert!(
            matches!(err, StoreError::UnknownMigration { version: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer version"), "{err}");
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let conn = Connection::open_in_memory().expect("memory db");
        conn.execute_batch("CREATE TABLE theirs (x);")
            .expect("create");
        let err = plan(&conn, &[A], path()).expect_err("foreign");
        assert!(err.to_string().contains("another application"), "{err}");
    }

    #[test]
    fn shipped_migrations_have_increasing_versions() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS.first().map(|m| m.version), Some(1));
    }
}
