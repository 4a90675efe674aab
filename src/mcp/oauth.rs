//! OAuth 2.1 for remote MCP servers, as the MCP authorization spec describes, through rmcp's
//! `auth` module: a server answering 401 with a `WWW-Authenticate` challenge is `needs_login`
//! (its tools absent) until someone logs in. A login discovers the authorization server from
//! the server's protected resource metadata (or its own metadata), registers a client there
//! (dynamic client registration), and sends the user's browser to authorize with PKCE; the
//! browser comes back to `/oauth/callback` on this server, which exchanges the code. The
//! metadata, the client and the tokens go to the database (never a log, never `/health`); a
//! session sends the access token and refreshes it before it expires (or when the server
//! refuses it), saving the new tokens.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, CredentialStore, OAuthClientConfig,
    StoredCredentials,
};
use serde::Serialize;

use crate::store::{McpLogin, McpLogins, StoreError};

/// A login not completed within this long is forgotten (its callback is refused).
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Logins waiting for their callback at most; past it the oldest is dropped.
const MAX_PENDING: usize = 16;
/// The client name registered with authorization servers.
const CLIENT_NAME: &str = "mcp-platform";

/// Why a login cannot start or finish: a sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("there is no MCP server named `{0}`")]
    UnknownServer(String),
    #[error("the MCP server `{0}` is not a remote (HTTP) server: only those log in")]
    NotRemote(String),
    #[error("this login is unknown or expired (logins last 10 minutes); start it again")]
    UnknownLogin,
    #[error("the authorization server refused: {0}")]
    Refused(String),
    #[error("the login cannot be stored: {0}")]
    Store(#[from] StoreError),
}

fn refused(error: &AuthError) -> LoginError {
    LoginError::Refused(crate::scrub::text(&error.to_string(), 300))
}

/// A server's tokens in the database, for rmcp's [`AuthorizationManager`]: read once, then
/// kept; every save (a code exchange, a refresh) is written through.
pub struct DbCredentials {
    logins: McpLogins,
    server: String,
    cached: tokio::sync::Mutex<Cached>,
}

/// The tokens as last read or written.
enum Cached {
    Unread,
    Read(Option<Box<StoredCredentials>>),
}

impl DbCredentials {
    pub fn new(logins: McpLogins, server: &str) -> Self {
        Self {
            logins,
            server: server.to_string(),
            cached: tokio::sync::Mutex::new(Cached::Unread),
        }
    }
}

fn store_failed(error: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(error.to_string())
}

#[async_trait::async_trait]
impl CredentialStore for DbCredentials {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Cached::Read(credentials) = &*cached {
            return Ok(credentials.as_deref().cloned());
        }
        let login = self.logins.get(&self.server).await.map_err(store_failed)?;
        let credentials = login
            .and_then(|login| login.credentials)
            .map(|text| serde_json::from_str::<StoredCredentials>(&text))
            .transpose()
            .map_err(store_failed)?;
        *cached = Cached::Read(credentials.clone().map(Box::new));
        Ok(credentials)
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let text = serde_json::to_string(&credentials).map_err(store_failed)?;
        let mut cached = self.cached.lock().await;
        self.logins
            .set_credentials(&self.server, Some(text))
            .await
            .map_err(store_failed)?;
        *cached = Cached::Read(Some(Box::new(credentials)));
        Ok(())
    }

    async fn clear(&self) -> Result<(), AuthError> {
        let mut cached = self.cached.lock().await;
        match self.logins.set_credentials(&self.server, None).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(error) => return Err(store_failed(error)),
        }
        *cached = Cached::Read(None);
        Ok(())
    }
}

/// The manager of a server's stored login, for its sessions: `None` without a login with
/// tokens for this `url` (a login made for another URL is not sent elsewhere).
pub async fn stored_manager(
    logins: &McpLogins,
    server: &str,
    url: &str,
) -> Result<Option<AuthorizationManager>, String> {
    let login = logins
        .get(server)
        .await
        .map_err(|e| format!("reading the login: {e}"))?;
    let Some(login) = login.filter(|l| l.url == url && l.credentials.is_some()) else {
        return Ok(None);
    };
    let fail = |e: &dyn std::fmt::Display| format!("the stored login cannot be used: {e}");
    let metadata: AuthorizationMetadata =
        serde_json::from_str(&login.metadata).map_err(|e| fail(&e))?;
    let mut manager = AuthorizationManager::new(url).await.map_err(|e| fail(&e))?;
    manager.set_metadata(metadata);
    let mut client = OAuthClientConfig::new(login.client_id, login.redirect_uri);
    if let Some(secret) = login.client_secret {
        client = client.with_client_secret(secret);
    }
    manager.configure_client(client).map_err(|e| fail(&e))?;
    manager.set_credential_store(DbCredentials::new(logins.clone(), server));
    Ok(Some(manager))
}

/// How a login is going, for the CLI that waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoginOutcome {
    /// Waiting for the browser to come back.
    Waiting {
        server: String,
    },
    Done {
        server: String,
    },
    Failed {
        server: String,
        error: String,
    },
}

/// A login started: where to send the user, and the id to ask about it.
#[derive(Debug, Clone, Serialize)]
pub struct LoginStarted {
    pub login_id: String,
    pub server: String,
    pub authorization_url: String,
}

/// A login waiting for its callback, by its `state`.
struct Pending {
    login_id: String,
    login: McpLogin,
    manager: AuthorizationManager,
    started: Instant,
}

/// Logins in progress and how recent ones ended.
#[derive(Default)]
pub struct Logins {
    pending: Mutex<HashMap<String, Pending>>,
    outcomes: Mutex<HashMap<String, (Instant, LoginOutcome)>>,
}

impl Logins {
    fn forget_old(&self) {
        let fresh = |started: &Instant| started.elapsed() < LOGIN_TTL;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| fresh(&p.started));
        while pending.len() >= MAX_PENDING {
            let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(state, _)| state.clone())
            else {
                break;
            };
            pending.remove(&oldest);
        }
        drop(pending);
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        outcomes.retain(|_, (started, _)| fresh(started));
    }

    fn set_outcome(&self, login_id: &str, outcome: LoginOutcome) {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(login_id.to_string())
            .and_modify(|(_, o)| *o = outcome.clone())
            .or_insert((Instant::now(), outcome));
    }

    pub fn outcome(&self, login_id: &str) -> Option<LoginOutcome> {
        self.forget_old();
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(login_id)
            .map(|(_, outcome)| outcome.clone())
    }
}

/// The `state` parameter of an authorization URL.
fn state_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
}

impl super::McpHost {
    /// Starts a login to the remote server `name`, coming back to `redirect_uri`.
    pub async fn begin_login(
        &self,
        name: &str,
        redirect_uri: &str,
    ) -> Result<LoginStarted, LoginError> {
        let logins = self
            .shared
            .logins
            .clone()
            .ok_or_else(|| LoginError::Refused("this host keeps no logins".into()))?;
        let entry = self
            .configs
            .get(name)
            .ok_or_else(|| LoginError::UnknownServer(name.to_string()))?;
        let url = entry
            .url
            .clone()
            .filter(|_| entry.command.is_none())
            .ok_or_else(|| LoginError::NotRemote(name.to_string()))?;
        let challenge = self.shared.servers[name].auth_challenge();
        let mut manager = AuthorizationManager::new(url.as_str())
            .await
            .map_err(|e| refused(&e))?;
        let resolution = manager
            .resolve_metadata_from_challenge(challenge.as_deref())
            .await
            .map_err(|e| refused(&e))?;
        let metadata = serde_json::to_string(&resolution.metadata)
            .map_err(|e| LoginError::Refused(e.to_string()))?;
        manager.set_metadata(resolution.metadata);
        let scopes = manager.select_initial_scopes(&[]).await;
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let client = manager
            .register_client(CLIENT_NAME, redirect_uri, &scopes)
            .await
            .map_err(|e| refused(&e))?;
        manager.set_credential_store(DbCredentials::new(logins, name));
        let authorization_url = manager
            .get_authorization_url(&scopes)
            .await
            .map_err(|e| refused(&e))?;
        let state = state_of(&authorization_url)
            .ok_or_else(|| LoginError::Refused("the authorization URL has no state".into()))?;
        let login_id = uuid::Uuid::new_v4().simple().to_string();
        let login = McpLogin {
            server: name.to_string(),
            url,
            metadata,
            client_id: client.client_id,
            client_secret: client.client_secret,
            redirect_uri: redirect_uri.to_string(),
            credentials: None,
            updated_at: 0,
        };
        self.logins.forget_old();
        self.logins
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                state,
                Pending {
                    login_id: login_id.clone(),
                    login,
                    manager,
                    started: Instant::now(),
                },
            );
        self.logins.set_outcome(
            &login_id,
            LoginOutcome::Waiting {
                server: name.to_string(),
            },
        );
        tracing::info!(server = %name, "MCP login started");
        Ok(LoginStarted {
            login_id,
            server: name.to_string(),
            authorization_url,
        })
    }

    /// Completes the login whose authorization came back with `state`: exchanges `code`,
    /// stores the login, and has the server reconnect. The server's name.
    pub async fn finish_login(
        &self,
        state: &str,
        code: &str,
        issuer: Option<&str>,
    ) -> Result<String, LoginError> {
        let pending = self
            .logins
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_TTL)
            .ok_or(LoginError::UnknownLogin)?;
        let Pending {
            login_id,
            login,
            manager,
            ..
        } = pending;
        let server = login.server.clone();
        let result = self.exchange(login, &manager, code, state, issuer).await;
        let outcome = match &result {
            Ok(()) => LoginOutcome::Done {
                server: server.clone(),
            },
            Err(error) => LoginOutcome::Failed {
                server: server.clone(),
                error: error.to_string(),
            },
        };
        self.logins.set_outcome(&login_id, outcome);
        result?;
        tracing::info!(server = %server, "MCP login completed");
        if let Some(handle) = self.shared.servers.get(&server) {
            handle.logged_in.notify_one();
        }
        Ok(server)
    }

    async fn exchange(
        &self,
        login: McpLogin,
        manager: &AuthorizationManager,
        code: &str,
        state: &str,
        issuer: Option<&str>,
    ) -> Result<(), LoginError> {
        let logins = self
            .shared
            .logins
            .clone()
            .ok_or_else(|| LoginError::Refused("this host keeps no logins".into()))?;
        let server = login.server.clone();
        // The row first: the exchange saves the tokens into it.
        logins.put(login).await?;
        let exchanged = manager
            .exchange_code_for_token_with_issuer(code, state, issuer)
            .await;
        if let Err(error) = exchanged {
            let _ = logins.remove(&server).await;
            return Err(refused(&error));
        }
        Ok(())
    }

    /// Ends the login waiting with `state` as failed (the user refused, say); its server.
    pub fn fail_login(&self, state: &str, reason: &str) -> Option<String> {
        let pending = self
            .logins
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)?;
        let server = pending.login.server.clone();
        self.logins.set_outcome(
            &pending.login_id,
            LoginOutcome::Failed {
                server: server.clone(),
                error: reason.to_string(),
            },
        );
        Some(server)
    }

    /// How the login `login_id` is going; `None` when unknown or long over.
    pub fn login_outcome(&self, login_id: &str) -> Option<LoginOutcome> {
        self.logins.outcome(login_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_from_an_authorization_url() {
        assert_eq!(
            state_of("http://as.test/authorize?response_type=code&state=abc%2Fd&x=1").as_deref(),
            Some("abc/d")
        );
        assert_eq!(state_of("http://as.test/authorize?code=1"), None);
        assert_eq!(state_of("not a url"), None);
    }

    #[test]
    fn outcomes_are_kept_per_login_and_replaced() {
        let logins = Logins::default();
        let waiting = LoginOutcome::Waiting {
            server: "remote".into(),
        };
        logins.set_outcome("l1", waiting.clone());
        assert_eq!(logins.outcome("l1"), Some(waiting));
        let done = LoginOutcome::Done {
            server: "remote".into(),
        };
        logins.set_outcome("l1", done.clone());
        assert_eq!(logins.outcome("l1"), Some(done));
        assert_eq!(logins.outcome("l2"), None);
        let shown = serde_json::to_value(logins.outcome("l1")).expect("json");
        assert_eq!(
            shown,
            serde_json::json!({"state": "done", "server": "remote"})
        );
    }
}
