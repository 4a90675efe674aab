//! REST endpoints over stored conversations, for front ends that browse history and for imports.
//! Each caller sees its own conversations (an admin's listing: everyone's, with owner names);
//! another's id is `not_found`.
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
use crate::store::{Conversation, ConversationId, NewMessage, Page, StoredMessage};
use crate::wire::ErrorCode;
use crate::wire::WireError;

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

fn parse_id(id: String) -> Result<ConversationId, ApiError> {
    Ok(ConversationId::try_from(id)?)
}

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
        .store
        .conversations_of(caller.owner())
        .list(query.limit.unwrap_or(50), query.cursor)
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
    let repo = state.store.conversations_of(caller.owner());
    let created = match body.id {
        // Ids are global: answering "already exists" to a user would tell that another user
        // has a conversation under that name. Imports under a chosen id are for admins.
        Some(_) if !caller.is_admin() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "only an admin key may choose a conversation's id (imports); leave `id` out",
            ));
        }
        Some(id) => repo.create_with_id(parse_id(id)?, body.title).await,
        None => repo.create(body.title).await,
    };
    Ok((StatusCode::CREATED, Json(created?)))
}

async fn fetch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        state
            .store
            .conversations_of(caller.owner())
            .get(&parse_id(id)?)
            .await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .conversations_of(caller.owner())
        .delete(&parse_id(id)?)
        .await?;
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
    let page = state
        .store
        .conversations_of(caller.owner())
        .history_page(&parse_id(id)?, query.before, query.limit.unwrap_or(50))
        .await?;
    Ok(Json(page))
}

/// Sets each message's `token_count` from its text, whatever the client said: the context
/// budget of later turns relies on it (a large message stored as 1 token would overflow it).
/// Counted with the default model's tokenizer, off the async runtime.
async fn count_tokens(
    state: &AppState,
    mut messages: Vec<NewMessage>,
) -> Result<Vec<NewMessage>, ApiError> {
    let model = state.providers.default_model(None).unwrap_or("gpt-4o");
    let encoding = crate::chat::Encoding::for_model(model);
    encoding.load().await;
    tokio::task::spawn_blocking(move || {
        for message in &mut messages {
            message.token_count = encoding.count(&message.content);
        }
        messages
    })
    .await
    .map_err(|error| {
        ApiError::from(WireError::internal(&format!(
            "counting tokens failed: {error}"
        )))
    })
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
    if body.messages.len() > 1000 {
        return Err(ApiError::invalid("at most 1000 messages per request"));
    }
    let messages = count_tokens(&state, body.messages).await?;
    let messages = state
        .store
        .conversations_of(caller.owner())
        .append(&parse_id(id)?, messages)
        .await?;
    // Imported messages become searchable soon, as a turn's do.
    state.memory.turn_finished();
    Ok((StatusCode::CREATED, Json(Appended { messages })))
}
