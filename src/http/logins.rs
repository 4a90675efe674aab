//! OAuth logins to remote MCP servers, over HTTP (`mcp-platform mcp login NAME` uses these):
//!
//! - `POST /api/mcp/servers/{name}/login` (admin) → `{"login_id", "server",
//!   "authorization_url"}`: open the URL in a browser
//! - `GET  /api/mcp/logins/{id}` (admin) → `{"state": "waiting" | "done" | "failed", "server",
//!   "error"?}`
//! - `GET  /oauth/callback?code&state[&iss]` — where the authorization server sends the
//!   browser back: completes the login and says so in a small page. Open (no key): the
//!   `state` a login was given is what it accepts.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::mcp::oauth::LoginError;
use crate::wire::ErrorCode;

/// Where the browser comes back, on this server.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// The login API (behind the caller check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/mcp/servers/{name}/login", post(begin))
        .route("/api/mcp/logins/{id}", get(outcome))
}

/// The callback (open: the authorization server sends the browser here).
pub fn callback_router() -> Router<AppState> {
    Router::new().route(CALLBACK_PATH, get(callback))
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        let (status, code) = match &error {
            LoginError::UnknownServer(_) | LoginError::UnknownLogin => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            LoginError::NotRemote(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            LoginError::Refused(_) => (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable),
            LoginError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// This server's callback URL as the browser reaches it: the request's own scheme and Host
/// (which passed the Host check).
fn redirect_uri(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::invalid("the request has no Host header"))?;
    let scheme = super::origin::request_scheme(headers);
    Ok(format!("{scheme}://{host}{CALLBACK_PATH}"))
}

async fn begin(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    ApiError::require_admin(&caller, "logging in to MCP servers")?;
    let redirect = redirect_uri(&headers)?;
    let started = state.mcp.begin_login(&name, &redirect).await?;
    Ok(Json(serde_json::json!(started)))
}

async fn outcome(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ApiError::require_admin(&caller, "logging in to MCP servers")?;
    let outcome = state
        .mcp
        .login_outcome(&id)
        .ok_or_else(|| ApiError::from(LoginError::UnknownLogin))?;
    Ok(Json(serde_json::json!(outcome)))
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(State(app): State<AppState>, Query(query): Query<Callback>) -> Response {
    let Some(login_state) = query.state.as_deref() else {
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The callback has no state.",
        );
    };
    if let Some(error) = &query.error {
        let detail = query.error_description.as_deref().unwrap_or(error);
        let reason = format!("the authorization server said: {detail}");
        let server = app.mcp.fail_login(login_state, &reason);
        let title = server.map_or("Login failed".to_string(), |s| {
            format!("Login to {s} failed")
        });
        return page(StatusCode::BAD_REQUEST, &title, &reason);
    }
    let Some(code) = query.code.as_deref() else {
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The callback has no code.",
        );
    };
    match app
        .mcp
        .finish_login(login_state, code, query.iss.as_deref())
        .await
    {
        Ok(server) => page(
            StatusCode::OK,
            &format!("Logged in to {server}"),
            "The MCP server connects now. You can close this tab.",
        ),
        Err(error) => {
            let text = error.to_string();
            page(ApiError::from(error).status, "Login failed", &text)
        }
    }
}

/// A small page for the browser; every text escaped, nothing loaded.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title>\
         <body style=\"font-family:system-ui;max-width:40em;margin:4em auto\">\
         <h1>{0}</h1><p>{1}</p>",
        crate::scrub::html(title),
        crate::scrub::html(text)
    );
    (
        status,
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_url_follows_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8000".parse().expect("host"));
        assert_eq!(
            redirect_uri(&headers).expect("uri"),
            "http://127.0.0.1:8000/oauth/callback"
        );
        headers.insert("x-forwarded-proto", "https".parse().expect("proto"));
        assert_eq!(
            redirect_uri(&headers).expect("uri"),
            "https://127.0.0.1:8000/oauth/callback"
        );
        assert!(redirect_uri(&HeaderMap::new()).is_err());
    }
}
