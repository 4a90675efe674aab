//! REST endpoints over stored conversations, for front ends that browse history and for imports.
//! Each calls the chat operation a socket's request calls: a caller sees its own conversations
//! (an admin's listing: everyone's, with owner names); another's id is `not_found`.
//!
//! - `GET    /api/conversations?limit&cursor`          most recently active first
//! - `POST   /api/conversations` `{"title"?, "id"?}`   create
//! - `GET    /api/conversations/{id}`                  one conversation
//! - `DELETE /api/conversations/{id}`                  with its messages
//! - `GET    /api/conversations/{id}/messages?limit&before`   newest page, in order
//! - `POST   /api/conversations/{id}/messages` `{"messages": [...]}`   append in one transaction

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::store::{Conversation, NewMessage, Page, StoredMessage};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/conversations", get(list).post(create))
        .route("/api/conversations/{id}", get(fetch).delete(remove))
        .route(
            "/api/conversations/{id}/messages",
            get(messages).post(append),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// The largest request body read (an append of messages); larger → 413.
pub const BODY_LIMIT: usize = 2 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    let Query(query) = query?;
    let page = state
        .chat
        .list_conversations(&caller, query.limit, query.cursor)
        .await?;
    Ok(Json(page))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: Option<String>,
    id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let Json(body) = body?;
    let created = state
        .chat
        .create_conversation(&caller, body.title, body.id)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn fetch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(state.chat.get_conversation(&caller, id).await?))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.chat.delete_conversation(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<Page<StoredMessage>>, ApiError> {
    let Query(query) = query?;
    let history = state
        .chat
        .history(&caller, id, query.before, query.limit)
        .await?;
    Ok(Json(history.page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
    messages: Vec<NewMessage>,
}

#[derive(serde::Serialize)]
struct Appended {
    messages: Vec<StoredMessage>,
}

/// Returns only after the batch is committed: a `201` means the messages are durable.
async fn append(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<AppendBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let Json(body) = body?;
    let messages = state
        .chat
        .append_messages(&caller, id, body.messages)
        .await?;
    Ok((StatusCode::CREATED, Json(Appended { messages })))
}
