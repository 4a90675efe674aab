//! `/v1`: the OpenAI-compatible door. `POST /v1/chat/completions` (streamed or not) runs an
//! exchange on the same engine as `/ws/chat` (routing, keys and quotas, limits, retries,
//! fallback, breakers, and the server's MCP and memory tools run server-side); `GET /v1/models`
//! lists the models a request may name. Stateless: the client sends the history.

mod handover;
mod render;
mod request;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::AppState;
use crate::auth::Caller;
use crate::chat::{Asks, StoreIn, TurnEvent};
use crate::wire::{ErrorCode, WireError};
use render::{Envelope, activity, error_body};
use request::CompletionRequest;

/// The largest request body read (a long history); larger → 413.
const BODY_LIMIT: usize = 8 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::TooLarge
            } else {
                ErrorCode::InvalidRequest
            };
            let told = crate::wire::client_terms(&rejection.body_text());
            return failure(&WireError::new(code, told, false));
        }
    };
    let store_in = match conversation_header(&headers) {
        Ok(store_in) => store_in,
        Err(error) => return failure(&error),
    };
    let mut exchange = match request.exchange(store_in) {
        Ok(exchange) => exchange,
        Err(error) => return failure(&error),
    };
    exchange.asks = match approvals_header(&headers) {
        Ok(asks) => asks,
        Err(error) => return failure(&error),
    };
    let envelope = Envelope {
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: request.model.clone(),
    };
    let cancel = CancellationToken::new();
    let (sender, mut events) = handover::channel(cancel.clone());
    let (chat, id, turn_cancel) = (state.chat.clone(), envelope.id.clone(), cancel.clone());
    tokio::spawn(async move {
        chat.run_exchange(&caller, &id, exchange, &sender, &turn_cancel)
            .await;
    });
    // The client leaving (this future or the body dropped) cancels the exchange.
    let guard = cancel.drop_guard();
    // Wait for the first event: an exchange refused at once (unknown model, quota, provider
    // down after retries) is answered with its HTTP status, streamed or not.
    let mut conversation_id = None;
    let first = loop {
        match events.recv().await {
            None => {
                return failure(&WireError::internal(
                    "an exchange ended without a last event",
                ));
            }
            Some(TurnEvent::Failed(error)) => return failure(&error),
            // Stored: the user's message is committed in this conversation.
            Some(TurnEvent::Accepted { conversation, .. }) => {
                conversation_id = Some(conversation);
            }
            Some(event) => break event,
        }
    };
    let mut response = if request.stream {
        stream(envelope, first, events, guard, request.include_usage())
    } else {
        whole(&envelope, first, events).await
    };
    if let Some(id) = conversation_id
        && let Ok(value) = HeaderValue::from_str(id.as_str())
    {
        response.headers_mut().insert(CONVERSATION_HEADER, value);
    }
    response
}

/// Names the conversation an exchange is stored in: an id, or `new`.
const CONVERSATION_HEADER: &str = "x-conversation-id";
const APPROVE_HEADER: &str = "x-approve-tools";

/// `X-Conversation-Id`: absent → stateless; `new` → a new conversation; else its id.
fn conversation_header(headers: &HeaderMap) -> Result<StoreIn, WireError> {
    let Some(value) = headers.get(CONVERSATION_HEADER) else {
        return Ok(StoreIn::Nothing);
    };
    let value = value.to_str().map_err(|_| {
        WireError::new(
            ErrorCode::InvalidRequest,
            "X-Conversation-Id must be ASCII: an id, or `new`",
            false,
        )
    })?;
    let value = value.trim();
    if value.eq_ignore_ascii_case("new") || value.is_empty() {
        Ok(StoreIn::NewConversation)
    } else {
        Ok(StoreIn::Conversation(value.to_string()))
    }
}

/// `X-Approve-Tools: allow` lets tools whose policy is `ask` run in this request (no one can
/// be asked here); absent or `deny`, they are denied.
fn approvals_header(headers: &HeaderMap) -> Result<Asks, WireError> {
    let Some(value) = headers.get(APPROVE_HEADER) else {
        return Ok(Asks::Deny);
    };
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("allow") => Ok(Asks::Allow),
        Ok(v) if v.eq_ignore_ascii_case("deny") => Ok(Asks::Deny),
        _ => Err(WireError::new(
            ErrorCode::InvalidRequest,
            "X-Approve-Tools must be `allow` or `deny`",
            false,
        )),
    }
}

/// The answer as server-sent events.
fn stream(
    envelope: Envelope,
    first: TurnEvent,
    events: handover::Receiver,
    guard: DropGuard,
    include_usage: bool,
) -> Response {
    let opening = envelope.opening() + &envelope.stream_event(first, include_usage);
    let state = (events, envelope, guard, false);
    let rest = futures::stream::unfold(
        state,
        move |(mut events, envelope, guard, ended)| async move {
            if ended {
                return None;
            }
            let event = events.recv().await?;
            let last = matches!(event, TurnEvent::Completed(_) | TurnEvent::Failed(_));
            let text = envelope.stream_event(event, include_usage);
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(text)),
                (events, envelope, guard, last),
            ))
        },
    );
    let body = futures::stream::once(async move { Ok(Bytes::from(opening)) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The whole answer as one `chat.completion`.
async fn whole(envelope: &Envelope, first: TurnEvent, mut events: handover::Receiver) -> Response {
    let mut text = String::new();
    let mut tools: Vec<Value> = Vec::new();
    let mut next = Some(first);
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => match events.recv().await {
                Some(event) => event,
                None => break,
            },
        };
        if let Some(step) = activity(&event) {
            tools.push(step);
            continue;
        }
        match event {
            TurnEvent::TextDelta(piece) => text.push_str(&piece),
            TurnEvent::Completed(done) => {
                return Json(envelope.completion(&text, &done, &tools)).into_response();
            }
            TurnEvent::Failed(error) => return failure(&error),
            _ => {}
        }
    }
    failure(&WireError::internal(
        "an exchange ended without a last event",
    ))
}

/// An error in OpenAI's shape with the status its code maps to.
fn failure(error: &WireError) -> Response {
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(error_body(error))).into_response();
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `GET /v1/models`.
async fn models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .providers
        .model_ids()
        .into_iter()
        .map(|(id, provider, _)| {
            json!({"id": id, "object": "model", "created": 0, "owned_by": provider})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}
