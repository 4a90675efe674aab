//! `database`: where the server keeps its data (`url`: an SQLite file, the default, or a
//! PostgreSQL database) and each backend's settings (`sqlite`, `postgres`).
//!
//! The URL comes from, first to last: the `--database` flag, the `MCPP_DATABASE_URL`
//! environment variable, and `database.url` (or the deprecated `chat.service.repository.path`;
//! a file that sets both is refused).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::database_url::{DEFAULT_SQLITE_PATH, DatabaseUrl, PostgresUrl};

/// The environment variable that names the database, over `database.url`.
pub const DATABASE_URL_VARIABLE: &str = "MCPP_DATABASE_URL";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; unset, the SQLite file
    /// `./data/chat.db` (or the deprecated `chat.service.repository.path`). Set once loaded.
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
    /// The SQLite backend's tuning; set once loaded (from here, or from the deprecated
    /// `chat.service.repository`, or the defaults).
    #[serde(default)]
    pub sqlite: Option<SqliteConfig>,
    pub postgres: PostgresConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Some(DatabaseUrl::default_file()),
            sqlite: Some(SqliteConfig::default()),
            postgres: PostgresConfig::default(),
        }
    }
}

impl DatabaseConfig {
    /// What a file without a `database` section says: no URL, no SQLite tuning.
    pub(super) fn unset() -> Self {
        Self {
            url: None,
            sqlite: None,
            postgres: PostgresConfig::default(),
        }
    }

    /// The database the server opens.
    pub fn url(&self) -> DatabaseUrl {
        self.url.clone().unwrap_or_else(DatabaseUrl::default_file)
    }

    /// The SQLite backend's tuning (its defaults until the configuration is loaded).
    pub fn sqlite(&self) -> SqliteConfig {
        self.sqlite.clone().unwrap_or_default()
    }

    /// The SQLite store to open, or `None` when the URL names PostgreSQL.
    pub fn sqlite_store(&self) -> Option<RepositoryConfig> {
        match self.url() {
            DatabaseUrl::Sqlite(path) => Some(RepositoryConfig {
                path,
                sqlite: self.sqlite(),
            }),
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// The SQLite backend's tuning, to change in code.
    pub fn sqlite_mut(&mut self) -> &mut SqliteConfig {
        self.sqlite.get_or_insert_with(SqliteConfig::default)
    }

    /// Points the server at `path`, an SQLite file (for programs that embed the server).
    pub fn use_sqlite_file(&mut self, path: impl Into<PathBuf>) {
        self.url = Some(DatabaseUrl::Sqlite(path.into()));
    }
}

/// `database.postgres`: the PostgreSQL backend's connection pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connections the pool keeps open at most.
    pub max_connections: u32,
    /// Longest wait to connect, and for a connection from the pool.
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `database.sqlite`: the SQLite backend's tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub synchronous: Synchronous,
    /// SQLite's own busy handler: a safety net only, writes are queued in-process first.
    #[serde(with = "super::duration")]
    pub busy_timeout: Duration,
    /// What the store's caches may hold in all, in MiB: half for SQLite's page caches (shared
    /// out among the pool's connections), half for the recent history kept for chat turns.
    pub memory_budget_mib: u32,
    /// Page cache per connection, in KiB; by default the budget's half divided among the
    /// connections.
    pub cache_size_kib: Option<u32>,
    /// Memory-mapped I/O per connection, in MiB (0, the default, disables it). Pages read
    /// through a map count in the process's resident memory once per connection, outside the
    /// budget; reading through SQLite's page cache cost no measurable CPU per turn.
    pub mmap_size_mib: u32,
    /// Once the server has been quiet this long (no write, socket, frame or turn), it
    /// empties these caches and gives free memory back to the system; again once idle provider
    /// connections have closed (twice the longest `keepalive_expiry` later); zero never does.
    #[serde(with = "super::duration")]
    pub release_memory_when_quiet: Duration,
    pub connection_pool: PoolConfig,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            memory_budget_mib: 32,
            cache_size_kib: None,
            mmap_size_mib: 0,
            release_memory_when_quiet: Duration::from_secs(2),
            connection_pool: PoolConfig::default(),
        }
    }
}

impl SqliteConfig {
    /// The page cache of each pooled connection, in KiB: `cache_size_kib`, or half the
    /// budget divided among the readers and writers (at least 256 KiB).
    pub fn page_cache_kib(&self) -> u32 {
        self.cache_size_kib.unwrap_or_else(|| {
            let (readers, writers) = self.connection_pool.sizes();
            (self.memory_budget_mib.saturating_mul(1024) / 2 / (readers + writers).max(1)).max(256)
        })
    }

    /// Bytes of recent history kept in memory: the budget's other half.
    pub fn history_cache_bytes(&self) -> u64 {
        u64::from(self.memory_budget_mib) << 19
    }
}

/// `PRAGMA synchronous`. In WAL mode `normal` never corrupts the file; a power loss may drop
/// the last commits. `full` makes every commit durable at the cost of an fsync each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub max_readers: u32,
    pub max_writers: u32,
    /// Longest wait for a connection before the operation fails with a pool timeout.
    #[serde(with = "super::duration")]
    pub connection_timeout: Duration,
    #[serde(with = "super::duration")]
    pub health_check_interval: Duration,
    /// `false`: one reader and one writer connection (for debugging or tiny devices).
    pub enable_pooling: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_readers: 16,
            max_writers: 4,
            connection_timeout: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(60),
            enable_pooling: true,
        }
    }
}

impl PoolConfig {
    /// The (reader, writer) connections the store opens: one each without pooling.
    pub fn sizes(&self) -> (u32, u32) {
        if self.enable_pooling {
            (self.max_readers, self.max_writers)
        } else {
            (1, 1)
        }
    }
}

/// What the SQLite store is opened with: its file and its tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryConfig {
    pub path: PathBuf,
    pub sqlite: SqliteConfig,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_SQLITE_PATH),
            sqlite: SqliteConfig::default(),
        }
    }
}

impl RepositoryConfig {
    /// The file at `path` with the default tuning.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            sqlite: SqliteConfig::default(),
        }
    }
}

/// `chat.service.repository`, deprecated: its `path` is read as `database.url: sqlite:PATH`,
/// its other keys as `database.sqlite`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyRepositoryConfig {
    pub path: Option<PathBuf>,
    pub synchronous: Option<Synchronous>,
    #[serde(with = "super::duration::option")]
    pub busy_timeout: Option<Duration>,
    pub memory_budget_mib: Option<u32>,
    pub cache_size_kib: Option<u32>,
    pub mmap_size_mib: Option<u32>,
    #[serde(with = "super::duration::option")]
    pub release_memory_when_quiet: Option<Duration>,
    pub connection_pool: Option<PoolConfig>,
}

impl LegacyRepositoryConfig {
    /// The SQLite tuning these keys set, over the defaults; `None` when they set none.
    pub fn sqlite(&self) -> Option<SqliteConfig> {
        let tuned = self.synchronous.is_some()
            || self.busy_timeout.is_some()
            || self.memory_budget_mib.is_some()
            || self.cache_size_kib.is_some()
            || self.mmap_size_mib.is_some()
            || self.release_memory_when_quiet.is_some()
            || self.connection_pool.is_some();
        let default = SqliteConfig::default();
        tuned.then(|| SqliteConfig {
            synchronous: self.synchronous.unwrap_or(default.synchronous),
            busy_timeout: self.busy_timeout.unwrap_or(default.busy_timeout),
            memory_budget_mib: self.memory_budget_mib.unwrap_or(default.memory_budget_mib),
            cache_size_kib: self.cache_size_kib.or(default.cache_size_kib),
            mmap_size_mib: self.mmap_size_mib.unwrap_or(default.mmap_size_mib),
            release_memory_when_quiet: self
                .release_memory_when_quiet
                .unwrap_or(default.release_memory_when_quiet),
            connection_pool: self
                .connection_pool
                .clone()
                .unwrap_or(default.connection_pool),
        })
    }
}
