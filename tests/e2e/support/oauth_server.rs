//! A fake OAuth authorization server and a protected MCP server behind it (one axum app on
//! 127.0.0.1): protected resource metadata, authorization server metadata, dynamic client
//! registration, PKCE (S256, checked), the code exchange, and refresh (tokens live 4 s).

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
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use sha2::Digest;

/// Seconds an access token lives.
pub const TOKEN_LIFE: u64 = 4;

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

#[derive(Clone, Default)]
pub struct AuthServer {
    base: Arc<Mutex<String>>,
    issued: Arc<Mutex<Issued>>,
    counter: Arc<AtomicU32>,
    pub refreshes: Arc<AtomicU32>,
    pub registrations: Arc<AtomicU32>,
    pub refused: Arc<AtomicU32>,
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
    pub fn secrets(&self) -> Vec<String> {
        let issued = self.issued.lock().expect("issued");
        issued
            .access
            .keys()
            .chain(issued.refresh.iter())
            .cloned()
            .collect()
    }
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
