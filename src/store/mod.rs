//! The SQLite store: one file in WAL mode behind two pools (read-only readers, writers taking
//! `BEGIN IMMEDIATE`), a fair write gate, embedded migrations and the repositories. It owns all
//! SQL; callers get typed results and a [`StoreError`].
//!
//! Every call runs its SQLite work on a dedicated worker thread through [`Store::read`] or
//! [`Store::write`], in queue order (see `lane.rs`).

pub mod backup;
mod bulk;
mod connection;
mod conversations;
mod error;
mod group_commit;
mod health;
mod history_cache;
mod history_window;
mod lane;
mod mcp_logins;
mod memories;
mod migrate;
mod model;
mod pool_state;
pub mod postgres;
mod principals;
mod prompt_cache;
mod retention;
pub mod vector_rebuild;
mod vectors;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Transaction};

pub use bulk::{ConversationRecord, MemoryRecord, MessageRecord};
pub use conversations::Conversations;
pub use error::StoreError;
pub use health::GateStats;
pub use health::{HealthReport, StoreStats};
pub use lane::PoolStats;
pub use mcp_logins::{McpLogin, McpLogins};
pub use memories::{
    MAX_TAGS, Memories, Memory, MemoryHit, MessageHit, NewMemory, PendingBatch, PendingMessage,
};
pub use model::{
    Attachment, Conversation, ConversationId, ConversationUpdate, MAX_ATTACHMENTS,
    MAX_SYSTEM_PROMPT_CHARS, MessageStatus, NewMessage, Page, Role, StoredMessage,
    with_attachments,
};
pub use principals::{
    AccessRole, KeyRecord, NewKey, Owner, PrincipalId, PrincipalRow, Principals, Quotas, Usage,
    count_active_keys, day_of,
};
pub use retention::{RetentionReport, RetentionSnapshot};
pub use vector_rebuild::ReembedCounts;
pub use vectors::{MemoryCounts, Vector};

use crate::config::{RepositoryConfig, VectorSpace};
use connection::Pragmas;
use lane::Lane;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// One thread per reader connection.
    readers: Lane,
    /// One thread: SQLite runs one write transaction at a time, so the writer lane's FIFO queue
    /// is the write gate, and no writer ever waits in SQLite's busy handler.
    writers: Lane,
    /// One thread on a spare writer connection that copies the WAL into the database file, so
    /// commits never pay for a checkpoint. `None` when the writer pool has one connection.
    checkpointer: Option<Lane>,
    health: health::HealthState,
    retention: retention::RetentionStats,
    /// Recent history of active conversations, so turns need not read it back.
    history: history_cache::HistoryCache,
    /// Owners and system prompts of active conversations, for the same reason.
    prompts: prompt_cache::PromptCache,
    dimensions: u32,
}

impl Store {
    /// Opens (or creates) the database, checks and applies migrations, and builds the pools.
    /// Blocking: call it from `spawn_blocking` or before the runtime serves requests.
    /// The vector tables get the built-in embedder's space.
    pub fn open(config: &RepositoryConfig) -> Result<Self, StoreError> {
        let memory = crate::config::MemoryConfig::default();
        Self::open_with(
            config,
            &memory.vector_space(&crate::config::LlmConfig::default()),
        )
    }

    /// Opens (or creates) the database for vectors of `space`: a database whose vectors were
    /// made otherwise is refused, unchanged, with the command that rebuilds them.
    pub fn open_with(config: &RepositoryConfig, space: &VectorSpace) -> Result<Self, StoreError> {
        Self::open_checked(config, space, true)
    }

    /// Opens the database for an administrative command (`mcp-platform keys`) that may run
    /// beside the server: one reader, one writer, whatever the vector space.
    pub fn open_for_admin(
        config: &RepositoryConfig,
        space: &VectorSpace,
    ) -> Result<Self, StoreError> {
        let mut config = config.clone();
        config.sqlite.connection_pool.enable_pooling = false;
        Self::open_checked(&config, space, false)
    }

    /// Opens the database for `mcp-platform import`, which may run beside the server: one
    /// reader, one writer, and vectors of `space` (the memories it stores are embedded so).
    pub fn open_for_import(
        config: &RepositoryConfig,
        space: &VectorSpace,
    ) -> Result<Self, StoreError> {
        let mut config = config.clone();
        config.sqlite.connection_pool.enable_pooling = false;
        Self::open_checked(&config, space, true)
    }

    /// Opens the database for `mcp-platform reembed`: whatever its vector space.
    pub fn open_for_reembed(
        config: &RepositoryConfig,
        space: &VectorSpace,
    ) -> Result<Self, StoreError> {
        Self::open_checked(config, space, false)
    }

    fn open_checked(
        config: &RepositoryConfig,
        space: &VectorSpace,
        check_space: bool,
    ) -> Result<Self, StoreError> {
        connection::register_sqlite_vec()?;
        let path = config.path.clone();
        connection::prepare_file(&path)?;
        let pending = connection::read_untouched(&path, |conn| {
            let pending = migrate::plan(conn, migrate::MIGRATIONS, &path)?;
            if check_space
                && !pending
                    .iter()
                    .any(|m| m.version == migrate::VECTOR_MIGRATION)
            {
                vectors::check_space(conn, space, &path)?;
            }
            Ok(pending)
        })?;
        let mut conn = Connection::open(&path)?;
        Pragmas::from_config(config, false).apply(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                reason: format!("WAL mode refused (journal_mode = {mode})"),
            });
        }
        migrate::apply(&mut conn, &pending, space)?;

        let (readers, writers) = config.sqlite.connection_pool.sizes();
        let timeout = config.sqlite.connection_pool.connection_timeout;
        let background_checkpoints = writers >= 2;
        // The writer checkpoints by itself past 1,000 WAL pages even with the background
        // checkpointer on: that one copies the pages off the write path, but SQLite starts the
        // WAL over only when a write begins with every frame copied, which under a steady
        // stream of writes never happens, so the WAL grew to the old 10,000-page threshold
        // (40 MB) and every write past the file's end made the kernel allocate and zero pages
        // (a tenth of the server's CPU in a tool turn). The writer's own checkpoint has only
        // the frames since the last background one left to copy.
        let writer_pragmas = Pragmas::from_config(config, false);
        // Writers first: read-only WAL connections need the -shm file a writer creates.
        let opener = connection::opener();
        let writer_pool = connection::build_pool(
            &path,
            "writer",
            writers,
            writer_pragmas,
            timeout,
            opener.clone(),
        )?;
        let reader_pool = connection::build_pool(
            &path,
            "reader",
            readers,
            Pragmas::from_config(config, true),
            timeout,
            opener,
        )?;
        drop(conn);
        let spawn_error = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            reason: format!("cannot start database threads: {e}"),
        };
        let readers =
            Lane::start("reader", reader_pool, readers as usize, timeout).map_err(spawn_error)?;
        let checkpointer = if background_checkpoints {
            Some(Lane::start("checkpoint", writer_pool.clone(), 1, timeout).map_err(spawn_error)?)
        } else {
            None
        };
        let writers = Lane::start("writer", writer_pool, 1, timeout).map_err(spawn_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                readers,
                writers,
                checkpointer,
                health: health::HealthState::default(),
                retention: retention::RetentionStats::default(),
                history: history_cache::HistoryCache::new(config.sqlite.history_cache_bytes()),
                prompts: prompt_cache::PromptCache::new(config.sqlite.history_cache_bytes() / 16),
                dimensions: space.dimensions,
                path,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn history_cache(&self) -> &history_cache::HistoryCache {
        &self.inner.history
    }

    fn prompt_cache(&self) -> &prompt_cache::PromptCache {
        &self.inner.prompts
    }

    /// Conversations or messages were deleted: the caches may not serve what was read before.
    fn forget_deleted(&self) {
        self.inner.history.invalidate();
        self.inner.prompts.clear();
    }

    /// [`Store::forget_deleted`] when dropped: hold it across a deletion, so that the caches
    /// forget even if the caller stops waiting after the commit.
    fn forget_deleted_on_drop(&self) -> ForgetDeletedOnDrop<'_> {
        ForgetDeletedOnDrop(self)
    }

    /// Hits and misses of the in-memory history that chat turns read (`/health` `cache_stats`).
    pub fn history_cache_stats(&self) -> crate::stats::CacheSnapshot {
        self.inner.history.snapshot()
    }

    /// Every conversation, new ones owned by `local`: for the server's own work (retention,
    /// tests, benches), never for a request, which goes through [`Store::conversations_of`].
    pub fn conversations(&self) -> Conversations {
        Conversations::new(
            self.clone(),
            Owner {
                id: PrincipalId::LOCAL,
                sees_all: true,
            },
        )
    }

    /// The conversations `owner` may see and touch.
    pub fn conversations_of(&self, owner: Owner) -> Conversations {
        Conversations::new(self.clone(), owner)
    }

    /// The memories of `local` (tests, benches, imports); requests use [`Store::memories_of`].
    pub fn memories(&self) -> Memories {
        Memories::new(self.clone(), PrincipalId::LOCAL)
    }

    /// The memories (and history search) of one principal.
    pub fn memories_of(&self, owner: PrincipalId) -> Memories {
        Memories::new(self.clone(), owner)
    }

    pub fn principals(&self) -> Principals {
        Principals::new(self.clone())
    }

    /// OAuth logins to remote MCP servers.
    pub fn mcp_logins(&self) -> McpLogins {
        McpLogins::new(self.clone())
    }

    /// The size of the vectors the database holds.
    pub fn dimensions(&self) -> u32 {
        self.inner.dimensions
    }

    /// Runs `f` on a read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let result = self.inner.readers.run(move |conn| f(conn)).await;
        self.observe(result)
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction, committed when `f` returns `Ok` and
    /// rolled back otherwise. Once this returns `Ok`, the write is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let result = self.inner.writers.run_in_transaction(f).await;
        self.observe(result)
    }

    /// As [`Store::write`], for a write that changes many pages (vectors in bulk, a deletion or
    /// an import): it opens its group-commit transaction instead of joining one in a savepoint
    /// (SQLite copies every page a savepoint changes into the savepoint's journal first).
    pub async fn write_large<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let result = self.inner.writers.run_leading_transaction(f).await;
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

    /// Copies committed WAL frames into the database file without blocking writers or readers
    /// (`PASSIVE`). Called every [`CHECKPOINT_INTERVAL`] by the application; a no-op when the
    /// writer pool has a single connection (commits then checkpoint by themselves).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let Some(checkpointer) = &self.inner.checkpointer else {
            return Ok(());
        };
        let result = checkpointer
            .run(|conn| {
                Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))?)
            })
            .await;
        self.observe(result).map(|_| ())
    }

    /// Gives back the memory the store holds for speed, for a quiet server: the recent history
    /// and prompts kept for chat turns, and SQLite's page caches on every connection not in
    /// use. Nothing is lost: the next turn reads what it needs from the database. Gives the
    /// number of connections released.
    pub async fn release_memory(&self) -> Result<usize, StoreError> {
        self.inner.history.clear();
        self.inner.prompts.clear();
        let readers = self.inner.readers.release_memory().await?;
        // The checkpointer borrows from the writers' pool: its connection is released with
        // theirs, unless it is checkpointing at that moment.
        let writers = self.inner.writers.release_memory().await?;
        Ok(readers + writers)
    }

    /// Write jobs committed since start: a measure of activity.
    pub fn writes_committed(&self) -> u64 {
        self.inner.writers.commits().1
    }

    /// Stops admitting work, lets queued writes finish (up to `deadline`), checkpoints the WAL
    /// into the main file and truncates it as the writer's last job, then waits for every
    /// database thread to exit.
    pub async fn close(&self, deadline: Duration) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.readers.close();
        if let Some(checkpointer) = &inner.checkpointer {
            checkpointer.close();
        }
        // Queued behind every write already admitted, and nothing can be queued after it.
        let checkpoint = inner.writers.close_with(|conn| {
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            Ok(busy == 0)
        });
        let result = match tokio::time::timeout(deadline, checkpoint).await {
            Ok(Ok(complete)) => {
                if complete {
                    tracing::info!("checkpointed the WAL into the database file");
                } else {
                    tracing::warn!("WAL checkpoint incomplete: a reader was still active");
                }
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => {
                tracing::warn!("writes still queued at the shutdown deadline; no checkpoint");
                Ok(())
            }
        };
        let lanes = [
            Some(&inner.readers),
            Some(&inner.writers),
            inner.checkpointer.as_ref(),
        ];
        for lane in lanes.into_iter().flatten() {
            if !lane.join(deadline).await {
                tracing::warn!("a database thread was still busy at the shutdown deadline");
            }
        }
        result
    }
}

struct ForgetDeletedOnDrop<'a>(&'a Store);

impl Drop for ForgetDeletedOnDrop<'_> {
    fn drop(&mut self) {
        self.0.forget_deleted();
    }
}

/// How often the application runs [`Store::checkpoint`]. Under the heaviest write load
/// measured (~7k appends/s) the WAL grows by a few thousand pages in this time.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Milliseconds since the Unix epoch, the store's timestamp unit.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod principals_tests;
