//! Opening SQLite: the sqlite-vec registration, per-connection pragmas, the two r2d2 pools,
//! and the checks made on an existing file before anything writes to it.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use scheduled_thread_pool::ScheduledThreadPool;

use super::StoreError;
use crate::config::{RepositoryConfig, Synchronous};

/// Registers sqlite-vec as an auto-extension, once per process, so every connection opened
/// afterwards (every pooled one included) has `vec0`.
pub fn register_sqlite_vec() -> Result<(), StoreError> {
    static RESULT: OnceLock<i32> = OnceLock::new();
    let rc = *RESULT.get_or_init(|| {
        type EntryPoint = unsafe extern "C" fn(
            *mut rusqlite::ffi::sqlite3,
            *mut *mut std::ffi::c_char,
            *const rusqlite::ffi::sqlite3_api_routines,
        ) -> std::ffi::c_int;
        // SAFETY: sqlite-vec declares `sqlite3_vec_init` without parameters, but it is a
        // standard SQLite extension entry point with exactly the `EntryPoint` signature;
        // SQLite calls it with those three arguments for each new connection.
        #[allow(unsafe_code)]
        unsafe {
            let entry = std::mem::transmute::<*const (), EntryPoint>(
                sqlite_vec::sqlite3_vec_init as *const (),
            );
            rusqlite::ffi::sqlite3_auto_extension(Some(entry))
        }
    });
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "registering sqlite-vec failed with code {rc}"
        )))
    }
}

/// PRAGMAs applied to every pooled connection when it opens.
#[derive(Debug, Clone)]
pub struct Pragmas {
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
    pub cache_size_kib: u32,
    pub mmap_size_mib: u32,
    pub read_only: bool,
}

/// WAL pages after which a commit checkpoints by itself (and so lets the next write start the
/// WAL over), SQLite's default. With the background checkpointer on, most pages are copied by
/// then (see `Store::open_checked`).
const AUTOCHECKPOINT_PAGES: u32 = 1000;

impl Pragmas {
    pub fn from_config(config: &RepositoryConfig, read_only: bool) -> Self {
        Self {
            busy_timeout: config.sqlite.busy_timeout,
            synchronous: config.sqlite.synchronous,
            cache_size_kib: config.sqlite.page_cache_kib(),
            mmap_size_mib: config.sqlite.mmap_size_mib,
            read_only,
        }
    }

    pub fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.busy_timeout(self.busy_timeout)?;
        let synchronous = match self.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -{};
             PRAGMA mmap_size = {};
             PRAGMA query_only = {};
             PRAGMA wal_autocheckpoint = {};",
            self.cache_size_kib,
            u64::from(self.mmap_size_mib) << 20,
            if self.read_only { "ON" } else { "OFF" },
            AUTOCHECKPOINT_PAGES,
        ))?;
        conn.set_prepared_statement_cache_capacity(64);
        // Plans that never depend on bound values. Without this, SQLite expires a cached
        // statement whenever a parameter it might plan on (a LIMIT ?, a range bound) is bound
        // again, so every history read was parsed and planned anew.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        Ok(())
    }
}

impl r2d2::CustomizeConnection<Connection, rusqlite::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        self.apply(conn)
    }
}

/// Logs pool errors (a connection that failed to open or a failed health test) with tracing.
#[derive(Debug)]
struct TracingErrorHandler(&'static str);

impl r2d2::HandleError<rusqlite::Error> for TracingErrorHandler {
    fn handle_error(&self, error: rusqlite::Error) {
        tracing::warn!(pool = self.0, %error, "database connection error");
    }
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<SqliteConnectionManager>;

/// The thread that opens pooled connections (both pools of a store share it).
pub fn opener() -> Arc<ScheduledThreadPool> {
    Arc::new(
        ScheduledThreadPool::builder()
            .num_threads(1)
            .thread_name_pattern("db-open-{}")
            .build(),
    )
}

/// A pool of `size` connections to `path`, all opened now (by `opener`) and kept with their
/// page and statement caches for the life of the store. (Opening them as the load needs them
/// would save ~130 KB each at rest, SQLite's schema and lookaside memory, but was tried and
/// left out: a connection opened while the checkpointer ran let a copy of the main file taken
/// after the checkpoint read as malformed, in about one test run in three under load.)
pub fn build_pool(
    path: &Path,
    name: &'static str,
    size: u32,
    pragmas: Pragmas,
    timeout: Duration,
    opener: Arc<ScheduledThreadPool>,
) -> Result<Pool, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    flags |= if pragmas.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let manager = SqliteConnectionManager::file(path).with_flags(flags);
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(size))
        .test_on_check_out(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(timeout)
        .thread_pool(opener)
        .error_handler(Box::new(TracingErrorHandler(name)))
        .connection_customizer(Box::new(pragmas))
        .build(manager)
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Runs `f` on a read-only connection to `path`, then removes the `-wal` and `-shm` files
/// that opening it created (a read-only connection to a WAL database leaves them behind, and a
/// refused start must change nothing on disk). Files that existed before, or a WAL that holds
/// data (another process wrote meanwhile), are left alone.
pub fn read_untouched<T>(
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let sidecar = |suffix: &str| {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (wal, shm) = (sidecar("-wal"), sidecar("-shm"));
    let had = (wal.exists(), shm.exists());
    let result = {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        f(&conn)
    };
    let wal_empty = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
    if !had.0 && wal_empty {
        let _ = std::fs::remove_file(&wal);
        if !had.1 {
            let _ = std::fs::remove_file(&shm);
        }
    }
    result
}

/// Makes sure the file can be used, without modifying an existing one: creates the parent
/// directory, creates a new file with mode 0600, or checks that an existing file is SQLite
/// and writable.
pub fn prepare_file(path: &Path) -> Result<bool, StoreError> {
    let open_error = |reason: String| StoreError::Open {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            open_error(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(open_error(e.to_string())),
    }
    let metadata = std::fs::metadata(path).map_err(|e| open_error(e.to_string()))?;
    if !metadata.is_file() {
        return Err(open_error("it is not a regular file".into()));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| open_error(e.to_string()))?;
    read_untouched(path, |conn| {
        match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
            row.get::<_, i64>(0)
        }) {
            Ok(_) => Ok(false),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                Err(StoreError::NotADatabase {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(open_error(e.to_string())),
        }
    })
}
