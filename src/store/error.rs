//! `StoreError`: every way a store call fails, classified where it is born.

use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{ErrorCode, WireFault};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database {pool} connection became free within {waited:?}")]
    PoolTimeout {
        pool: &'static str,
        waited: Duration,
    },
    #[error("the database {pool} queue holds its maximum of {capacity} jobs; retry shortly")]
    QueueFull { pool: &'static str, capacity: usize },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("request `{request_id}` was already stored in this conversation")]
    DuplicateRequest { request_id: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error("the store is shut down")]
    Closed,
    #[error("cannot open the database at {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{} is not a SQLite database (or it is encrypted or damaged)", path.display())]
    NotADatabase { path: PathBuf },
    #[error(
        "{} has migration {version} ({name}) that this mcp-platform {binary} does not know: \
         it was written by a newer version; use that version or a copy of the file",
        path.display(), binary = env!("CARGO_PKG_VERSION")
    )]
    UnknownMigration {
        path: PathBuf,
        version: i64,
        name: String,
    },
    #[error(
        "{}: migration {version} ({name}) was applied with different contents than this binary \
         ships (checksum mismatch); released migrations must never be edited",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        version: i64,
        name: String,
    },
    #[error(
        "{}: its vectors were made by `{stored}` ({stored_dimensions} dimensions) but memory is \
         configured for `{configured}` ({configured_dimensions}); run `mcp-platform reembed` to \
         rebuild them, or set memory back",
        path.display()
    )]
    VectorSpaceMismatch {
        path: PathBuf,
        stored: String,
        stored_dimensions: u32,
        configured: String,
        configured_dimensions: u32,
    },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool error: {0}")]
    Pool(#[from] r2d2::Error),
}

impl StoreError {
    /// The same error for another caller: one failed `COMMIT` answers every write it covered.
    /// SQLite's own errors keep their code (and so [`Self::is_database_fault`]); any other
    /// becomes a generic SQLite error with the same message.
    #[must_use]
    pub fn for_another_caller(&self) -> StoreError {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(error, message)) => {
                Self::Sqlite(rusqlite::Error::SqliteFailure(*error, message.clone()))
            }
            Self::Closed => Self::Closed,
            other => Self::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            )),
        }
    }

    /// A stable machine code for the wire (`/api`, WebSocket error frames).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PoolTimeout { .. } | Self::QueueFull { .. } => ErrorCode::Busy,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::DuplicateRequest { .. } => ErrorCode::DuplicateRequest,
            Self::InvalidInput(_) => ErrorCode::InvalidRequest,
            Self::Closed => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// Whether the same call may succeed if tried again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::PoolTimeout { .. } | Self::QueueFull { .. } | Self::Closed
        )
    }

    /// Whether this error says the database itself is unusable (I/O, corruption, full disk),
    /// as opposed to a problem with one request. `SQLITE_READONLY` is not: a write sent to a
    /// reader is a bug, not an outage; a read-only file system shows in the health probe.
    pub fn is_database_fault(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::SystemIoFailure
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::DiskFull
                    | C::CannotOpen
                    | C::PermissionDenied
            ),
            Self::Pool(_) | Self::Corrupt(_) => true,
            _ => false,
        }
    }
}

impl WireFault for StoreError {
    fn code(&self) -> ErrorCode {
        StoreError::code(self)
    }

    fn retryable(&self) -> bool {
        StoreError::retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retryable().then_some(Duration::from_secs(1))
    }
}
