//! API keys over REST, for admins (the same as `mcp-platform keys`):
//!
//! - `GET    /api/keys`            every key: name, role, created, last used, usage today,
//!   quotas (never the key)
//! - `POST   /api/keys` `{"name", "admin"?, "turns_per_minute"?, "tokens_per_day"?,
//!   "concurrent_turns"?}` → 201 with the new `key`, shown this once
//! - `DELETE /api/keys/{name}`     revoke: its sessions end, its sockets close (4401)

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::{Caller, KeyError};
use crate::store::{AccessRole, Quotas};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/keys", get(list).post(create))
        .route("/api/keys/{name}", delete(revoke))
        .layer(axum::extract::DefaultBodyLimit::max(
            super::SMALL_BODY_LIMIT,
        ))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    ApiError::require_admin(&caller, "managing keys")?;
    Ok(Json(json!({"keys": state.auth.keys().await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    admin: bool,
    #[serde(flatten)]
    quotas: QuotaBody,
}

#[derive(Deserialize)]
struct QuotaBody {
    turns_per_minute: Option<u32>,
    tokens_per_day: Option<u64>,
    concurrent_turns: Option<u32>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    ApiError::require_admin(&caller, "managing keys")?;
    let Json(body) = body?;
    let quotas = Quotas {
        turns_per_minute: body.quotas.turns_per_minute,
        tokens_per_day: body.quotas.tokens_per_day,
        concurrent_turns: body.quotas.concurrent_turns,
    };
    if [
        quotas.turns_per_minute.map(u64::from),
        quotas.tokens_per_day,
        quotas.concurrent_turns.map(u64::from),
    ]
    .contains(&Some(0))
    {
        return Err(ApiError::invalid(
            "a quota must be at least 1 (leave it out for unlimited)",
        ));
    }
    let role = if body.admin {
        AccessRole::Admin
    } else {
        AccessRole::User
    };
    let (key, row) = state
        .auth
        .create_key(&body.name, role, quotas)
        .await
        .map_err(|error| match error {
            KeyError::Store(error) => ApiError::from(error),
            other => ApiError::invalid(other.to_string()),
        })?;
    tracing::info!(key = %row.name, by = caller.name(), "API key created over REST");
    Ok((
        StatusCode::CREATED,
        Json(json!({"key": key, "principal": row})),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ApiError::require_admin(&caller, "managing keys")?;
    let row = state.auth.revoke(&name).await?;
    tracing::info!(key = %row.name, by = caller.name(), "API key revoked over REST");
    Ok(Json(json!({"revoked": row})))
}
