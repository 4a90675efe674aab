//! The principals repository: API keys (stored as hashes), browser sessions, and usage per
//! day for quotas. What a key may do is decided in `auth`; this file only keeps the rows.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms};

/// A principal's id: who owns a row. Never reused (AUTOINCREMENT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PrincipalId(pub i64);

impl PrincipalId {
    /// `local`: owns what is created while authentication is off.
    pub const LOCAL: Self = Self(1);
}

/// Whose rows a call may see and touch: one principal's, or (an admin's listing) everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The principal new rows are created for.
    pub id: PrincipalId,
    /// Whether rows of other principals are visible too.
    pub sees_all: bool,
}

impl Owner {
    pub fn only(id: PrincipalId) -> Self {
        Self {
            id,
            sees_all: false,
        }
    }

    /// The owner filter as an SQL parameter: `NULL` when every row is visible.
    pub(super) fn filter(self) -> Option<i64> {
        (!self.sees_all).then_some(self.id.0)
    }

    /// The same rule in Rust, for a row read without the filter (a cached one).
    pub(super) fn sees(self, owner: i64) -> bool {
        self.filter().is_none_or(|only| only == owner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    User,
    Admin,
}

impl AccessRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "admin" {
            Self::Admin
        } else {
            Self::User
        }
    }
}

/// Per-key limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    pub turns_per_minute: Option<u32>,
    pub tokens_per_day: Option<u64>,
    pub concurrent_turns: Option<u32>,
}

/// A principal's row, without its key hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrincipalRow {
    pub id: PrincipalId,
    pub name: String,
    pub role: AccessRole,
    /// The key's first characters (`mcpp_AbCd…`); `None` for `local`.
    pub key_prefix: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub quotas: Quotas,
}

/// A key as the server's registry holds it: the row and its hash.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub principal: PrincipalRow,
    pub key_hash: [u8; 32],
}

/// A new key to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: AccessRole,
    pub quotas: Quotas,
    pub key_hash: [u8; 32],
    pub key_prefix: String,
}

/// One principal's usage on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub turns: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The day number (days since the Unix epoch, UTC) of a millisecond timestamp.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

const COLUMNS: &str = "id, name, role, key_prefix, created_at, last_used_at, revoked_at, \
     turns_per_minute, tokens_per_day, concurrent_turns";

pub struct Principals {
    store: Store,
}

impl Principals {
    pub(super) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores a new key. A name already used (even by a revoked key) is refused.
    pub async fn create(&self, key: NewKey) -> Result<PrincipalRow, StoreError> {
        self.store
            .write(move |tx| {
                let row = tx
                    .prepare_cached(&format!(
                        "INSERT INTO principals (name, role, key_hash, key_prefix, created_at,
                             turns_per_minute, tokens_per_day, concurrent_turns)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {COLUMNS}"
                    ))?
                    .query_row(
                        params![
                            key.name,
                            key.role.as_str(),
                            key.key_hash.as_slice(),
                            key.key_prefix,
                            now_ms(),
                            key.quotas.turns_per_minute,
                            key.quotas
                                .tokens_per_day
                                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                            key.quotas.concurrent_turns,
                        ],
                        principal_from_row,
                    )
                    .map_err(|e| match &e {
                        rusqlite::Error::SqliteFailure(f, _)
                            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                        {
                            StoreError::AlreadyExists("a key with this name")
                        }
                        _ => e.into(),
                    })?;
                Ok(row)
            })
            .await
    }

    /// Every principal, `local` first, oldest first.
    pub async fn list(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        self.store
            .read(|conn| {
                let mut statement =
                    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM principals ORDER BY id"))?;
                let rows = statement
                    .query_map([], principal_from_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Every key that is not revoked, with its hash: what the server authenticates against.
    pub async fn active_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.read(active_keys).await
    }

    /// Whether any key was ever created (revoked ones count).
    pub async fn any_key_ever(&self) -> Result<bool, StoreError> {
        self.store
            .read(|conn| {
                Ok(conn
                    .prepare_cached("SELECT 1 FROM principals WHERE key_hash IS NOT NULL LIMIT 1")?
                    .exists([])?)
            })
            .await
    }

    /// Revokes the key named `name`; its sessions end with it. `local` has no key.
    pub async fn revoke(&self, name: String) -> Result<PrincipalRow, StoreError> {
        self.store
            .write(move |tx| {
                let row = tx
                    .prepare_cached(&format!(
                        "UPDATE principals SET revoked_at = ?2
                         WHERE name = ?1 AND key_hash IS NOT NULL AND revoked_at IS NULL
                         RETURNING {COLUMNS}"
                    ))?
                    .query_row(params![name, now_ms()], principal_from_row)
                    .optional()?
                    .ok_or(StoreError::NotFound("active key"))?;
                tx.prepare_cached("DELETE FROM sessions WHERE principal_id = ?1")?
                    .execute([row.id.0])?;
                Ok(row)
            })
            .await
    }

    /// Usage of every principal on `day`.
    pub async fn usage_on(&self, day: i64) -> Result<Vec<(PrincipalId, Usage)>, StoreError> {
        self.store
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT principal_id, turns, prompt_tokens, completion_tokens
                     FROM principal_usage WHERE day = ?1",
                )?;
                let rows = statement
                    .query_map([day], |row| {
                        Ok((
                            PrincipalId(row.get(0)?),
                            Usage {
                                turns: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                                prompt_tokens: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
                                completion_tokens: row.get::<_, i64>(3)?.try_into().unwrap_or(0),
                            },
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Adds usage deltas (per principal, per day) and records when each key was last used,
    /// in one transaction.
    pub async fn record_usage(
        &self,
        deltas: Vec<(PrincipalId, i64, Usage)>,
        last_used: Vec<(PrincipalId, i64)>,
    ) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
                let mut add = tx.prepare_cached(
                    "INSERT INTO principal_usage (principal_id, day, turns, prompt_tokens, completion_tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (principal_id, day) DO UPDATE SET
                         turns = turns + excluded.turns,
                         prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                         completion_tokens = completion_tokens + excluded.completion_tokens",
                )?;
                let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                for (id, day, usage) in &deltas {
                    add.execute(params![
                        id.0,
                        day,
                        int(usage.turns),
                        int(usage.prompt_tokens),
                        int(usage.completion_tokens)
                    ])?;
                }
                let mut touch = tx.prepare_cached(
                    "UPDATE principals SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
                )?;
                for (id, at) in &last_used {
                    touch.execute(params![id.0, at])?;
                }
                Ok(())
            })
            .await
    }

    /// Stores a browser session for `principal` until `expires_at` (ms).
    pub async fn create_session(
        &self,
        token_hash: [u8; 32],
        principal: PrincipalId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
                    .execute([now])?;
                tx.prepare_cached(
                    "INSERT INTO sessions (token_hash, principal_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    token_hash.as_slice(),
                    principal.0,
                    now,
                    expires_at
                ])?;
                Ok(())
            })
            .await
    }

    /// Sessions not yet expired whose key is not revoked: `(hash, principal, expires_at)`.
    pub async fn active_sessions(&self) -> Result<Vec<([u8; 32], PrincipalId, i64)>, StoreError> {
        self.store
            .read(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT s.token_hash, s.principal_id, s.expires_at FROM sessions s
                     JOIN principals p ON p.id = s.principal_id
                     WHERE s.expires_at > ?1 AND p.revoked_at IS NULL",
                )?;
                let rows = statement
                    .query_map([now_ms()], |row| {
                        let hash: Vec<u8> = row.get(0)?;
                        Ok((hash, PrincipalId(row.get(1)?), row.get(2)?))
                    })?
                    .filter_map(|row| match row {
                        Ok((hash, id, expires)) => <[u8; 32]>::try_from(hash)
                            .ok()
                            .map(|h| Ok((h, id, expires))),
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Ends a browser session.
    pub async fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                    .execute([token_hash.as_slice()])?;
                Ok(())
            })
            .await
    }
}

/// Keys not revoked in the database at `path`, read without changing anything (no file, or a
/// database from before keys existed, has none): lets a start be refused before it binds.
pub fn count_active_keys(path: &std::path::Path) -> Result<u64, StoreError> {
    if !path.exists() {
        return Ok(0);
    }
    super::connection::register_sqlite_vec()?;
    super::connection::read_untouched(path, |conn| {
        let has_table = conn
            .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'principals'")?
            .exists([])?;
        if !has_table {
            return Ok(0);
        }
        let count: i64 = conn.query_row(
            "SELECT count(*) FROM principals WHERE key_hash IS NOT NULL AND revoked_at IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    })
}

fn active_keys(conn: &Connection) -> Result<Vec<KeyRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, key_hash FROM principals
         WHERE key_hash IS NOT NULL AND revoked_at IS NULL ORDER BY id"
    ))?;
    let mut rows = statement.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let principal = principal_from_row(row)?;
        let hash: Vec<u8> = row.get(10)?;
        let key_hash = <[u8; 32]>::try_from(hash)
            .map_err(|_| StoreError::Corrupt(format!("key hash of `{}`", principal.name)))?;
        keys.push(KeyRecord {
            principal,
            key_hash,
        });
    }
    Ok(keys)
}

fn principal_from_row(row: &Row<'_>) -> rusqlite::Result<PrincipalRow> {
    let positive = |value: Option<i64>| value.and_then(|v| u32::try_from(v).ok());
    Ok(PrincipalRow {
        id: PrincipalId(row.get(0)?),
        name: row.get(1)?,
        role: AccessRole::parse(&row.get::<_, String>(2)?),
        key_prefix: row.get(3)?,
        created_at: row.get(4)?,
        last_used_at: row.get(5)?,
        revoked_at: row.get(6)?,
        quotas: Quotas {
            turns_per_minute: positive(row.get(7)?),
            tokens_per_day: row
                .get::<_, Option<i64>>(8)?
                .and_then(|v| u64::try_from(v).ok()),
            concurrent_turns: positive(row.get(9)?),
        },
    })
}
