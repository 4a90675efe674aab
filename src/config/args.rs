//! The command-line options every command that reads the configuration shares: the file, and
//! the database over what the file and the environment name.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Config, ConfigError, ConfigSource, DATABASE_URL_VARIABLE};

#[derive(Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Config file [default: ./config.yaml if present, else the built-in defaults]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database, over MCPP_DATABASE_URL and database.url: sqlite:PATH or
    /// postgres://USER@HOST:PORT/DB
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

impl ConfigArgs {
    /// Loads the configuration ([`Config::load`]), then points it at `--database` if given
    /// (the environment's `MCPP_DATABASE_URL` is then not read at all).
    pub fn load(&self) -> Result<(Config, ConfigSource), ConfigError> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        if self.database.is_some() {
            env.remove(DATABASE_URL_VARIABLE);
        }
        let (mut config, source) = Config::load_with_env(self.config.as_deref(), env)?;
        if let Some(url) = &self.database {
            config.use_database(url)?;
        }
        Ok((config, source))
    }
}

/// Without the database URL, which may hold a password.
impl std::fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigArgs")
            .field("config", &self.config)
            .field("database", &self.database.as_ref().map(|_| "…"))
            .finish()
    }
}
