//! `mcp-platform`: parse the command line, load the config, run. Start-up failures print one
//! line and exit with code 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_platform::app::{App, StartError, bind, shutdown_signal};
use mcp_platform::config::{Config, ConfigArgs, DatabaseUrl, McpServerConfig};
use mcp_platform::loadtest;

/// Local-first MCP chat server: WebSocket chat, LLM providers, MCP tools, one SQLite file.
/// The version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MCPP_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "mcp-platform", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default): creates the database and serves HTTP and WebSocket.
    Serve(ServeArgs),
    /// Rebuild the vector tables for the configured embedder (after changing memory.embedder or
    /// memory.dimensions). Stop the server first.
    Reembed {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Serve the OpenAI-compatible fake provider the tests use, for load tests without tokens.
    MockProvider(MockArgs),
    /// Drive a running server's /ws/chat with many clients and report latency, throughput,
    /// errors and the server's CPU and memory; exit 1 when an SLO is missed.
    Loadtest(LoadtestArgs),
    /// Create, list or revoke API keys (works whether or not the server is running; a running
    /// server sees the change within a second).
    Keys {
        #[command(subcommand)]
        command: mcp_platform::auth::cli::KeysCommand,
    },
    /// Write a consistent copy of the database to PATH while the server runs (SQLite's online
    /// backup), checked with integrity_check; PATH must not exist.
    Backup {
        path: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write conversations with their messages, and memories, as JSON Lines (the format is in
    /// docs/backup-and-export.md) that `import` reads back; works while the server runs.
    Export(mcp_platform::transfer::cli::ExportArgs),
    /// Read an `export` file into this database (what is already there is skipped); works
    /// while the server runs.
    Import(mcp_platform::transfer::cli::ImportArgs),
    /// Exit 0 if the server's /health answers 200 within 3 s, else 1 (a container's health
    /// check: the runtime image has no curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8000/health")]
        url: String,
    },
    /// Hosted MCP servers: log in to one that asks for OAuth.
    Mcp {
        #[command(subcommand)]
        command: mcp_platform::mcp::login_cli::McpCommand,
    },
    /// Validate the configuration and print it with defaults filled in and secrets redacted.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
struct LoadtestArgs {
    /// The server's chat WebSocket
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws/chat")]
    url: String,
    /// smoke: 10×5, load: 100×20, stress: 1000×10, soak: 100 for 10 min (connections×turns)
    #[arg(long, value_enum, default_value = "smoke")]
    profile: loadtest::Profile,
    /// Concurrent connections, overriding the profile
    #[arg(long)]
    connections: Option<usize>,
    /// Turns per connection, overriding the profile
    #[arg(long)]
    turns: Option<usize>,
    /// Run for this long instead of a number of turns (e.g. 60s, 10m)
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Spread connection starts over this long (e.g. 10s)
    #[arg(long, value_parser = humantime::parse_duration)]
    ramp_up: Option<std::time::Duration>,
    /// Turns started per second across all connections (paced, open loop); by default each
    /// connection sends its next turn as soon as the last one ends
    #[arg(long)]
    rate: Option<f64>,
    /// Turns per conversation before a connection starts a new one [default: 10]
    #[arg(long)]
    conversation_turns: Option<usize>,
    /// Objectives, e.g. p99_ms=20,error_rate=0.001 (also p50_ms, p95_ms, ttft_p99_ms, turns_per_s)
    #[arg(long)]
    slo: Option<String>,
    /// Print the report as JSON on stdout (progress still goes to stderr)
    #[arg(long)]
    json: bool,
    /// Tool turns: each turn asks the mock provider to call this tool once, e.g.
    /// 'echo {"text": "x"}' (the server must offer the tool; the provider must be the mock)
    #[arg(long, value_name = "NAME {JSON}")]
    tool_call: Option<String>,
    /// Also write the report as one self-contained HTML page with plots (latency over time,
    /// histogram, turns/s, errors by code, the server's CPU and memory, SLO verdicts)
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Hold this many idle connections and report the server's memory instead of chatting
    #[arg(long)]
    idle: Option<usize>,
    /// The door to drive: ws (/ws/chat) or openai (/v1/chat/completions, streamed); --url stays
    /// the server's ws:// address either way
    #[arg(long, value_enum, default_value = "ws")]
    api: loadtest::Api,
    /// With --api openai: the model to ask for [default: the first of GET /v1/models]
    #[arg(long)]
    model: Option<String>,
    /// With --api openai: store each conversation (X-Conversation-Id), as /ws/chat does
    #[arg(long)]
    store: bool,
    /// API key for a server that requires one (an admin key also gives the server's CPU and
    /// memory figures from /health) [env: MCPP_API_KEY]
    #[arg(long, env = "MCPP_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(clap::Args)]
struct MockArgs {
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// Interface to bind
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Text chunks per streamed answer
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    /// Delay between chunks, in milliseconds
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Delay before the first byte of an answer, in milliseconds
    #[arg(long, default_value_t = 0)]
    first_byte_ms: u64,
    /// Share of requests answered with HTTP 500, from 0 to 1
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Interface to bind, overriding server.host
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Port to listen on, overriding server.port (0 picks a free one)
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// The active provider, overriding llm.active: one of llm.providers, or a local preset
    /// (ollama, llamacpp, lmstudio, vllm) that needs no entry
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
    /// Once accepting, print one JSON line on stdout: {"address", "pid", "version"} (for a
    /// program that runs this one as a sidecar with --port 0)
    #[arg(long)]
    ready_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CheckConfig { config }) => check_config(&config),
        Some(Command::Keys { command }) => {
            return match mcp_platform::auth::cli::run(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Mcp { command }) => {
            return match mcp_platform::mcp::login_cli::run(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Healthcheck { url }) => return healthcheck(&url),
        Some(Command::Export(args)) => return mcp_platform::transfer::cli::run_export(&args),
        Some(Command::Import(args)) => return mcp_platform::transfer::cli::run_import(&args),
        Some(Command::Backup { path, config }) => backup(&path, &config),
        Some(Command::Reembed { config }) => reembed(&config),
        Some(Command::MockProvider(args)) => mock_provider(&args),
        Some(Command::Loadtest(args)) => return loadtest(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn healthcheck(url: &str) -> ExitCode {
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(3))
                    .build()
                    .map_err(|e| e.to_string())?;
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                Ok(response.status())
            })
        });
    match answer {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::from(1)
        }
    }
}

fn backup(target: &Path, args: &ConfigArgs) -> Result<(), StartError> {
    let (config, _) = args.load()?;
    if let DatabaseUrl::Postgres(url) = config.database.url() {
        return Err(StartError::Config(
            mcp_platform::config::ConfigError::Invalid {
                origin: "backup".into(),
                key: url.to_string(),
                message: "is a PostgreSQL database: back it up with pg_dump".into(),
            },
        ));
    }
    let source = &config.sqlite_store()?.path;
    let report = mcp_platform::store::backup::backup(source, target)?;
    println!(
        "backup of {} written to {}: {} conversations, {} messages, {} memories, {} bytes in {} ms \
         (integrity_check ok)",
        source.display(),
        report.path.display(),
        report.conversations,
        report.messages,
        report.memories,
        report.bytes,
        report.took_ms
    );
    Ok(())
}

fn check_config(args: &ConfigArgs) -> Result<(), StartError> {
    let (config, source) = args.load()?;
    let servers = config
        .mcp
        .resolve_servers(&|name: &str| std::env::var(name).ok())?;
    print!("{}", config.to_redacted_yaml());
    for ignored in config.ignored_keys() {
        eprintln!("warning: {ignored}");
    }
    if let Err(not_yet) = config.sqlite_store() {
        eprintln!("warning: {not_yet}");
    }
    for (name, server) in &servers {
        eprintln!("MCP server {name}: {}", describe_server(server));
    }
    eprintln!("configuration OK ({source})");
    Ok(())
}

/// What a server entry starts, without its arguments, environment or headers (they may hold
/// secrets), nor a URL's path and query.
fn describe_server(server: &McpServerConfig) -> String {
    let state = if server.enabled { "" } else { " (disabled)" };
    match (&server.command, &server.url) {
        (Some(command), _) => format!("stdio, `{command}` with {} args{state}", server.args.len()),
        (None, Some(url)) => {
            let origin = reqwest::Url::parse(url).map_or_else(
                |_| "an invalid URL".into(),
                |u| u.origin().ascii_serialization(),
            );
            format!("Streamable HTTP at {origin}{state}")
        }
        (None, None) => format!("no command or url{state}"),
    }
}

/// Exit codes: 0 done (and SLOs met), 1 an SLO missed, 2 the test could not run.
fn loadtest(args: LoadtestArgs) -> ExitCode {
    match run_loadtest(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_loadtest(args: LoadtestArgs) -> Result<bool, String> {
    let slos = loadtest::parse_slos(args.slo.as_deref().unwrap_or(""))
        .map_err(|e| format!("--slo: {e}"))?;
    // A load client holds one descriptor per connection it drives: as many as it may have.
    let _ = mcp_platform::process::files::raise_open_files_limit(u64::MAX);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    if args.idle.is_some() && args.report.is_some() {
        return Err("--report is for chat runs; --idle prints its figures only".into());
    }
    if let Some(count) = args.idle {
        let report = runtime.block_on(loadtest::run_idle(args.url, args.key, count))?;
        print_report(&report, &report.table(), args.json)?;
        return Ok(report.opened == count);
    }
    let mut plan = args.profile.plan();
    plan.connections = args.connections.unwrap_or(plan.connections).max(1);
    if args.turns.is_some() || args.duration.is_some() {
        plan.turns = args.turns;
        plan.duration = args.duration;
    }
    plan.ramp_up = args.ramp_up.unwrap_or(plan.ramp_up);
    plan.conversation_turns = args
        .conversation_turns
        .unwrap_or(plan.conversation_turns)
        .max(1);
    if let Some(rate) = args.rate {
        if !rate.is_finite() || rate <= 0.0 {
            return Err(format!(
                "--rate: {rate} is not a positive number of turns per second"
            ));
        }
        plan.rate = Some(rate);
    }
    let options = loadtest::Options {
        url: args.url,
        plan,
        slos,
        progress: true,
        key: args.key,
        api: args.api,
        model: args.model,
        store: args.store,
        tool_call: args.tool_call,
    };
    let report = runtime.block_on(loadtest::run(options))?;
    print_report(&report, &report.table(), args.json)?;
    if let Some(path) = &args.report {
        std::fs::write(path, loadtest::html::render(&report))
            .map_err(|e| format!("--report: cannot write {}: {e}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(report.passed())
}

/// A load test's report on stdout: as JSON, or as its table.
fn print_report(report: &impl serde::Serialize, table: &str, json: bool) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{table}");
    }
    Ok(())
}

/// Sockets are files: the soft limit is raised to what the configured caps need (no further).
fn raise_open_files_limit(config: &Config) {
    use mcp_platform::process::files::{FilesLimit, files_needed, raise_open_files_limit};
    let needed = files_needed(config, 1024);
    match raise_open_files_limit(needed) {
        Ok(FilesLimit::Short { hard, needed }) => eprintln!(
            "warning: the open-files hard limit ({hard}) is below what the configured caps need \
             ({needed}); lower chat.websocket.max_connections or server.http.max_connections, \
             or raise the limit (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("warning: cannot raise the open-files limit: {error}"),
    }
}

fn mock_provider(args: &MockArgs) -> Result<(), StartError> {
    use mcp_platform::mock_provider::{MockProvider, Reply};
    use std::time::Duration;
    let reply = Reply::Text {
        pieces: (0..args.chunks.max(1)).map(|i| format!("w{i} ")).collect(),
        first_byte_delay: Duration::from_millis(args.first_byte_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
    };
    let mock = MockProvider::serving(reply, args.fail_rate);
    let runtime = tokio::runtime::Runtime::new().map_err(StartError::Runtime)?;
    runtime.block_on(async {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(StartError::Runtime)?;
        println!("mock provider listening on http://{local}/v1");
        let shutdown = shutdown_signal().map_err(StartError::Runtime)?;
        axum::serve(
            mcp_platform::mock_provider::without_nagle(listener),
            mock.router(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Runtime)
    })
}

fn reembed(args: &ConfigArgs) -> Result<(), StartError> {
    let (config, source) = args.load()?;
    mcp_platform::telemetry::init(&config.logging);
    let db = config.database.url().to_string();
    eprintln!("re-embedding {db} ({source}); keep the server stopped meanwhile");
    let runtime = tokio::runtime::Runtime::new().map_err(StartError::Runtime)?;
    let (space, report) = runtime.block_on(mcp_platform::app::reembed(config, |kind, done| {
        eprintln!("  {done} {kind}");
    }))?;
    eprintln!(
        "done: {} memories and {} messages re-embedded with {} ({} dimensions); {} without words skipped",
        report.counts.memories,
        report.counts.messages,
        space.embedder,
        space.dimensions,
        report.skipped
    );
    Ok(())
}

/// `--ready-json`: the address a sidecar's parent connects to, on one line of stdout.
fn announce(listener: &tokio::net::TcpListener) {
    use std::io::Write;
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let line = serde_json::json!({
        "address": format!("http://{local}"),
        "pid": std::process::id(),
        "version": VERSION,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `--provider NAME`: the active provider, a local preset added when it has no entry.
fn choose_provider(config: &mut Config, provider: String) -> Result<(), StartError> {
    config.llm.add_local_preset(&provider);
    if !config.llm.providers.contains_key(&provider) {
        let mut known: Vec<&str> = config.llm.providers.keys().map(String::as_str).collect();
        known.extend(mcp_platform::config::LOCAL_PRESETS.iter().map(|p| p.name));
        known.sort_unstable();
        known.dedup();
        return Err(mcp_platform::config::ConfigError::Invalid {
            origin: "--provider".into(),
            key: format!("`{provider}`"),
            message: format!("is not a provider (one of {})", known.join(", ")),
        }
        .into());
    }
    config.llm.active = provider;
    config.llm.chosen = true;
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), StartError> {
    mcp_platform::allocator::keep_arena_tops_small();
    let (mut config, source) = args.config.load()?;
    let ready_json = args.ready_json;
    raise_open_files_limit(&config);
    config.server.host = args.host.unwrap_or(config.server.host);
    config.server.port = args.port.unwrap_or(config.server.port);
    if let Some(provider) = args.provider {
        choose_provider(&mut config, provider)?;
    }
    mcp_platform::telemetry::init(&config.logging);
    tracing::debug!(config = %source, "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.runtime_threads())
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(StartError::Runtime)?;
        mcp_platform::app::check_exposure(&config)?;
        let listener = bind(&config.server).await?;
        let app = App::start(config).await?;
        if ready_json {
            announce(&listener);
        }
        app.serve(listener, shutdown)
            .await
            .map_err(StartError::Runtime)
    })
}
