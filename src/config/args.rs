//! The command-line options every command that reads the configuration shares: the file, and
//! the database over what the file and the environment name.

use std::path::PathBuf;

use super::{Config, ConfigError, ConfigSource};

#[derive(Debug, Clone, Default, clap::Args)]
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
    /// Loads the configuration ([`Config::load`]), then points it at `--database` if given.
    pub fn load(&self) -> Result<(Config, ConfigSource), ConfigError> {
        let (mut config, source) = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.database {
            config.use_database(url)?;
        }
        Ok((config, source))
    }
}
