//! The PostgreSQL backend (issue 43), as far as it is built: a pool of connections made from
//! the URL and `database.postgres`, and the checks a start makes before anything is written:
//! the server answers, and pgvector can be installed in the database. The repositories come
//! next; until then a start on PostgreSQL stops after these checks, saying so.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::{PostgresConfig, PostgresUrl};

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "{url}: sslmode={mode} needs TLS, which this version does not speak to PostgreSQL yet; \
         use sslmode=disable or prefer (no TLS) on a trusted network"
    )]
    TlsNotSupported { url: String, mode: String },
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "PostgreSQL at {url} has no pgvector extension, which memory and history search need: \
         install it (https://github.com/pgvector/pgvector#installation; Debian and Ubuntu: \
         postgresql-NN-pgvector) and start again"
    )]
    NoVector { url: String },
    #[error(
        "PostgreSQL at {url} answers and has pgvector, but the PostgreSQL store is still being \
         built (issue 43) and cannot serve yet: use sqlite:PATH meanwhile"
    )]
    NotBuilt { url: String },
}

/// Connects to the database `url` names and checks that pgvector can be installed in it.
pub async fn check(url: &PostgresUrl, config: &PostgresConfig) -> Result<(), PostgresError> {
    // The pool bounds both the connecting and the wait for a connection (`connect_timeout`).
    let client = pool(url, config)?
        .get()
        .await
        .map_err(|error| match error {
            PoolError::Backend(error) => unreachable(url, reason(&error)),
            PoolError::Timeout(_) => unreachable(
                url,
                format!("no answer within {:?}", config.connect_timeout),
            ),
            other => unreachable(url, reason(&other)),
        })?;
    let vector = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await
        .map_err(|e| unreachable(url, reason(&e)))?;
    if vector.is_none() {
        return Err(PostgresError::NoVector {
            url: url.to_string(),
        });
    }
    Ok(())
}

/// The pool for `url`: at most `max_connections`, each connected within `connect_timeout`,
/// the password from `PGPASSWORD` when the URL carries none.
pub fn pool(url: &PostgresUrl, config: &PostgresConfig) -> Result<Pool, PostgresError> {
    let mode = url.ssl_mode();
    if !matches!(mode.as_str(), "disable" | "allow" | "prefer") {
        return Err(PostgresError::TlsNotSupported {
            url: url.to_string(),
            mode,
        });
    }
    let mut connection: tokio_postgres::Config = url
        .expose()
        .replace("sslmode=allow", "sslmode=prefer")
        .parse()
        .map_err(|e: tokio_postgres::Error| unreachable(url, reason(&e)))?;
    if connection.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        connection.password(password);
    }
    connection.connect_timeout(config.connect_timeout);
    let manager = Manager::from_config(
        connection,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Some(config.connect_timeout.max(Duration::from_millis(1)));
    Pool::builder(manager)
        .max_size(usize::try_from(config.max_connections).unwrap_or(usize::MAX))
        .runtime(Runtime::Tokio1)
        .wait_timeout(wait)
        .create_timeout(wait)
        .build()
        .map_err(|e| unreachable(url, e.to_string()))
}

fn unreachable(url: &PostgresUrl, reason: String) -> PostgresError {
    PostgresError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// What went wrong, with the cause tokio-postgres keeps apart (its own text alone often says
/// only "error connecting to server").
fn reason(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
