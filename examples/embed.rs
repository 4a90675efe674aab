//! The server inside a host program (a desktop app's backend): the config built in code, port
//! 0, the address learnt, a request made, a graceful stop. Run: `cargo run --example embed`.
//! It prints one JSON line with the address, then what `/health` answered.

use mcp_platform::config::Config;
use mcp_platform::embed::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The app's own data directory; here a temporary one.
    let data = tempfile_dir()?;
    let mut config = Config::default();
    config.server.port = 0;
    config.database.use_sqlite_file(data.join("chat.db"));
    config.mcp.servers_file = Some(data.join("servers_config.json"));
    let server = Server::start(config).await?;
    println!("{{\"address\": \"{}\"}}", server.url());

    let health = reqwest::get(format!("{}/health", server.url())).await?;
    println!("health: {}", health.status());

    server.stop().await?;
    std::fs::remove_dir_all(&data)?;
    println!("stopped");
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mcp-platform-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
