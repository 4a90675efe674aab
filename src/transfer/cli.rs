//! `mcp-platform export` and `mcp-platform import`: straight on the database, whether or not a
//! server runs on it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{ExportReport, ImportReport, Owners, TransferError};
use crate::config::{ConfigArgs, ConfigError};
use crate::llm::Providers;
use crate::memory::TextEmbedder;
use crate::store::{PrincipalId, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines (`mcp-platform.export` version 1, documented in docs/backup-and-export.md)
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Only this key's conversations and memories [default: every key's]
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write here (replaced only once complete) instead of standard output
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// An export file, or - for standard input
    pub file: PathBuf,
    /// Give everything to this key instead of each record's owner
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        Self::Transfer(error.into())
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        Self::Transfer(error.into())
    }
}

/// Runs `export`.
pub fn export(args: &ExportArgs) -> Result<ExportReport, CliError> {
    let Format::Jsonl = args.format;
    let (config, _) = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let repository = config.sqlite_store()?;
        let space = config.memory.vector_space(&config.llm);
        let store = blocking(move || Store::open_for_admin(&repository, &space)).await?;
        let owner = match &args.key {
            Some(name) => Some((principal(&store, name).await?, name.clone())),
            None => None,
        };
        let result = if let Some(path) = &args.output {
            export_to_file(&store, owner, path).await
        } else {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            Ok(super::export(&store, owner, &mut out).await?)
        };
        store.close(std::time::Duration::from_secs(10)).await?;
        result
    })
}

/// A file only its owner can read (an export holds every conversation, as the database and
/// its backups do), created or truncated; a file that was there keeps no wider mode.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Written beside `path`, then renamed: a failed export never leaves half a file there.
async fn export_to_file(
    store: &Store,
    owner: Option<(PrincipalId, String)>,
    path: &Path,
) -> Result<ExportReport, CliError> {
    let failed = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut partial = path.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = private_file(&partial).map_err(failed)?;
    let mut out = std::io::BufWriter::new(file);
    let written = super::export(store, owner, &mut out).await;
    let finished = written.and_then(|report| {
        let file = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok(report)
    });
    match finished {
        Ok(report) => {
            std::fs::rename(&partial, path).map_err(failed)?;
            Ok(report)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error.into())
        }
    }
}

/// Runs `import`.
pub fn import(args: &ImportArgs) -> Result<ImportReport, CliError> {
    let (config, _) = args.config.load()?;
    let text = read_input(&args.file)?;
    let records = super::parse(&text)?;
    drop(text);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let repository = config.sqlite_store()?;
        let space = config.memory.vector_space(&config.llm);
        let open_space = space.clone();
        let store = blocking(move || Store::open_for_import(&repository, &open_space)).await?;
        let providers = Arc::new(Providers::new(&config.llm, |name| std::env::var(name).ok()));
        let embedder = TextEmbedder::new(&config.memory, &space, providers);
        let owners = match &args.key {
            Some(name) => Owners::All(principal(&store, name).await?),
            None => Owners::ByName(
                store
                    .principals()
                    .list()
                    .await?
                    .into_iter()
                    .map(|p| (p.name, p.id))
                    .collect(),
            ),
        };
        let result = super::import(&store, &embedder, &owners, records).await;
        store.close(std::time::Duration::from_secs(30)).await?;
        Ok(result?)
    })
}

fn read_input(file: &Path) -> Result<String, CliError> {
    let failed = |source| CliError::Read {
        path: file.display().to_string(),
        source,
    };
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map_err(failed)?;
    } else {
        std::fs::File::open(file)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(failed)?;
    }
    Ok(text)
}

async fn principal(store: &Store, name: &str) -> Result<PrincipalId, CliError> {
    let all = store.principals().list().await?;
    if let Some(found) = all.iter().find(|p| p.name == name) {
        return Ok(found.id);
    }
    Err(TransferError::UnknownOwner {
        name: name.to_string(),
        known: all
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
    .into())
}

async fn blocking<T: Send + 'static>(
    open: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CliError> {
    Ok(tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??)
}

/// `export` to its end: the report on standard error, exit code 2 on failure.
pub fn run_export(args: &ExportArgs) -> ExitCode {
    match export(args) {
        Ok(report) => {
            let _ = std::io::stdout().flush();
            eprintln!(
                "exported {} conversations ({} messages) and {} memories",
                report.conversations, report.messages, report.memories
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `import` to its end: the report on standard output, exit code 2 on failure.
pub fn run_import(args: &ImportArgs) -> ExitCode {
    match import(args) {
        Ok(report) => {
            println!(
                "imported {} conversations ({} messages) and {} memories; already there: {} \
                 conversations, {} memories; without words to embed: {} memories",
                report.conversations,
                report.messages,
                report.memories,
                report.skipped_conversations,
                report.skipped_memories,
                report.memories_without_words
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
