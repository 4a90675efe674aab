//! The `/mcp` endpoint's sessions (`server.mcp`): who opened each one (a session id is usable
//! only by its owner), when each was last used, and the cap. rmcp's session manager closes a
//! session idle for `session_idle_timeout`; at `max_sessions`, the session idle longest makes
//! room if it has been idle long enough, else a new session is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Serialize;

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
    evictable_after: Duration,
    evicted: AtomicU64,
    refused: AtomicU64,
}

struct Entry {
    owner: PrincipalId,
    last_used: Instant,
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

    pub fn record(&self, session: &str, owner: PrincipalId) {
        self.lock().insert(
            session.to_string(),
            Entry {
                owner,
                last_used: Instant::now(),
            },
        );
    }

    pub fn forget(&self, session: &str) {
        self.lock().remove(session);
    }

    /// Held while a session may be created: makes room first (closing the session idle
    /// longest if the cap is reached and it is evictable), or refuses.
    pub async fn admit_new(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, Full> {
        let creating = self.creating.lock().await;
        let live: Vec<_> = self.manager.sessions.read().await.keys().cloned().collect();
        if live.len() < self.max {
            return Ok(creating);
        }
        let victim = {
            let mut entries = self.lock();
            // Sessions rmcp closed (idle, ended) are forgotten here too.
            entries.retain(|id, _| live.iter().any(|l| l.as_ref() == id.as_str()));
            entries
                .iter()
                .filter(|(_, e)| e.last_used.elapsed() >= self.evictable_after)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone())
        };
        let Some(victim) = victim else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        };
        if let Some(id) = live.into_iter().find(|l| l.as_ref() == victim.as_str())
            && let Err(error) = self.manager.close_session(&id).await
        {
            tracing::warn!(%error, "closing an idle /mcp session failed");
        }
        self.forget(&victim);
        self.evicted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("closed the /mcp session idle longest to make room");
        Ok(creating)
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
