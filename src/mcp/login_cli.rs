//! `mcp-platform mcp login NAME`: asks the running server to start an OAuth login to its
//! remote MCP server `NAME`, prints the authorization URL to open in a browser, and waits
//! until the browser has come back to the server's `/oauth/callback` (or the login failed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;

/// How often the CLI asks how the login is going.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Subcommand)]
pub enum McpCommand {
    /// Log in to a remote MCP server that asks for OAuth (its state is `needs_login` in
    /// /health): prints the URL to open in a browser and waits until the login is done.
    Login(LoginArgs),
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server's name in the MCP servers file
    pub name: String,
    /// The running server [default: http://127.0.0.1:PORT with server.port of the config]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// An admin API key, for a server that requires keys [env: MCPP_API_KEY]
    #[arg(long, env = "MCPP_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Config file [default: ./config.yaml if present, else the built-in defaults]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 600)]
    pub wait: u64,
}

/// Runs the command to its end, on its own runtime; the error is a sentence for the user.
pub fn run(command: McpCommand) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    match command {
        McpCommand::Login(args) => runtime.block_on(login(args)),
    }
}

fn server_url(args: &LoginArgs) -> Result<reqwest::Url, String> {
    let base = if let Some(url) = &args.server {
        url.clone()
    } else {
        let (config, _) = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
        format!("http://127.0.0.1:{}", config.server.port)
    };
    reqwest::Url::parse(&base).map_err(|e| format!("--server `{base}`: {e}"))
}

/// `base` with `segments` as its path, each escaped.
fn endpoint(base: &reqwest::Url, segments: &[&str]) -> Result<reqwest::Url, String> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| format!("`{base}` cannot be a base URL"))?
        .clear()
        .extend(segments);
    Ok(url)
}

async fn call(
    request: reqwest::RequestBuilder,
    key: Option<&str>,
    what: &str,
) -> Result<Value, String> {
    let request = match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: the server cannot be reached: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"]
        .as_str()
        .map_or_else(|| format!("HTTP {status}"), String::from);
    let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
        " (pass an admin key with --key or MCPP_API_KEY)"
    } else {
        ""
    };
    Err(format!("{what}: {message}{hint}"))
}

async fn login(args: LoginArgs) -> Result<(), String> {
    let base = server_url(&args)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let key = args.key.as_deref();
    let start = endpoint(&base, &["api", "mcp", "servers", &args.name, "login"])?;
    let started = call(client.post(start), key, "starting the login").await?;
    let (Some(id), Some(url)) = (
        started["login_id"].as_str(),
        started["authorization_url"].as_str(),
    ) else {
        return Err(format!(
            "the server answered something unexpected: {started}"
        ));
    };
    println!(
        "Open this URL in a browser to log in to `{}`:\n\n  {url}\n",
        args.name
    );
    println!("Waiting for the browser to come back to {base}oauth/callback …");
    let status = endpoint(&base, &["api", "mcp", "logins", id])?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let outcome = call(client.get(status.clone()), key, "asking about the login").await?;
        match outcome["state"].as_str() {
            Some("done") => {
                println!(
                    "Logged in to `{}`: the server connects now and offers its tools.",
                    args.name
                );
                return Ok(());
            }
            Some("failed") => {
                return Err(format!(
                    "the login failed: {}",
                    outcome["error"].as_str().unwrap_or("no reason given")
                ));
            }
            _ => {}
        }
    }
    Err(format!(
        "no login within {} s; run the command again",
        args.wait
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_escape_the_server_name() {
        let base = reqwest::Url::parse("http://127.0.0.1:8000").expect("url");
        let url = endpoint(&base, &["api", "mcp", "servers", "a b/c", "login"]).expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8000/api/mcp/servers/a%20b%2Fc/login"
        );
    }
}
