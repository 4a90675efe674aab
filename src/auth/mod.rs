//! Who is calling: API keys and browser sessions resolved to a [`Caller`] (a principal with
//! its role and quotas), whether credentials are required at all (`server.auth.mode`), failed
//! attempts throttled per address, and per-key usage. Knows nothing of HTTP: the `http` layer
//! reads the credentials and asks here.
//!
//! Keys live in the database (the CLI may add or revoke them while the server runs); the server
//! keeps them in memory and reads them again every [`REFRESH`], so a new or revoked key is seen
//! within a second, and a revoked key's open sockets are told through [`Caller::revoked`].

pub mod cli;
mod meter;
pub mod secrets;
mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use meter::Meter;
pub use meter::{QuotaExceeded, TurnPermit};
use throttle::Throttle;

use crate::config::{AuthConfig, AuthMode};
use crate::store::{
    AccessRole, NewKey, Owner, PrincipalId, PrincipalRow, Quotas, Store, StoreError, Usage, day_of,
    now_ms,
};

/// How often keys and sessions are read again, and usage written.
pub const REFRESH: Duration = Duration::from_millis(500);

/// A principal as a request sees it.
#[derive(Debug)]
pub struct Principal {
    pub id: PrincipalId,
    pub name: String,
    pub role: AccessRole,
    pub quotas: Quotas,
    meter: Arc<Meter>,
    /// Cancelled when the key is revoked.
    revoked: CancellationToken,
}

/// Who made a request: cheap to clone, carried in request extensions and by sockets.
#[derive(Debug, Clone)]
pub struct Caller(Arc<Principal>, Option<CancellationToken>);

impl Caller {
    pub fn id(&self) -> PrincipalId {
        self.0.id
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn is_admin(&self) -> bool {
        self.0.role == AccessRole::Admin
    }

    /// The rows this caller sees: its own; an admin's conversation lists see everyone's.
    pub fn owner(&self) -> Owner {
        Owner {
            id: self.0.id,
            sees_all: self.is_admin(),
        }
    }

    /// Admits a turn within the key's quotas; hold the permit for the turn's length.
    pub fn admit_turn(&self) -> Result<TurnPermit<'_>, QuotaExceeded> {
        self.0.meter.admit(&self.0.quotas)
    }

    /// Admits a model call inside a running turn (an MCP server's sampling) within the key's
    /// quotas: a turn of its own, with one slot beyond `concurrent_turns`.
    pub fn admit_nested(&self) -> Result<TurnPermit<'_>, QuotaExceeded> {
        self.0.meter.admit_nested(&self.0.quotas)
    }

    /// Whether the key's tokens for today are not used up.
    pub fn within_tokens(&self) -> Result<(), QuotaExceeded> {
        self.0.meter.within_tokens(&self.0.quotas)
    }

    /// Counts the provider tokens of one model reply against the key's daily quota.
    pub fn spent(&self, prompt_tokens: u64, completion_tokens: u64) {
        self.0.meter.spent(prompt_tokens, completion_tokens);
    }

    /// Resolves when the caller's credentials end: its key is revoked, or, for a browser
    /// session, the session is logged out or expires. What a socket or a turn holds on to
    /// ends then.
    pub async fn revoked(&self) {
        match &self.1 {
            Some(session) => {
                tokio::select! {
                    () = self.0.revoked.cancelled() => {}
                    () = session.cancelled() => {}
                }
            }
            None => self.0.revoked.cancelled().await,
        }
    }
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Missing, unknown, malformed, expired or revoked: one answer for all, no oracle.
    #[error(
        "a valid API key is required: send `Authorization: Bearer <key>` (keys come from `mcp-platform keys create`)"
    )]
    Unauthorized,
    /// Too many failed attempts from this address.
    #[error("too many failed attempts from this address; retry in {0} s")]
    Throttled(u64),
}

/// What a client presented.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    Session(&'a str),
}

/// A key as `keys list` and `GET /api/keys` show it: never the key itself.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    #[serde(flatten)]
    pub principal: PrincipalRow,
    pub usage_today: Usage,
}

#[derive(Debug, Default)]
struct Registry {
    /// A key was created once: under `auto`, revoking the last key does not open the server.
    keys_ever: bool,
    keys: Vec<([u8; 32], Arc<Principal>)>,
    sessions: HashMap<[u8; 32], Session>,
}

/// A browser session: whose, until when, and the token its sockets watch (cancelled when it
/// is logged out, expires or disappears).
#[derive(Debug, Clone)]
struct Session {
    principal: PrincipalId,
    expires_at: i64,
    ended: CancellationToken,
}

pub struct Auth {
    store: Store,
    mode: AuthMode,
    loopback_only: bool,
    session_ttl: Duration,
    registry: RwLock<Arc<Registry>>,
    meters: Mutex<HashMap<PrincipalId, Arc<Meter>>>,
    throttle: Throttle,
    /// The caller while authentication is off; replaced (and the old one told, so that its
    /// sockets close) when authentication turns on.
    local: RwLock<Caller>,
    was_required: std::sync::atomic::AtomicBool,
    /// Serialises [`Auth::refresh`], logins and logouts.
    refreshing: tokio::sync::Mutex<()>,
}

impl Auth {
    /// Reads keys, sessions and today's usage. `loopback_only`: the server is bound to a
    /// loopback address (under `auto`, keys are then needed only once one exists).
    pub async fn load(
        store: Store,
        config: &AuthConfig,
        loopback_only: bool,
    ) -> Result<Self, StoreError> {
        let local = Caller(
            Arc::new(Principal {
                id: PrincipalId::LOCAL,
                name: "local".into(),
                role: AccessRole::Admin,
                quotas: Quotas::default(),
                meter: Arc::default(),
                revoked: CancellationToken::new(),
            }),
            None,
        );
        let mut meters = HashMap::from([(PrincipalId::LOCAL, local.0.meter.clone())]);
        for (id, usage) in store.principals().usage_on(day_of(now_ms())).await? {
            meters.insert(id, Arc::new(Meter::with_usage(usage)));
        }
        let auth = Self {
            store,
            mode: config.mode,
            loopback_only,
            session_ttl: config.session_ttl,
            registry: RwLock::default(),
            meters: Mutex::new(meters),
            throttle: Throttle::new(config.max_failures_per_minute),
            local: RwLock::new(local),
            was_required: std::sync::atomic::AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(()),
        };
        auth.refresh().await?;
        Ok(auth)
    }

    /// Whether keys exist that are not revoked (a non-loopback start needs one).
    pub fn has_keys(&self) -> bool {
        !self.registry().keys.is_empty()
    }

    /// Whether requests must carry credentials now.
    pub fn required(&self) -> bool {
        match self.mode {
            AuthMode::None => false,
            AuthMode::Required => true,
            AuthMode::Auto => !self.loopback_only || self.registry().keys_ever,
        }
    }

    /// One phrase for the start-up line.
    pub fn describe(&self) -> String {
        let active = self.registry().keys.len();
        match (self.mode, self.required()) {
            (AuthMode::None, _) => "off (server.auth.mode: none)".into(),
            (_, true) => format!("API keys required ({active} active)"),
            (_, false) => {
                "off until the first key (loopback; `mcp-platform keys create` turns it on)".into()
            }
        }
    }

    /// The caller while authentication is off: `local`, who sees everything.
    pub fn local(&self) -> Caller {
        self.local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Once keys become required (the first key was created), what was opened without one
    /// is told to close: `local`'s token is cancelled and stays so while keys are required, so
    /// a request that read "not required" just before still gets a caller that closes at once.
    /// A fresh `local` is made only when keys stop being required.
    fn note_requirement(&self) {
        use std::sync::atomic::Ordering;
        let required = self.required();
        let was = self.was_required.swap(required, Ordering::Relaxed);
        if required && !was {
            self.local().0.revoked.cancel();
        } else if !required && was {
            let mut local = self.local.write().unwrap_or_else(PoisonError::into_inner);
            *local = Caller(
                Arc::new(Principal {
                    id: local.0.id,
                    name: local.0.name.clone(),
                    role: local.0.role,
                    quotas: local.0.quotas,
                    meter: local.0.meter.clone(),
                    revoked: CancellationToken::new(),
                }),
                None,
            );
        }
    }

    fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `Err(Throttled)` while `address` has failed too often (a door that checks a secret of
    /// its own, such as `/metrics`' token, asks this first).
    pub fn check_throttle(&self, address: IpAddr) -> Result<(), Refusal> {
        self.throttle.check(address).map_err(Refusal::Throttled)
    }

    /// Resolves credentials to a caller. With authentication off, whatever was sent is
    /// ignored (SDKs always send a key) and the caller is `local`.
    pub fn authenticate(
        &self,
        credential: Credential<'_>,
        address: IpAddr,
    ) -> Result<Caller, Refusal> {
        if !self.required() {
            return Ok(self.local());
        }
        self.throttle.check(address).map_err(Refusal::Throttled)?;
        let found = match credential {
            Credential::None => None,
            Credential::Bearer(key) => self.by_key(key),
            Credential::Session(token) => self.by_session(token),
        };
        if let Some(caller) = found {
            caller.0.meter.used();
            return Ok(caller);
        }
        // No credentials at all is not a guess (a page before its login).
        if !matches!(credential, Credential::None) {
            self.throttle.failed(address);
        }
        Err(Refusal::Unauthorized)
    }

    /// The key's principal. Every stored hash is compared, in constant time, whichever
    /// matches: an unknown and a revoked key take the same path and the same time.
    fn by_key(&self, key: &str) -> Option<Caller> {
        let shaped = secrets::looks_like(key, secrets::KEY_PREFIX);
        let hash = secrets::hash(if shaped { key } else { "" });
        let registry = self.registry();
        let mut found = None;
        for (stored, principal) in &registry.keys {
            if secrets::same(stored, &hash) {
                found = Some(principal.clone());
            }
        }
        found.filter(|_| shaped).map(|p| Caller(p, None))
    }

    fn by_session(&self, token: &str) -> Option<Caller> {
        if !secrets::looks_like(token, secrets::SESSION_PREFIX) {
            return None;
        }
        let registry = self.registry();
        let session = registry.sessions.get(&secrets::hash(token))?;
        if session.expires_at <= now_ms() {
            return None;
        }
        registry
            .keys
            .iter()
            .find(|(_, p)| p.id == session.principal)
            .map(|(_, p)| Caller(p.clone(), Some(session.ended.clone())))
    }

    /// Exchanges a key for a browser session token (stored hashed), valid `session_ttl`.
    pub async fn login(&self, key: &str, address: IpAddr) -> Result<(String, Caller), LoginError> {
        self.throttle
            .check(address)
            .map_err(|s| LoginError::Refused(Refusal::Throttled(s)))?;
        let Some(caller) = self.by_key(key) else {
            self.throttle.failed(address);
            return Err(LoginError::Refused(Refusal::Unauthorized));
        };
        let token = secrets::generate(secrets::SESSION_PREFIX).map_err(LoginError::Random)?;
        let ttl_ms = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now_ms().saturating_add(ttl_ms);
        let hash = secrets::hash(&token);
        let _serial = self.refreshing.lock().await;
        self.store
            .principals()
            .create_session(hash, caller.id(), expires_at)
            .await?;
        self.update(|registry| {
            registry.sessions.insert(
                hash,
                Session {
                    principal: caller.id(),
                    expires_at,
                    ended: CancellationToken::new(),
                },
            );
        });
        caller.0.meter.used();
        Ok((token, caller))
    }

    /// Ends a browser session (unknown tokens are fine: the cookie is cleared anyway).
    pub async fn logout(&self, token: &str) -> Result<(), StoreError> {
        let hash = secrets::hash(token);
        let _serial = self.refreshing.lock().await;
        self.store.principals().delete_session(hash).await?;
        self.update(|registry| {
            if let Some(session) = registry.sessions.remove(&hash) {
                session.ended.cancel();
            }
        });
        Ok(())
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    fn update(&self, change: impl FnOnce(&mut Registry)) {
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = Registry {
            keys_ever: guard.keys_ever,
            keys: guard.keys.clone(),
            sessions: guard.sessions.clone(),
        };
        change(&mut next);
        *guard = Arc::new(next);
    }

    /// Reads keys and sessions again; principals whose key is gone or revoked are told.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        // One refresh at a time, and no login or logout in between: a slower refresh must not
        // install an older view of keys and sessions over a newer one.
        let _serial = self.refreshing.lock().await;
        let principals = self.store.principals();
        let records = principals.active_keys().await?;
        let sessions = principals.active_sessions().await?;
        let keys_ever = principals.any_key_ever().await?;
        let previous = self.registry();
        let mut keys = Vec::with_capacity(records.len());
        for record in records {
            let row = record.principal;
            let kept = previous
                .keys
                .iter()
                .find(|(hash, p)| *hash == record.key_hash && p.id == row.id)
                .filter(|(_, p)| {
                    p.role == row.role && p.quotas == row.quotas && p.name == row.name
                });
            let principal = match kept {
                Some((_, principal)) => principal.clone(),
                None => Arc::new(Principal {
                    id: row.id,
                    meter: self.meter(row.id),
                    name: row.name,
                    role: row.role,
                    quotas: row.quotas,
                    revoked: previous
                        .keys
                        .iter()
                        .find(|(_, p)| p.id == row.id)
                        .map_or_else(CancellationToken::new, |(_, p)| p.revoked.clone()),
                }),
            };
            keys.push((record.key_hash, principal));
        }
        for (_, gone) in &previous.keys {
            if !keys.iter().any(|(_, p)| p.id == gone.id) {
                tracing::info!(key = %gone.name, "API key revoked; closing its connections");
                gone.revoked.cancel();
            }
        }
        let now = now_ms();
        let sessions: HashMap<[u8; 32], Session> = sessions
            .into_iter()
            .filter(|(_, _, expires)| *expires > now)
            .map(|(hash, id, expires)| {
                let ended = previous
                    .sessions
                    .get(&hash)
                    .map_or_else(CancellationToken::new, |s| s.ended.clone());
                let session = Session {
                    principal: id,
                    expires_at: expires,
                    ended,
                };
                (hash, session)
            })
            .collect();
        // Logged out elsewhere, expired, or its key gone: its sockets close.
        for (hash, session) in &previous.sessions {
            if !sessions.contains_key(hash) {
                session.ended.cancel();
            }
        }
        *self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Registry {
            keys_ever,
            keys,
            sessions,
        });
        self.note_requirement();
        Ok(())
    }

    fn meter(&self, id: PrincipalId) -> Arc<Meter> {
        self.meters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default()
            .clone()
    }

    /// Writes the usage counted since the last flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let meters: Vec<(PrincipalId, Arc<Meter>)> = self
            .meters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, meter)| (*id, meter.clone()))
            .collect();
        let mut deltas = Vec::new();
        let mut last_used = Vec::new();
        let mut taken = Vec::new();
        for (id, meter) in &meters {
            let (day, usage, used_at) = meter.take_unflushed();
            if usage != Usage::default() {
                deltas.push((*id, day, usage));
            }
            if let Some(at) = used_at {
                last_used.push((*id, at));
            }
            taken.push((meter.clone(), usage, used_at));
        }
        if deltas.is_empty() && last_used.is_empty() {
            return Ok(());
        }
        let result = self
            .store
            .principals()
            .record_usage(deltas, last_used)
            .await;
        if result.is_err() {
            for (meter, usage, used_at) in taken {
                meter.restore_unflushed(usage, used_at);
            }
        }
        result
    }

    /// Refreshes keys and flushes usage every [`REFRESH`] until cancelled, then flushes once
    /// more.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(REFRESH);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {
                    if let Err(error) = self.refresh().await {
                        tracing::warn!(%error, "reading API keys failed; keeping the last ones");
                    }
                    if let Err(error) = self.flush().await {
                        tracing::warn!(%error, "writing key usage failed; will retry");
                    }
                }
            }
        }
        if let Err(error) = self.flush().await {
            tracing::warn!(%error, "writing key usage at shutdown failed");
        }
    }

    /// Every principal with today's usage (in memory, so current to the turn).
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = self.store.principals().list().await?;
        Ok(rows
            .into_iter()
            .map(|principal| KeyInfo {
                usage_today: self.meter(principal.id).today(),
                principal,
            })
            .collect())
    }

    /// Creates a key (and reads keys again, so it works at once).
    pub async fn create_key(
        &self,
        name: &str,
        role: AccessRole,
        quotas: Quotas,
    ) -> Result<(String, PrincipalRow), KeyError> {
        let row = create_key(&self.store, name, role, quotas).await?;
        self.refresh().await?;
        Ok(row)
    }

    /// Revokes a key: its sessions end and its sockets close.
    pub async fn revoke(&self, name: &str) -> Result<PrincipalRow, StoreError> {
        let row = self.store.principals().revoke(name.to_string()).await?;
        self.refresh().await?;
        Ok(row)
    }

    /// Per-key figures for the admin's `/health`.
    pub fn snapshot(&self) -> AuthSnapshot {
        let registry = self.registry();
        AuthSnapshot {
            mode: self.mode,
            required: self.required(),
            keys: registry
                .keys
                .iter()
                .map(|(_, p)| {
                    let usage = p.meter.today();
                    (
                        p.name.clone(),
                        KeyUsage {
                            role: p.role,
                            in_flight: p.meter.in_flight(),
                            turns_today: usage.turns,
                            tokens_today: usage.tokens(),
                            quotas: p.quotas,
                        },
                    )
                })
                .collect(),
            sessions: registry.sessions.len(),
        }
    }
}

/// `/health` `auth` (admins only).
#[derive(Debug, Clone, Serialize)]
pub struct AuthSnapshot {
    pub mode: AuthMode,
    pub required: bool,
    pub keys: std::collections::BTreeMap<String, KeyUsage>,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyUsage {
    pub role: AccessRole,
    pub in_flight: u32,
    pub turns_today: u64,
    pub tokens_today: u64,
    pub quotas: Quotas,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Refused(Refusal),
    #[error("no random numbers: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key name must be 1-64 characters of letters, digits, `-`, `_` or `.` (got `{0}`)")]
    InvalidName(String),
    #[error("`local` is the name of the owner of data created without keys; choose another")]
    Reserved,
    #[error("no random numbers: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a key in the database: the key (shown once) and its row. The CLI calls this
/// directly, with or without a server running.
pub async fn create_key(
    store: &Store,
    name: &str,
    role: AccessRole,
    quotas: Quotas,
) -> Result<(String, PrincipalRow), KeyError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(KeyError::InvalidName(name.chars().take(80).collect()));
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(KeyError::Reserved);
    }
    let key = secrets::generate(secrets::KEY_PREFIX).map_err(KeyError::Random)?;
    let row = store
        .principals()
        .create(NewKey {
            name: name.to_string(),
            role,
            quotas,
            key_hash: secrets::hash(&key),
            key_prefix: secrets::shown_prefix(&key),
        })
        .await?;
    Ok((key, row))
}
