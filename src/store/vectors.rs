//! The vector space of the database (what made its vectors, their size), checked at start, and
//! the f32 vectors sqlite-vec stores.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::config::VectorSpace;

/// One embedding.
pub type Vector = Vec<f32>;

/// Refuses a database whose vectors were made by another embedder or with another size.
pub fn check_space(conn: &Connection, space: &VectorSpace, path: &Path) -> Result<(), StoreError> {
    let stored = stored_space(conn)?.ok_or_else(|| {
        StoreError::Corrupt("the vector_space table has no row; restore a backup".into())
    })?;
    if stored == *space {
        return Ok(());
    }
    Err(StoreError::VectorSpaceMismatch {
        path: path.to_path_buf(),
        stored: stored.embedder,
        stored_dimensions: stored.dimensions,
        configured: space.embedder.clone(),
        configured_dimensions: space.dimensions,
    })
}

pub fn stored_space(conn: &Connection) -> Result<Option<VectorSpace>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT embedder, dimensions FROM vector_space WHERE id = 1",
            [],
            |row| {
                Ok(VectorSpace {
                    embedder: row.get(0)?,
                    dimensions: row.get(1)?,
                })
            },
        )
        .optional()?)
}

/// The little-endian f32 blob sqlite-vec reads, after checking the size.
pub fn to_blob(vector: &[f32], dimensions: u32) -> Result<Vec<u8>, StoreError> {
    if vector.len() != dimensions as usize {
        return Err(StoreError::InvalidInput(format!(
            "a vector of {} dimensions; the vector tables hold {dimensions}",
            vector.len()
        )));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::InvalidInput(
            "a vector with a NaN or infinite component".into(),
        ));
    }
    Ok(vector.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// `/health` `memory`: row counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryCounts {
    pub memories: u64,
    /// Rows of `memory_vectors`: one per memory and one more per tag.
    pub memory_vectors: u64,
    pub message_vectors: u64,
    /// Messages not yet considered for history search.
    pub messages_pending: u64,
}

pub fn counts(conn: &Connection) -> Result<MemoryCounts, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(MemoryCounts {
        memories: count("SELECT count(*) FROM memories")?,
        memory_vectors: count("SELECT count(*) FROM memory_vectors_rowids")?,
        message_vectors: count("SELECT count(*) FROM message_vectors_rowids")?,
        messages_pending: count(
            "SELECT count(*) FROM messages WHERE id > \
             (SELECT messages_embedded_up_to FROM vector_space WHERE id = 1)",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_of_the_wrong_size_or_with_nan_is_refused() {
        assert_eq!(to_blob(&[1.0, 0.5], 2).expect("ok").len(), 8);
        let error = to_blob(&[1.0], 2).expect_err("size");
        assert!(error.to_string().contains("1 dimensions"), "{error}");
        assert!(to_blob(&[f32::NAN, 0.0], 2).is_err());
    }
}
