//! The database URL (`database.url`, `--database`, `MCPP_DATABASE_URL`): `sqlite:PATH` or a
//! PostgreSQL URL, checked when read and shown everywhere without its password.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The SQLite file used when nothing names a database.
pub const DEFAULT_SQLITE_PATH: &str = "./data/chat.db";

/// What a shown URL has in its password's place.
const HIDDEN_PASSWORD: &str = "redacted";

/// Where the data lives. Shown (in logs, `check-config`, errors) without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file; its parent directory is created.
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

impl DatabaseUrl {
    /// The SQLite file used when nothing names a database.
    pub fn default_file() -> Self {
        Self::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH))
    }

    /// Parses `sqlite:PATH` (also `sqlite://PATH`) or `postgres://…` (also `postgresql://`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("names no file: write sqlite:PATH, e.g. sqlite:./data/chat.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return PostgresUrl::parse(text).map(Self::Postgres);
        }
        Err(format!(
            "`{}` is not a database URL: write sqlite:PATH or postgres://USER@HOST:PORT/DB",
            without_credentials(text)
        ))
    }

    /// The SQLite file, if this names one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl Serialize for DatabaseUrl {
    /// Always without the password: configuration is serialized only to be shown.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `text` as it may be shown: whatever comes before its last `@` (a user and a password,
/// however malformed) replaced by `…`, its scheme kept.
fn without_credentials(text: &str) -> String {
    let Some((_, after)) = text.rsplit_once('@') else {
        return text.to_string();
    };
    let scheme = text
        .split_once("://")
        .map_or("", |(scheme, _)| scheme)
        .to_string();
    if scheme.is_empty() || scheme.contains(['@', '/', ':']) {
        format!("…@{after}")
    } else {
        format!("{scheme}://…@{after}")
    }
}

/// A PostgreSQL connection URL, checked: a host, a database name, and only the query
/// parameters the server understands.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: url::Url,
}

/// `sslmode` values libpq knows.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Query parameters a URL may carry.
const PARAMETERS: [&str; 3] = ["sslmode", "application_name", "connect_timeout"];

impl PostgresUrl {
    fn parse(text: &str) -> Result<Self, String> {
        let shown = without_credentials(text);
        let url = url::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
        if url.path().contains('@') || url.host_str().is_some_and(|h| h.contains('@')) {
            return Err(format!(
                "`{shown}` is not a URL the server can read: a password with `/`, `?`, `#` or \
                 `@` in it must be percent-encoded"
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{shown}` names no host"));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(format!(
                "`{shown}` names no database: end it with /DB, e.g. postgres://chat@127.0.0.1:5432/chat"
            ));
        }
        for (name, value) in url.query_pairs() {
            if !PARAMETERS.contains(&name.as_ref()) {
                return Err(format!(
                    "`{shown}`: unknown parameter `{name}` (known: {})",
                    PARAMETERS.join(", ")
                ));
            }
            if name == "sslmode" && !SSL_MODES.contains(&value.as_ref()) {
                return Err(format!(
                    "`{shown}`: sslmode `{value}` is not one of {}",
                    SSL_MODES.join(", ")
                ));
            }
        }
        Ok(Self { url })
    }

    /// The full URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// The `sslmode` parameter, `prefer` (libpq's default) when absent.
    pub fn ssl_mode(&self) -> String {
        self.url
            .query_pairs()
            .find(|(name, _)| name == "sslmode")
            .map_or_else(|| "prefer".to_string(), |(_, value)| value.into_owned())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            // Cannot fail: the URL has a host (checked when parsed).
            let _ = shown.set_password(Some(HIDDEN_PASSWORD));
        }
        f.write_str(shown.as_str())
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_shown_without_their_password() {
        let sqlite = DatabaseUrl::parse("sqlite:./data/chat.db").expect("sqlite");
        assert_eq!(sqlite.sqlite_path(), Some(Path::new("./data/chat.db")));
        let slashes = DatabaseUrl::parse("sqlite:///var/lib/chat.db").expect("sqlite://");
        assert_eq!(slashes.sqlite_path(), Some(Path::new("/var/lib/chat.db")));

        let text = "postgres://chat:s3cret@db.internal:6543/chat?sslmode=require";
        let DatabaseUrl::Postgres(pg) = DatabaseUrl::parse(text).expect("postgres") else {
            panic!("not postgres");
        };
        assert_eq!(pg.ssl_mode(), "require");
        assert_eq!(pg.expose(), text);
        assert_eq!(
            pg.to_string(),
            "postgres://chat:redacted@db.internal:6543/chat?sslmode=require"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));

        let plain = DatabaseUrl::parse("postgresql://chat@127.0.0.1/chat").expect("postgresql");
        let DatabaseUrl::Postgres(plain) = plain else {
            panic!("not postgres")
        };
        assert_eq!(plain.ssl_mode(), "prefer");
        assert_eq!(plain.to_string(), "postgresql://chat@127.0.0.1/chat");
    }

    #[test]
    fn bad_urls_are_refused_with_what_is_wrong_and_no_password() {
        for (text, expected) in [
            ("sqlite:", "names no file"),
            ("mysql://u:pw@h/db", "is not a database URL"),
            ("postgres://u:pw@h:5432", "names no database"),
            ("postgres://u:pw@h/db?sslmode=maybe", "sslmode `maybe`"),
            ("postgres://u:pw@h/db?pool=3", "unknown parameter `pool`"),
            ("postgres://u:pw@h:notaport/db", "is not a URL"),
            ("chat:pw@db/chat", "is not a database URL"),
            ("postgres:/u:pw@h/db", "is not a database URL"),
            ("postgres://u:ab/pw@h/db", "is not a URL"),
            ("postgres://u:12/pw@h/db", "must be percent-encoded"),
        ] {
            let error = DatabaseUrl::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("pw"), "{text}: {error}");
        }
    }
}
