//! `mcp-platform backup PATH`: a consistent copy of the database while the server runs, made
//! with SQLite's online backup API in one step (one read transaction: the copy is the
//! database as of one commit, whatever the server writes meanwhile; a copy made in several
//! steps would start over at every write of a busy server). The copy is written beside its
//! target, checked (`PRAGMA integrity_check`), made durable, then renamed into place, so a
//! failed backup never leaves a half-written file at `PATH`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::StoreError;

/// How long the backup waits for a write lock held by the server before it reads.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub conversations: i64,
    pub messages: i64,
    pub memories: i64,
    pub took_ms: u128,
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidInput(message)
}

/// Copies the database at `source` to `target` (which must not exist yet).
pub fn backup(source: &Path, target: &Path) -> Result<BackupReport, StoreError> {
    let started = Instant::now();
    // The vector tables' module, for the integrity check of the copy.
    super::connection::register_sqlite_vec()?;
    if !source.exists() {
        return Err(invalid(format!(
            "there is no database at {} (database.url)",
            source.display()
        )));
    }
    if target.exists() {
        return Err(invalid(format!(
            "{} exists: choose a new path (a backup never overwrites a file)",
            target.display()
        )));
    }
    let partial = partial_path(target);
    let _ = std::fs::remove_file(&partial);
    let result = copy(source, &partial).and_then(|()| check(&partial));
    let counts = match result {
        Ok(counts) => counts,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, target)
        .map_err(|e| invalid(format!("cannot move the copy to {}: {e}", target.display())))?;
    sync_dir(target);
    let bytes = std::fs::metadata(target).map_or(0, |m| m.len());
    Ok(BackupReport {
        path: target.to_path_buf(),
        bytes,
        conversations: counts.0,
        messages: counts.1,
        memories: counts.2,
        took_ms: started.elapsed().as_millis(),
    })
}

/// `target` with `.partial` added to its name.
fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

fn copy(source: &Path, partial: &Path) -> Result<(), StoreError> {
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(BUSY_TIMEOUT)?;
    let mut to = Connection::open(partial)?;
    restrict(partial);
    {
        let backup = Backup::new(&from, &mut to)?;
        // Every page in one step (-1): one read transaction, one consistent snapshot. A
        // step that finds the database locked is tried again, for BUSY_TIMEOUT at most.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                _ if Instant::now() >= deadline => {
                    return Err(invalid(
                        "the database stayed locked too long to be copied; try again".into(),
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // A standalone file: no WAL beside it.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Only the owner may read a copy of the conversations.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// Checks the copy and counts what it holds: (conversations, messages, memories).
fn check(partial: &Path) -> Result<(i64, i64, i64), StoreError> {
    let copy = Connection::open(partial)?;
    let verdict: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy failed its integrity check: {verdict}"
        )));
    }
    let count = |table: &str| -> Result<i64, StoreError> {
        Ok(
            copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })?,
        )
    };
    let counts = (
        count("conversations")?,
        count("messages")?,
        count("memories")?,
    );
    drop(copy);
    std::fs::File::open(partial)
        .and_then(|file| file.sync_all())
        .map_err(|e| invalid(format!("cannot flush the copy: {e}")))?;
    Ok(counts)
}

/// Makes the rename durable (best effort: not every filesystem allows it).
fn sync_dir(target: &Path) {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepositoryConfig;
    use crate::store::{NewMessage, Role, Store};

    #[tokio::test]
    async fn a_backup_is_a_checked_copy_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("dir");
        let config = RepositoryConfig {
            path: dir.path().join("chat.db"),
            ..RepositoryConfig::default()
        };
        let store = Store::open(&config).expect("store");
        let repo = store.conversations();
        let conversation = repo.create(Some("kept".into())).await.expect("create");
        repo.append(
            &conversation.id,
            vec![
                NewMessage::new(Role::User, "question"),
                NewMessage::new(Role::Assistant, "answer"),
            ],
        )
        .await
        .expect("append");

        let target = dir.path().join("backups/copy.db");
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let report = backup(&config.path, &target).expect("backup");
        assert_eq!((report.conversations, report.messages), (1, 2));
        assert!(report.bytes > 0);
        assert!(!partial_path(&target).exists());
        let copy = Connection::open(&target).expect("open");
        let title: String = copy
            .query_row("SELECT title FROM conversations", [], |row| row.get(0))
            .expect("title");
        assert_eq!(title, "kept");

        let again = backup(&config.path, &target).expect_err("exists");
        assert!(again.to_string().contains("never overwrites"), "{again}");
        let missing =
            backup(&dir.path().join("nope.db"), &dir.path().join("x.db")).expect_err("no source");
        assert!(missing.to_string().contains("no database"), "{missing}");
    }
}
