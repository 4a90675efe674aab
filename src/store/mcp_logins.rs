//! OAuth logins to remote MCP servers: per server name, the authorization server's metadata,
//! the client registered there and the tokens, as the MCP host's login wrote them. The store
//! keeps them as text and never interprets them (the MCP host does); they never reach a log
//! or `/health`.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_ms};

/// One server's login.
#[derive(Clone, PartialEq, Eq)]
pub struct McpLogin {
    pub server: String,
    /// The server's URL at login.
    pub url: String,
    /// The authorization server's metadata (JSON).
    pub metadata: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
    /// The tokens (JSON); `None` until the code was exchanged.
    pub credentials: Option<String>,
    pub updated_at: i64,
}

impl std::fmt::Debug for McpLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpLogin")
            .field("server", &self.server)
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("has_tokens", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// The logins table.
#[derive(Clone)]
pub struct McpLogins {
    store: Store,
}

impl McpLogins {
    pub(super) fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn get(&self, server: &str) -> Result<Option<McpLogin>, StoreError> {
        let server = server.to_string();
        self.store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT server, url, metadata, client_id, client_secret, redirect_uri,
                             credentials, updated_at
                         FROM mcp_logins WHERE server = ?1",
                    )?
                    .query_row([server], |row| {
                        Ok(McpLogin {
                            server: row.get(0)?,
                            url: row.get(1)?,
                            metadata: row.get(2)?,
                            client_id: row.get(3)?,
                            client_secret: row.get(4)?,
                            redirect_uri: row.get(5)?,
                            credentials: row.get(6)?,
                            updated_at: row.get(7)?,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    /// Writes `login` whole, replacing the server's earlier one.
    pub async fn put(&self, login: McpLogin) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO mcp_logins (server, url, metadata, client_id,
                         client_secret, redirect_uri, credentials, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    login.server,
                    login.url,
                    login.metadata,
                    login.client_id,
                    login.client_secret,
                    login.redirect_uri,
                    login.credentials,
                    now_ms()
                ])?;
                Ok(())
            })
            .await
    }

    /// Replaces the server's tokens (`None` forgets them); `NotFound` without a login.
    pub async fn set_credentials(
        &self,
        server: &str,
        credentials: Option<String>,
    ) -> Result<(), StoreError> {
        let server = server.to_string();
        self.store
            .write(move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE mcp_logins SET credentials = ?2, updated_at = ?3 WHERE server = ?1",
                    )?
                    .execute(params![server, credentials, now_ms()])?;
                if changed == 0 {
                    return Err(StoreError::NotFound("MCP login"));
                }
                Ok(())
            })
            .await
    }

    /// Forgets the server's login; whether there was one.
    pub async fn remove(&self, server: &str) -> Result<bool, StoreError> {
        let server = server.to_string();
        self.store
            .write(move |tx| {
                Ok(tx
                    .prepare_cached("DELETE FROM mcp_logins WHERE server = ?1")?
                    .execute([server])?
                    > 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RepositoryConfig;

    fn login(server: &str) -> McpLogin {
        McpLogin {
            server: server.into(),
            url: "http://127.0.0.1:9/mcp".into(),
            metadata: r#"{"authorization_endpoint":"a","token_endpoint":"t"}"#.into(),
            client_id: "client-1".into(),
            client_secret: Some("shh".into()),
            redirect_uri: "http://127.0.0.1:8000/oauth/callback".into(),
            credentials: None,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn a_login_is_written_its_tokens_replaced_and_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&RepositoryConfig {
            path: dir.path().join("chat.db"),
            ..RepositoryConfig::default()
        })
        .expect("store");
        let logins = store.mcp_logins();
        assert_eq!(logins.get("remote").await.expect("get"), None);
        let missing = logins.set_credentials("remote", Some("{}".into())).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );

        logins.put(login("remote")).await.expect("put");
        logins
            .set_credentials("remote", Some(r#"{"client_id":"client-1"}"#.into()))
            .await
            .expect("tokens");
        let read = logins.get("remote").await.expect("get").expect("login");
        assert_eq!(read.client_secret.as_deref(), Some("shh"));
        assert_eq!(
            read.credentials.as_deref(),
            Some(r#"{"client_id":"client-1"}"#)
        );
        assert!(read.updated_at > 0);
        // Debug output never shows the secret or the tokens.
        let shown = format!("{read:?}");
        assert!(
            !shown.contains("shh") && !shown.contains("client_id\":"),
            "{shown}"
        );

        assert!(logins.remove("remote").await.expect("remove"));
        assert!(!logins.remove("remote").await.expect("remove"));
        assert_eq!(logins.get("remote").await.expect("get"), None);
    }
}
