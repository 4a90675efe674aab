//! `mcp-platform keys create | list | revoke`: straight on the database, whether or not a
//! server runs on it (a running server reads keys again every `auth::REFRESH`).

use clap::Subcommand;

use super::KeyError;
use crate::config::{ConfigArgs, ConfigError};
use crate::store::{AccessRole, PrincipalRow, Quotas, Store, Usage, day_of, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("runtime failure: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Runs a `keys` command to its end, on its own runtime.
pub fn run(command: KeysCommand) -> Result<(), KeysError> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(dispatch(command))
}

async fn open(args: &ConfigArgs) -> Result<Store, KeysError> {
    let (config, _) = args.load()?;
    let repository = config.sqlite_store()?;
    let space = config.memory.vector_space(&config.llm);
    let store = tokio::task::spawn_blocking(move || Store::open_for_admin(&repository, &space))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(store)
}

async fn dispatch(command: KeysCommand) -> Result<(), KeysError> {
    let args = match &command {
        KeysCommand::Create { config, .. }
        | KeysCommand::List { config, .. }
        | KeysCommand::Revoke { config, .. } => config.clone(),
    };
    let store = open(&args).await?;
    let result = match command {
        KeysCommand::Create {
            name,
            admin,
            turns_per_minute,
            tokens_per_day,
            concurrent_turns,
            ..
        } => {
            let role = if admin {
                AccessRole::Admin
            } else {
                AccessRole::User
            };
            let quotas = Quotas {
                turns_per_minute,
                tokens_per_day,
                concurrent_turns,
            };
            match super::create_key(&store, &name, role, quotas).await {
                Ok((key, row)) => {
                    println!(
                        "created {} key `{}` ({}); it is shown once, here:",
                        row.role.as_str(),
                        row.name,
                        describe_quotas(&row.quotas)
                    );
                    println!("{key}");
                    Ok(())
                }
                Err(error) => Err(error.into()),
            }
        }
        KeysCommand::List { json, .. } => list(&store, json).await,
        KeysCommand::Revoke { name, .. } => match store.principals().revoke(name).await {
            Ok(row) => {
                println!("revoked key `{}`", row.name);
                Ok(())
            }
            Err(error) => Err(error.into()),
        },
    };
    let _ = store.close(std::time::Duration::from_secs(5)).await;
    result
}

async fn list(store: &Store, json: bool) -> Result<(), KeysError> {
    let principals = store.principals();
    let rows = principals.list().await?;
    let usage = principals.usage_on(day_of(now_ms())).await?;
    let today = |row: &PrincipalRow| {
        usage
            .iter()
            .find(|(id, _)| *id == row.id)
            .map(|(_, u)| *u)
            .unwrap_or_default()
    };
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| serde_json::json!({"key": row, "usage_today": today(row)}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<6} {:<16} {:<20} {:<20} {:<22} QUOTAS",
        "NAME", "ROLE", "KEY", "CREATED", "LAST USED", "TODAY"
    );
    for row in &rows {
        let state = if row.revoked_at.is_some() {
            " (revoked)"
        } else {
            ""
        };
        let Usage { turns, .. } = today(row);
        println!(
            "{:<20} {:<6} {:<16} {:<20} {:<20} {:<22} {}{state}",
            row.name,
            row.role.as_str(),
            row.key_prefix.as_deref().unwrap_or("-"),
            time(Some(row.created_at)),
            time(row.last_used_at),
            format!("{turns} turns, {} tok", today(row).tokens()),
            describe_quotas(&row.quotas),
        );
    }
    Ok(())
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms).ok()).map_or_else(
        || "never".to_string(),
        |ms| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_seconds(at).to_string()
        },
    )
}

fn describe_quotas(quotas: &Quotas) -> String {
    let mut parts = Vec::new();
    if let Some(n) = quotas.turns_per_minute {
        parts.push(format!("{n} turns/min"));
    }
    if let Some(n) = quotas.tokens_per_day {
        parts.push(format!("{n} tokens/day"));
    }
    if let Some(n) = quotas.concurrent_turns {
        parts.push(format!("{n} concurrent"));
    }
    if parts.is_empty() {
        "unlimited".into()
    } else {
        parts.join(", ")
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once, alone on the last line of stdout.
    Create {
        /// A name for the key (who or what uses it)
        #[arg(long)]
        name: String,
        /// May manage keys, sees every conversation and the full /health
        #[arg(long)]
        admin: bool,
        /// Chat turns started per minute at most [default: unlimited]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        turns_per_minute: Option<u32>,
        /// Provider tokens (prompt + completion) per UTC day at most [default: unlimited]
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        tokens_per_day: Option<u64>,
        /// Chat turns in flight at once at most [default: unlimited]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        concurrent_turns: Option<u32>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List keys: name, role, created, last used, usage today, quotas (never the key).
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a key: it stops working, its sessions end and its sockets close.
    Revoke {
        /// The key's name
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}
