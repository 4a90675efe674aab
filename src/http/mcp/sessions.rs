//! The `/mcp` endpoint's sessions (`server.mcp`): who opened each one (a session id is usable
//! only by its owner), when each was last used, and the caps. rmcp's session manager closes a
//! session idle for `session_idle_timeout`. A key at `max_sessions_per_key` makes room from
//! its own sessions only; at `max_sessions`, the key holding the most gives one up. Either way
//! the session closed is one idle long enough (its longest idle); if there is none, the new
//! session is refused. One key cannot crowd the others out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::McpEndpointConfig;
use crate::store::PrincipalId;

/// A session idle this long may be closed to make room at the cap (or half the idle timeout,
/// if shorter).
const EVICTABLE_AFTER: Duration = Duration::from_secs(30);

pub struct McpSessions {
    manager: Arc<LocalSessionManager>,
    entries: Mutex<HashMap<String, Entry>>,
    /// New sessions are made one at a time, so the cap holds under concurrent `initialize`s.
    creating: tokio::sync::Mutex<()>,
    max: usize,
    max_per_key: usize,
    evictable_after: Duration,
    evicted: AtomicU64,
    refused: AtomicU64,
}

struct Entry {
    owner: PrincipalId,
    last_used: Instant,
    /// Cancelled once the session is closed or found gone.
    ended: CancellationToken,
}

/// `/health` `mcp_endpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct McpSessionsSnapshot {
    pub sessions: usize,
    pub max_sessions: usize,
    /// Sessions closed to make room for a new one at the cap.
    pub evicted: u64,
    /// New sessions refused at the cap (`503 too_many_sessions`).
    pub refused: u64,
}

/// No room for a new session: every open one was used recently.
#[derive(Debug)]
pub struct Full;

impl McpSessions {
    pub fn new(config: &McpEndpointConfig) -> Self {
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(config.session_idle_timeout);
        Self {
            manager: Arc::new(manager),
            entries: Mutex::default(),
            creating: tokio::sync::Mutex::new(()),
            max: config.max_sessions,
            max_per_key: config.max_sessions_per_key.min(config.max_sessions),
            evictable_after: EVICTABLE_AFTER.min(config.session_idle_timeout / 2),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// rmcp's session manager, for the endpoint's service.
    pub fn manager(&self) -> Arc<LocalSessionManager> {
        self.manager.clone()
    }

    /// The principal that opened `session`, marking it used now.
    pub fn use_session(&self, session: &str) -> Option<PrincipalId> {
        let mut entries = self.lock();
        let entry = entries.get_mut(session)?;
        entry.last_used = Instant::now();
        Some(entry.owner)
    }

    /// A new session of `owner`; the token is cancelled once it is closed or found gone.
    pub fn record(&self, session: &str, owner: PrincipalId) -> CancellationToken {
        let ended = CancellationToken::new();
        self.lock().insert(
            session.to_string(),
            Entry {
                owner,
                last_used: Instant::now(),
                ended: ended.clone(),
            },
        );
        ended
    }

    pub fn forget(&self, session: &str) {
        if let Some(entry) = self.lock().remove(session) {
            entry.ended.cancel();
        }
    }

    /// Closes `session` (to make room, or its owner's credentials ended): its streams end, its
    /// id is unknown.
    pub async fn close(&self, session: &str) {
        let live = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .find(|id| id.as_ref() == session)
            .cloned();
        if let Some(id) = live
            && let Err(error) = self.manager.close_session(&id).await
        {
            tracing::warn!(%error, "closing an /mcp session failed");
        }
        self.forget(session);
    }

    /// Held while `owner` may create a session: makes room first (see the module's text), or
    /// refuses.
    pub async fn admit_new(
        &self,
        owner: PrincipalId,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, Full> {
        let creating = self.creating.lock().await;
        let live: Vec<_> = self.manager.sessions.read().await.keys().cloned().collect();
        let victims = {
            let mut entries = self.lock();
            // Sessions rmcp closed (idle, ended) are forgotten here too.
            entries.retain(|id, entry| {
                let open = live.iter().any(|l| l.as_ref() == id.as_str());
                if !open {
                    entry.ended.cancel();
                }
                open
            });
            let mut victims = Vec::new();
            match self.over_own_cap(&entries, owner) {
                Ok(None) => {}
                Ok(Some(own)) => victims.push(own),
                Err(Full) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Full);
                }
            }
            if live.len().saturating_sub(victims.len()) >= self.max {
                let Some(victim) = self.idle_of_the_largest(&entries, &victims) else {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Full);
                };
                victims.push(victim);
            }
            victims
        };
        for victim in victims {
            self.close(&victim).await;
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("closed an /mcp session to make room");
        }
        Ok(creating)
    }

    /// When `owner` holds `max_per_key` sessions already: its session idle longest, if long
    /// enough; `Err` if none is.
    fn over_own_cap(
        &self,
        entries: &HashMap<String, Entry>,
        owner: PrincipalId,
    ) -> Result<Option<String>, Full> {
        let own: Vec<(&String, &Entry)> =
            entries.iter().filter(|(_, e)| e.owner == owner).collect();
        if own.len() < self.max_per_key {
            return Ok(None);
        }
        own.into_iter()
            .filter(|(_, e)| e.last_used.elapsed() >= self.evictable_after)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| Some(id.clone()))
            .ok_or(Full)
    }

    /// At the whole cap: the session idle longest (and long enough) of the key that holds the
    /// most sessions; `taken` are already chosen.
    fn idle_of_the_largest(
        &self,
        entries: &HashMap<String, Entry>,
        taken: &[String],
    ) -> Option<String> {
        let mut held: HashMap<PrincipalId, usize> = HashMap::new();
        for entry in entries.values() {
            *held.entry(entry.owner).or_default() += 1;
        }
        entries
            .iter()
            .filter(|(id, e)| e.last_used.elapsed() >= self.evictable_after && !taken.contains(*id))
            .max_by_key(|(_, e)| (held.get(&e.owner).copied(), e.last_used.elapsed()))
            .map(|(id, _)| id.clone())
    }

    pub async fn snapshot(&self) -> McpSessionsSnapshot {
        McpSessionsSnapshot {
            sessions: self.manager.sessions.read().await.len(),
            max_sessions: self.max,
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
