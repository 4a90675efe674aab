//! The SQLite store: one file in WAL mode behind two pools (read-only readers, writers taking
//! `BEGIN IMMEDIATE`), a fair write gate, embedded migrations and the repositories. It owns all
//! SQL; callers get typed results and a [`StoreError`].
//!
//! Every call runs its SQLite work on a blocking thread through [`Store::read`] or
//! [`Store::write`], after waiting its turn in async code (see [`lane`]).

mod connection;
mod conversations;
mod error;
mod health;
mod lane;
mod migrate;
mod model;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use conversations::Conversations;
pub use error::StoreError;
pub use health::{HealthReport, StoreStats};
pub use lane::{GateStats, PoolStats};
pub use model::{
    Conversation, ConversationId, MessageStatus, NewMessage, Page, Role, StoredMessage,
};

use crate::config::RepositoryConfig;
use connection::Pragmas;
use lane::{Admission, Lane};

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Lane,
    writers: Lane,
    /// Admits one write transaction at a time, in arrival order: SQLite has one writer, and
    /// queueing here instead of in its busy handler keeps the worst wait short.
    gate: Admission,
    health: health::HealthState,
}

impl Store {
    /// Opens (or creates) the database, checks and applies migrations, and builds the pools.
    /// Blocking: call it from `spawn_blocking` or before the runtime serves requests.
    pub fn open(config: &RepositoryConfig) -> Result<Self, StoreError> {
        connection::register_sqlite_vec()?;
        let path = config.path.clone();
        connection::prepare_file(&path)?;
        let pending = {
            let conn =
                Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            migrate::plan(&conn, migrate::MIGRATIONS, &path)?
        };
        let mut conn = Connection::open(&path)?;
        Pragmas::from_config(config, false).apply(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                reason: format!("WAL mode refused (journal_mode = {mode})"),
            });
        }
        migrate::apply(&mut conn, &pending)?;

        let pool = &config.connection_pool;
        let (readers, writers) = if pool.enable_pooling {
            (pool.max_readers, pool.max_writers)
        } else {
            (1, 1)
        };
        let timeout = pool.connection_timeout;
        // Writers first: read-only WAL connections need the -shm file a writer creates.
        let writer_pool = connection::build_pool(
            &path,
            "writer",
            writers,
            Pragmas::from_config(config, false),
            timeout,
        )?;
        let reader_pool = connection::build_pool(
            &path,
            "reader",
            readers,
            Pragmas::from_config(config, true),
            timeout,
        )?;
        drop(conn);
        Ok(Self {
            inner: Arc::new(Inner {
                readers: Lane::new("reader", reader_pool, timeout),
                writers: Lane::new("writer", writer_pool, timeout),
                gate: Admission::new("write gate", 1, timeout),
                health: health::HealthState::default(),
                path,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn conversations(&self) -> Conversations {
        Conversations::new(self.clone())
    }

    /// Runs `f` on a read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.inner.readers.admission.admit().await?;
        let inner = self.inner.clone();
        let result = run_blocking(move || {
            let _permit = permit;
            let conn = inner.readers.checkout()?;
            f(&conn)
        })
        .await;
        self.observe(result)
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction, committed when `f` returns `Ok` and
    /// rolled back otherwise. Once this returns `Ok`, the write is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let turn = self.inner.gate.admit().await?;
        let permit = self.inner.writers.admission.admit().await?;
        let inner = self.inner.clone();
        let result = run_blocking(move || {
            let _held = (turn, permit);
            let mut conn = inner.writers.checkout()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await;
        self.observe(result)
    }

    /// Marks the store unhealthy when an error says the database itself is failing.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result {
            if error.is_database_fault() {
                self.inner.health.record_fault(error);
            }
        }
        result
    }

    /// Stops admitting work, waits up to `deadline` for what is running, checkpoints the WAL
    /// into the main file and truncates it.
    pub async fn close(&self, deadline: Duration) -> Result<(), StoreError> {
        let inner = &self.inner;
        let drained = inner.gate.close(deadline).await
            & inner.writers.admission.close(deadline).await
            & inner.readers.admission.close(deadline).await;
        if !drained {
            tracing::warn!("database work still running at the shutdown deadline");
        }
        let inner = self.inner.clone();
        run_blocking(move || {
            let conn = inner.writers.checkout()?;
            let (busy, log, done): (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            tracing::info!(
                busy,
                wal_pages = log,
                checkpointed = done,
                "checkpointed the WAL"
            );
            Ok(())
        })
        .await
    }
}

/// The one way SQLite work leaves the async runtime: on a blocking thread, inside the caller's
/// tracing span, with a panic in `f` re-raised in the caller.
async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(result) => result,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::Closed),
        },
    }
}

/// Milliseconds since the Unix epoch, the store's timestamp unit.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
