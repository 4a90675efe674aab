//! OAuth logins to remote MCP servers, against a fake authorization server and a protected MCP
//! server written here (one axum app on 127.0.0.1): protected resource metadata, authorization
//! server metadata, dynamic client registration, PKCE (S256, checked), the code exchange, and
//! refresh (tokens live 4 s). The login runs as a person would: `mcp-platform mcp login`,
//! the authorization URL opened by an HTTP client standing in for the browser.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use mcp_platform::config::McpServerConfig;
use mcp_platform::mock_provider::Reply;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use sha2::Digest;

use crate::binary::BIN;
use crate::chat_tools::{calls, chat_bodies, wait_ready};
use crate::helpers::TestApp;
use crate::providers::Fake;
use crate::ws::{chat, chat_app, connect, send, turn_frames};

/// Seconds an access token lives.
const TOKEN_LIFE: u64 = 4;

#[derive(Default)]
struct Issued {
    /// client id → its registered redirect URI.
    clients: HashMap<String, String>,
    /// code → (client id, redirect URI, PKCE challenge).
    codes: HashMap<String, (String, String, String)>,
    /// access token → when it was issued.
    access: HashMap<String, Instant>,
    refresh: Vec<String>,
}

#[derive(Clone, Default)]
pub struct AuthServer {
    base: Arc<Mutex<String>>,
    issued: Arc<Mutex<Issued>>,
    counter: Arc<AtomicU32>,
    refreshes: Arc<AtomicU32>,
    registrations: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
}

impl AuthServer {
    fn base(&self) -> String {
        self.base.lock().expect("base").clone()
    }

    fn next(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    fn tokens(&self) -> Value {
        let access = self.next("at");
        let refresh = self.next("rt");
        let mut issued = self.issued.lock().expect("issued");
        issued.access.insert(access.clone(), Instant::now());
        issued.refresh.push(refresh.clone());
        json!({"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_LIFE,
               "refresh_token": refresh})
    }

    /// Every token issued so far, to look for in what the host shows.
    fn secrets(&self) -> Vec<String> {
        let issued = self.issued.lock().expect("issued");
        issued
            .access
            .keys()
            .chain(issued.refresh.iter())
            .cloned()
            .collect()
    }
}

#[derive(Clone)]
struct Protected;

#[allow(clippy::unused_self)]
#[tool_router]
impl Protected {
    #[tool(description = "Says whether the caller was let in")]
    fn whoami(&self) -> String {
        "an authorized client".into()
    }
}

#[tool_handler]
impl ServerHandler for Protected {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn resource_metadata(State(auth): State<AuthServer>) -> Json<Value> {
    let base = auth.base();
    Json(json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]}))
}

async fn server_metadata(State(auth): State<AuthServer>) -> Json<Value> {
    let base = auth.base();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"]
    }))
}

async fn register(State(auth): State<AuthServer>, Json(body): Json<Value>) -> Response {
    let Some(redirect) = body["redirect_uris"][0].as_str() else {
        return (StatusCode::BAD_REQUEST, "redirect_uris").into_response();
    };
    auth.registrations.fetch_add(1, Ordering::SeqCst);
    let client_id = auth.next("client");
    auth.issued
        .lock()
        .expect("issued")
        .clients
        .insert(client_id.clone(), redirect.to_string());
    (
        StatusCode::CREATED,
        Json(json!({"client_id": client_id, "redirect_uris": [redirect],
                    "token_endpoint_auth_method": "none"})),
    )
        .into_response()
}

/// The user says yes at once: back to the client with a code.
async fn authorize(
    State(auth): State<AuthServer>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let registered = auth
        .issued
        .lock()
        .expect("issued")
        .clients
        .get(&field("client_id"))
        .cloned();
    if registered.as_deref() != Some(field("redirect_uri").as_str())
        || field("code_challenge_method") != "S256"
        || field("response_type") != "code"
        || field("resource") != format!("{}/mcp", auth.base())
    {
        return (StatusCode::BAD_REQUEST, format!("bad request: {query:?}")).into_response();
    }
    if field("scope").contains("refuse") {
        let to = format!(
            "{}?error=access_denied&error_description=the+user+said+no&state={}",
            field("redirect_uri"),
            field("state")
        );
        return Redirect::to(&to).into_response();
    }
    let code = auth.next("code");
    auth.issued.lock().expect("issued").codes.insert(
        code.clone(),
        (
            field("client_id"),
            field("redirect_uri"),
            field("code_challenge"),
        ),
    );
    let to = format!(
        "{}?code={code}&state={}&iss={}",
        field("redirect_uri"),
        field("state"),
        auth.base()
    );
    Redirect::to(&to).into_response()
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn token(
    State(auth): State<AuthServer>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    match field("grant_type").as_str() {
        "authorization_code" => {
            let Some((client, redirect, challenge)) = auth
                .issued
                .lock()
                .expect("issued")
                .codes
                .remove(&field("code"))
            else {
                return token_error("invalid_grant");
            };
            let verifier = sha2::Sha256::digest(field("code_verifier").as_bytes());
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(verifier);
            if client != field("client_id")
                || redirect != field("redirect_uri")
                || expected != challenge
            {
                return token_error("invalid_grant");
            }
            Json(auth.tokens()).into_response()
        }
        "refresh_token" => {
            let known = {
                let mut issued = auth.issued.lock().expect("issued");
                let position = issued
                    .refresh
                    .iter()
                    .position(|t| *t == field("refresh_token"));
                position.map(|i| issued.refresh.remove(i)).is_some()
            };
            if !known {
                return token_error("invalid_grant");
            }
            auth.refreshes.fetch_add(1, Ordering::SeqCst);
            Json(auth.tokens()).into_response()
        }
        _ => token_error("unsupported_grant_type"),
    }
}

/// Lets through a request with a live access token; else 401 with the challenge.
async fn guard(
    State(auth): State<AuthServer>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let live = auth
        .issued
        .lock()
        .expect("issued")
        .access
        .get(token)
        .is_some_and(|at| at.elapsed() < Duration::from_secs(TOKEN_LIFE));
    if live {
        return next.run(request).await;
    }
    auth.refused.fetch_add(1, Ordering::SeqCst);
    let challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        auth.base()
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "unauthorized",
    )
        .into_response()
}

/// The fake authorization server and the protected MCP server at `{base}/mcp`.
pub async fn start_auth_server() -> AuthServer {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let auth = AuthServer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    *auth.base.lock().expect("base") = format!("http://{addr}");
    let service = StreamableHttpService::new(
        || Ok(Protected),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let mcp = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(auth.clone(), guard));
    let router = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(server_metadata),
        )
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(auth.clone())
        .merge(mcp);
    tokio::spawn(async move { axum::serve(listener, router).await });
    auth
}

pub fn remote_entry(auth: &AuthServer) -> McpServerConfig {
    serde_json::from_value(json!({"type": "http", "url": format!("{}/mcp", auth.base())}))
        .expect("entry")
}

pub async fn server_health(app: &TestApp, name: &str) -> Value {
    app.health().await.1["mcp_stats"]["servers"][name].clone()
}

pub async fn wait_state(app: &TestApp, name: &str, state: &str) {
    for _ in 0..400 {
        if server_health(app, name).await["state"] == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "`{name}` never `{state}`: {}",
        server_health(app, name).await
    );
}

/// Runs `mcp-platform mcp login NAME` against `app`, opening the URL it prints with an HTTP
/// client (following the redirects, as a browser would); its exit status, its output, and the
/// page the browser ended on.
async fn login_with_cli(app: &TestApp, name: &str) -> (bool, String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "mcp",
            "login",
            name,
            "--server",
            &app.url(""),
            "--wait",
            "60",
        ])
        .env_remove("MCPP_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the CLI starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = String::new();
    let mut url = None;
    while let Some(line) = lines.next_line().await.expect("read") {
        printed.push_str(&line);
        printed.push('\n');
        if let Some(found) = line.trim().strip_prefix("http") {
            url = Some(format!("http{found}"));
            break;
        }
    }
    let Some(url) = url else {
        let output = child.wait_with_output().await.expect("output");
        panic!(
            "no URL printed: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let page = reqwest::get(&url).await.expect("the browser follows");
    let page = page.text().await.expect("page");
    while let Some(line) = lines.next_line().await.expect("read") {
        printed.push_str(&line);
        printed.push('\n');
    }
    let output = child.wait_with_output().await.expect("exit");
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed, page)
}

/// One chat turn calling the remote `whoami`; the tool result the model got.
async fn whoami_turn(app: &TestApp, fake: &Fake, request_id: &str) -> String {
    fake.mock.push([
        calls(&[("call_1", "whoami", json!({}))]),
        Reply::text("Done."),
    ]);
    let mut socket = connect(app).await;
    send(&mut socket, chat(request_id, "who am I?", json!({}))).await;
    let frames = turn_frames(&mut socket, request_id).await;
    assert_eq!(
        frames.last().expect("end")["status"],
        "complete",
        "{frames:?}"
    );
    let bodies = chat_bodies(fake);
    let last = bodies.last().expect("a provider request");
    last["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_protected_server_needs_a_login_then_works_refreshes_and_survives_a_restart() {
    let auth = start_auth_server().await;
    let entry = remote_entry(&auth);
    let first = entry.clone();
    let (app, fake) = chat_app(move |config| {
        config.mcp.servers.insert("remote".into(), first);
    })
    .await;
    wait_state(&app, "remote", "needs_login").await;
    let health = server_health(&app, "remote").await;
    assert_eq!(health["tools"], 0, "{health}");
    assert!(
        health["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("mcp-platform mcp login remote"),
        "{health}"
    );

    let (ok, printed, page) = login_with_cli(&app, "remote").await;
    assert!(ok, "{printed}");
    assert!(printed.contains("Logged in to `remote`"), "{printed}");
    assert!(page.contains("Logged in to remote"), "{page}");
    assert_eq!(auth.registrations.load(Ordering::SeqCst), 1);
    wait_ready(&app, "remote").await;
    assert!(
        whoami_turn(&app, &fake, "t1")
            .await
            .contains("an authorized client")
    );

    // Past half the token's life: the host refreshes it before use.
    tokio::time::sleep(Duration::from_secs(TOKEN_LIFE / 2 + 1)).await;
    assert!(
        whoami_turn(&app, &fake, "t2")
            .await
            .contains("an authorized client")
    );
    assert!(auth.refreshes.load(Ordering::SeqCst) >= 1);

    // No token in /health, in the log's view of a login, or on the page.
    let shown = app.health().await.1.to_string();
    for secret in auth.secrets() {
        assert!(!shown.contains(&secret), "{secret} in /health");
        assert!(!page.contains(&secret) && !printed.contains(&secret));
    }

    // A restart on the same database: ready again without a login (refreshing as needed).
    let db = app.db_path.clone();
    let dir = app.shutdown().await;
    let (app, _fake) = chat_app(move |config| {
        config.chat.service.repository.path = db;
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    wait_ready(&app, "remote").await;
    assert_eq!(auth.registrations.load(Ordering::SeqCst), 1);
    app.shutdown().await;
    drop(dir);
}

#[tokio::test]
async fn a_login_refused_or_misdirected_says_why_and_changes_nothing() {
    let auth = start_auth_server().await;
    let entry = remote_entry(&auth);
    let (app, _fake) = crate::chat_tools::tool_app(move |config| {
        config.mcp.servers.insert("remote".into(), entry);
    })
    .await;
    wait_state(&app, "remote", "needs_login").await;
    let post = |path: &str| app.client.post(app.url(path)).send();

    let unknown = post("/api/mcp/servers/ghost/login").await.expect("post");
    assert_eq!(unknown.status(), 404);
    let local = post("/api/mcp/servers/test/login").await.expect("post");
    assert_eq!(local.status(), 400);
    let body: Value = local.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a remote"),
        "{body}"
    );

    // A callback nobody started, and one without a code.
    let stray = app
        .client
        .get(app.url("/oauth/callback?code=x&state=forged"))
        .send()
        .await
        .expect("get");
    assert_eq!(stray.status(), 404);
    let text = stray.text().await.expect("text");
    assert!(text.contains("unknown or expired"), "{text}");

    // The user refuses at the authorization server: the login ends failed.
    let started: Value = post("/api/mcp/servers/remote/login")
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = started["login_id"].as_str().expect("login_id").to_string();
    let url = started["authorization_url"].as_str().expect("url");
    let refusing = format!("{url}&scope=refuse");
    let page = reqwest::get(&refusing).await.expect("browser");
    assert_eq!(page.status(), 400);
    assert!(
        page.text()
            .await
            .expect("page")
            .contains("the user said no")
    );
    let outcome: Value = app
        .client
        .get(app.url(&format!("/api/mcp/logins/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert_eq!(server_health(&app, "remote").await["state"], "needs_login");
    let missing = app
        .client
        .get(app.url("/api/mcp/logins/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    app.shutdown().await;
}
