//! Credentials at the edge: `Authorization: Bearer KEY` on any route, or the session cookie a
//! browser got from `POST /api/login`. The layer resolves them (through `auth`) into a
//! [`Caller`] put in the request's extensions before any handler or upgrade runs; refused
//! requests get 401 with `WWW-Authenticate: Bearer`, or 429 once an address failed too often.
//!
//! - `POST /api/login` `{"key": "mcpp_..."}` → 200 `{"name", "role"}` and an `HttpOnly`,
//!   `SameSite=Strict` cookie; `POST /api/logout` ends the session.

use crate::wire::{ErrorCode, WireError};
use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::auth::{Caller, Credential, LoginError, Refusal};

/// The browser session cookie.
pub const COOKIE: &str = "mcpp_session";

/// Routes open without credentials (they check what they need themselves).
pub fn open_router() -> Router<AppState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .layer(axum::extract::DefaultBodyLimit::max(
            super::SMALL_BODY_LIMIT,
        ))
}

/// `GET /api/session`: who the credentials (or the session cookie) belong to, for a page
/// deciding whether to ask for a key. Behind [`require_caller`]: no credentials → 401.
pub fn session_router() -> Router<AppState> {
    Router::new().route("/api/session", axum::routing::get(session))
}

async fn session(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Json<serde_json::Value> {
    let role = if caller.is_admin() { "admin" } else { "user" };
    Json(json!({
        "name": caller.name(),
        "role": role,
        "auth_required": state.auth.required(),
    }))
}

/// What the request presents: a bearer token first, else the session cookie.
pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        return match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Credential::Bearer(token.trim())
            }
            _ => Credential::Bearer(""),
        };
    }
    session_cookie(headers).map_or(Credential::None, Credential::Session)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// The address credential attempts are counted against: the peer's, or, when the peer is one
/// of `server.auth.trusted_proxies`, the client its `X-Forwarded-For` names (the rightmost
/// address that is not itself a trusted proxy; what is left of it the client could forge).
pub fn client_address(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let trusted = &state.config.server.auth.trusted_proxies;
    if !trusted.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|hop| !trusted.contains(hop))
        .unwrap_or(peer.ip())
}

/// Resolves the caller or refuses the request.
pub async fn require_caller(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.auth.authenticate(
        credential(request.headers()),
        client_address(&state, request.headers(), peer),
    ) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => {
            state.counters.auth_refused();
            refusal_response(refusal)
        }
    }
}

/// The caller of a request on an open route, if its credentials are good; failures count
/// toward the address's throttle like anywhere else.
pub fn optional_caller(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Option<Caller> {
    match credential(headers) {
        Credential::None if state.auth.required() => None,
        credential => state
            .auth
            .authenticate(credential, client_address(state, headers, peer))
            .ok(),
    }
}

pub fn refusal_response(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthorized => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                refusal.to_string(),
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mcp-platform\""),
            );
            response
        }
        Refusal::Throttled(seconds) => {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAttempts,
                refusal.to_string(),
            );
            error.retry_after_s = Some(seconds);
            error.into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let address = client_address(&state, &headers, peer);
    let (token, caller) = match state.auth.login(body.key.trim(), address).await {
        Ok(session) => session,
        Err(LoginError::Refused(refusal)) => {
            state.counters.auth_refused();
            return Ok(refusal_response(refusal));
        }
        Err(LoginError::Store(error)) => return Err(error.into()),
        Err(LoginError::Random(error)) => {
            return Err(WireError::internal(&format!(
                "no random numbers for a session token: {error}"
            ))
            .into());
        }
    };
    let max_age = state.auth.session_ttl().as_secs();
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_suffix(&headers)
    );
    let role = if caller.is_admin() { "admin" } else { "user" };
    let mut response = Json(json!({"name": caller.name(), "role": role})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        state.auth.logout(token).await?;
    }
    let cookie = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_suffix(&headers)
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `; Secure` when a TLS-terminating proxy says the browser used HTTPS (it only restricts the
/// cookie, so trusting the header costs nothing).
fn secure_suffix(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn a_bearer_token_wins_over_the_cookie() {
        let h = headers(&[
            ("authorization", "Bearer mcpp_abc"),
            ("cookie", "mcpp_session=mcps_x"),
        ]);
        assert!(matches!(credential(&h), Credential::Bearer("mcpp_abc")));
        let h = headers(&[("authorization", "bearer   mcpp_abc ")]);
        assert!(matches!(credential(&h), Credential::Bearer("mcpp_abc")));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "theme=dark; mcpp_session=mcps_tok; x=1")]);
        assert!(matches!(credential(&h), Credential::Session("mcps_tok")));
        assert!(matches!(credential(&HeaderMap::new()), Credential::None));
    }

    #[test]
    fn another_scheme_is_a_wrong_credential_not_none() {
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert!(matches!(credential(&h), Credential::Bearer("")));
    }
}
