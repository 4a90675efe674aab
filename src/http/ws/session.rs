//! One socket: the reader loop (this task), its writer task, and the turns it started or
//! follows. Turns outlive their socket (`live.rs`): a client that leaves, or reads too slowly,
//! stops watching its turns, which go on and store their whole answer (unless
//! `chat.service.on_disconnect` is `cancel`); a revoked key's turns are cancelled. At shutdown
//! the socket stops reading, lets its turns finish (up to `server.shutdown_timeout`), then
//! closes with 1001.

use crate::config::OnDisconnect;
use crate::wire::ErrorCode;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actions;
use super::close::{CloseReason, Closer};
use super::frames::{
    ApprovePayload, AttachPayload, ClientFrame, CompactPayload, ElicitAction, ElicitPayload,
    Remember, ServerFrame,
};
use super::live::LiveTurn;
use super::outbox::{Outbox, OutboxLimits};
use super::render::SocketTurn;
use super::writer::{self, Keepalive};
use crate::auth::Caller;
use crate::chat::{Answer, AnswerError, TurnRequest};
use crate::http::AppState;
use crate::mcp::ElicitAnswer;

/// How long the writer may take to flush the last frames and the close frame.
const WRITER_GRACE: Duration = Duration::from_secs(5);

type Turns = Arc<Mutex<HashMap<String, CancellationToken>>>;

pub async fn run(socket: WebSocket, state: AppState, caller: Caller, _slot: OwnedSemaphorePermit) {
    let sockets = state.sockets.clone();
    let _active = sockets.opened();
    let ws = &state.config.chat.websocket;
    let (sink, mut inbound) = socket.split();
    let (out, frames) = Outbox::channel(OutboxLimits {
        queue_frames: ws.send_queue,
        buffer_bytes: ws.send_buffer,
        stall_limit: ws.slow_reader_timeout,
    });
    let watch = out.stall_watch();
    let stalled = watch.stalled();
    tokio::pin!(stalled);
    let closer = Arc::new(Closer::default());
    let pong = Arc::new(Notify::new());
    let keepalive = Keepalive {
        interval: ws.ping_interval,
        timeout: ws.ping_timeout,
    };
    let mut writer = tokio::spawn(writer::run(
        sink,
        frames,
        closer.clone(),
        pong.clone(),
        keepalive,
        sockets.clone(),
    ));
    let session = Session {
        caller: caller.clone(),
        state: state.clone(),
        out,
        turns: Turns::default(),
        tasks: TaskTracker::new(),
        socket: sockets.live.socket_id(),
        watching: Mutex::default(),
    };
    loop {
        tokio::select! {
            message = inbound.next() => match message {
                Some(Ok(Message::Text(text))) => session.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => {
                    let refusal = ServerFrame::error(
                        None,
                        ErrorCode::InvalidRequest,
                        "binary frames are not supported; send JSON text",
                        false,
                    );
                    session.refuse(&refusal);
                }
                Some(Ok(Message::Pong(_))) => pong.notify_one(),
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    tracing::debug!(%error, "socket read failed");
                    if is_over_size_limit(error) {
                        closer.set(CloseReason::TooLarge);
                    }
                    break;
                }
            },
            () = &mut stalled => {
                tracing::info!("closing a socket whose client reads too slowly");
                closer.abort(CloseReason::SlowReader);
                break;
            }
            () = closer.aborted() => break,
            () = caller.revoked() => {
                tracing::info!(key = caller.name(), "closing a socket whose credentials ended");
                closer.abort(CloseReason::Revoked);
                break;
            }
            () = sockets.closing().cancelled() => {
                closer.set(CloseReason::Shutdown);
                break;
            }
        }
    }
    let end = match closer.reason() {
        CloseReason::Shutdown => End::Finish(state.config.server.shutdown_timeout),
        CloseReason::Revoked => End::Cancel,
        _ => {
            closer.set(CloseReason::Client);
            match state.config.chat.service.on_disconnect {
                OnDisconnect::Detach => End::Detach,
                OnDisconnect::Cancel => End::Cancel,
            }
        }
    };
    session.end(end).await;
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    sockets.closed(closer.reason());
}

/// A frame over the hard limit set at the upgrade: tungstenite stops reading it.
fn is_over_size_limit(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

struct Session {
    caller: Caller,
    state: AppState,
    out: Outbox,
    /// What this socket started and may `cancel` (its turns and compactions), counted against
    /// `max_turns_per_connection`.
    turns: Turns,
    /// The compactions' tasks (turns run on the live registry's).
    tasks: TaskTracker,
    /// This socket among the watchers of live turns.
    socket: u64,
    /// The live turns this socket watches (started here or attached), by request id.
    watching: Mutex<HashMap<String, Arc<LiveTurn>>>,
}

/// How a session ends its turns.
enum End {
    /// Shutdown: they may finish within the deadline, then are cancelled.
    Finish(Duration),
    /// Cancelled now (a revoked key; `on_disconnect: cancel`); they store what they have.
    Cancel,
    /// They go on without this socket.
    Detach,
}

impl Session {
    async fn on_text(&self, text: &str) {
        let sockets = &self.state.sockets;
        sockets.frames_in.fetch_add(1, Ordering::Relaxed);
        sockets
            .bytes_in
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        let limit = self.state.config.chat.websocket.max_message_size;
        if text.len() > limit {
            let message = format!("the frame has {} bytes; the limit is {limit}", text.len());
            return self.refuse(&ServerFrame::error(
                None,
                ErrorCode::TooLarge,
                message,
                false,
            ));
        }
        match ClientFrame::parse(text) {
            Err(error) => self.refuse(&ServerFrame::refused(error)),
            Ok(ClientFrame::Ping { request_id }) => self.send(&ServerFrame::pong(request_id)),
            Ok(ClientFrame::Conversations { request_id, action }) => {
                let (chat, caller) = (&self.state.chat, &self.caller);
                self.send(&actions::conversations(chat, caller, &request_id, action).await);
            }
            Ok(ClientFrame::Approve {
                request_id,
                payload,
            }) => self.approve(request_id, &payload),
            Ok(ClientFrame::Elicit {
                request_id,
                payload,
            }) => self.elicit(request_id, payload),
            Ok(ClientFrame::Models { request_id }) => {
                self.send(&actions::models(&self.state.chat, &request_id));
            }
            Ok(ClientFrame::Memories { request_id, action }) => {
                let (chat, caller) = (&self.state.chat, &self.caller);
                self.send(&actions::memories(chat, caller, &request_id, action).await);
            }
            Ok(ClientFrame::Library { request_id, action }) => {
                // A server may take its time to read or fill in: the socket goes on meanwhile.
                let (chat, out) = (self.state.chat.clone(), self.out.clone());
                self.tasks.spawn(async move {
                    out.send(&actions::offers(&chat, &request_id, action).await);
                });
            }
            Ok(ClientFrame::Compact {
                request_id,
                payload,
            }) => self.start_compact(request_id, payload),
            Ok(ClientFrame::Attach {
                request_id,
                payload,
            }) => self.attach(request_id, payload),
            Ok(ClientFrame::Cancel { request_id }) => self.cancel(request_id),
            Ok(ClientFrame::Search {
                request_id,
                payload,
            }) => {
                let (chat, caller) = (&self.state.chat, &self.caller);
                self.send(&actions::search(chat, caller, &request_id, payload).await);
            }
            Ok(ClientFrame::Chat {
                request_id,
                payload,
            }) => self.start_turn(request_id, payload),
        }
    }

    /// Refuses a turn (or a compaction) whose id is in flight, or past the limit.
    fn busy(&self, request_id: String) {
        let max = self.state.config.chat.websocket.max_turns_per_connection;
        let message = format!(
            "turn `{request_id}` is already in flight, or {max} turns are (the limit per connection)"
        );
        self.refuse(&ServerFrame::error(
            Some(request_id),
            ErrorCode::Busy,
            message,
            true,
        ));
    }

    /// Runs a `compact` like a turn (one of the socket's turns; `cancel` stops it): a model
    /// call that may take a while, the socket going on meanwhile.
    fn start_compact(&self, request_id: String, payload: CompactPayload) {
        let token = CancellationToken::new();
        if !self.admit(&request_id, &token) {
            return self.busy(request_id);
        }
        let (chat, out, turns, caller) = (
            self.state.chat.clone(),
            self.out.clone(),
            self.turns.clone(),
            self.caller.clone(),
        );
        self.tasks.spawn(async move {
            let frame =
                actions::compact(&chat, &caller, &request_id, payload.conversation_id, &token)
                    .await;
            // Let go before the answer: a `cancel` after it finds nothing to cancel.
            turns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&request_id);
            out.send(&frame);
        });
    }

    /// Runs a `chat` turn on the live registry, watched from here (refused at the limit). The
    /// same request in flight in the same conversation is followed instead of run twice.
    fn start_turn(&self, request_id: String, payload: TurnRequest) {
        let live = self.state.sockets.live.clone();
        if let Some(conversation) = &payload.conversation_id
            && let Some(turn) = live.find(self.caller.name(), &request_id, conversation)
            && !turn.is_finished()
        {
            return self.follow(&turn, 0);
        }
        let token = CancellationToken::new();
        if !self.admit(&request_id, &token) {
            return self.busy(request_id);
        }
        let turn = live.start(
            self.caller.name(),
            &request_id,
            token,
            (self.socket, self.out.clone()),
        );
        self.watch(&turn);
        let (chat, turns, caller) = (
            self.state.chat.clone(),
            self.turns.clone(),
            self.caller.clone(),
        );
        let sink = turn.clone();
        live.spawn(turn, async move {
            chat.run_turn(&caller, &request_id, payload, &*sink, &sink.cancel)
                .await;
            turns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&request_id);
        });
    }

    /// Follows `turn` until the socket ends; turns that have finished are let go here, so a
    /// socket that chats for hours holds only the turns it is still following.
    fn watch(&self, turn: &Arc<LiveTurn>) {
        let mut watching = self.watching.lock().unwrap_or_else(PoisonError::into_inner);
        watching.retain(|_, watched| !watched.is_finished());
        watching.insert(turn.request_id.clone(), turn.clone());
    }

    /// Sends this socket the frames of `turn` after `after_seq`, then its live ones.
    fn follow(&self, turn: &Arc<LiveTurn>, after_seq: u64) {
        match turn.attach(self.socket, self.out.clone(), after_seq) {
            Ok(()) => self.watch(turn),
            Err(gap) => self.refuse(&ServerFrame::error(
                Some(turn.request_id.clone()),
                ErrorCode::Unavailable,
                format!(
                    "the frames of turn `{}` before seq {} are no longer kept; its answer is in \
                     get_history once it ends",
                    turn.request_id, gap.first_kept
                ),
                false,
            )),
        }
    }

    /// `attach`: follows a turn of this key, live or just ended, from `after_seq`; a turn
    /// long over is replayed from its stored answer.
    fn attach(&self, request_id: String, payload: AttachPayload) {
        let live = &self.state.sockets.live;
        if let Some(turn) = live.find(self.caller.name(), &request_id, &payload.conversation_id) {
            return self.follow(&turn, payload.after_seq);
        }
        let (chat, out, caller) = (
            self.state.chat.clone(),
            self.out.clone(),
            self.caller.clone(),
        );
        self.tasks.spawn(async move {
            let sink = SocketTurn::new(out.clone(), request_id.clone());
            let replayed = chat
                .replay_request(&caller, &payload.conversation_id, &request_id, &sink)
                .await;
            if let Err(error) = replayed {
                out.send(&ServerFrame::failed(Some(request_id), &error));
            }
        });
    }

    /// The user's answer to a server's question; like [`Session::approve`], an accepted one
    /// gets no frame, a refused one a notice on the turn (an answer that does not fit the
    /// schema leaves the question open).
    fn elicit(&self, request_id: String, payload: ElicitPayload) {
        let answer = match payload.action {
            ElicitAction::Accept => ElicitAnswer::Accept(payload.content.unwrap_or_default()),
            ElicitAction::Decline => ElicitAnswer::Decline,
            ElicitAction::Cancel => ElicitAnswer::Cancel,
        };
        let result = self.state.chat.answer_elicitation(
            &self.caller,
            &request_id,
            &payload.elicitation_id,
            answer,
        );
        if let Err(refused) = result {
            self.refuse_answer(request_id, &refused);
        }
    }

    /// An answer (`approve`, `elicit`) that was not taken: a `notice` with `invalid_answer`
    /// on the turn while it runs here, else an `error`.
    fn refuse_answer(&self, request_id: String, refused: &AnswerError) {
        let watched = self
            .watching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request_id)
            .filter(|turn| !turn.is_finished())
            .cloned();
        if let Some(turn) = watched {
            let (id, open) = match refused {
                AnswerError::Invalid { id, .. } => (id, true),
                AnswerError::NotWaiting(id) => (id, false),
            };
            // On the turn: every socket that follows it sees it, in its place.
            turn.publish(ServerFrame::question_notice(
                &request_id,
                "invalid_answer",
                id,
                open,
                refused.to_string(),
            ));
        } else {
            self.refuse(&ServerFrame::error(
                Some(request_id),
                ErrorCode::NotFound,
                refused.to_string(),
                false,
            ));
        }
    }

    /// An accepted decision gets no frame of its own: the turn's frames show what happened.
    /// A refused one gets a `notice` (`invalid_answer`) on the turn while it runs here, else
    /// an `error`.
    fn approve(&self, request_id: String, payload: &ApprovePayload) {
        let answer = Answer {
            decision: payload.decision,
            remember: payload.remember == Some(Remember::Conversation),
        };
        let result = self.state.chat.answer_approval(
            &self.caller,
            &request_id,
            &payload.approval_id,
            answer,
        );
        if let Err(refused) = result {
            self.refuse_answer(request_id, &refused);
        }
    }

    fn cancel(&self, request_id: String) {
        let followed = self
            .watching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request_id)
            .cloned();
        // A turn that has sent its last frame is over, even before it is let go here.
        let finished = followed.as_ref().is_some_and(|turn| turn.is_finished());
        let token = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request_id)
            .cloned()
            .or_else(|| followed.map(|turn| turn.cancel.clone()))
            .filter(|_| !finished);
        if let Some(token) = token {
            token.cancel();
        } else {
            let message = format!("no turn `{request_id}` is in flight on this connection");
            self.refuse(&ServerFrame::error(
                Some(request_id),
                ErrorCode::NotFound,
                message,
                false,
            ));
        }
    }

    /// Registers a turn (cancelled by `token`) unless its id is in flight here or the socket
    /// is at its turn limit.
    fn admit(&self, request_id: &str, token: &CancellationToken) -> bool {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let max = self.state.config.chat.websocket.max_turns_per_connection;
        if turns.contains_key(request_id) || turns.len() >= max {
            return false;
        }
        turns.insert(request_id.to_string(), token.clone());
        true
    }

    fn send(&self, frame: &ServerFrame) {
        self.out.send(frame);
    }

    fn refuse(&self, frame: &ServerFrame) {
        self.state
            .sockets
            .refused_frames
            .fetch_add(1, Ordering::Relaxed);
        self.send(frame);
    }

    /// Ends what the socket started or follows, as `end` says; its compactions are cancelled
    /// unless they may finish. Dropping the outbox then lets the writer close.
    async fn end(self, end: End) {
        self.tasks.close();
        let watching: Vec<Arc<LiveTurn>> = self
            .watching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, turn)| turn)
            .collect();
        let started: Vec<(String, CancellationToken)> = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, token)| (id.clone(), token.clone()))
            .collect();
        let detach = matches!(end, End::Detach);
        match end {
            End::Finish(deadline) => {
                let all_done = async {
                    self.tasks.wait().await;
                    for turn in &watching {
                        turn.finished().await;
                    }
                };
                if tokio::time::timeout(deadline, all_done).await.is_ok() {
                    return;
                }
                for (_, token) in &started {
                    token.cancel();
                }
                for turn in &watching {
                    turn.cancel.cancel();
                }
            }
            End::Cancel => {
                for (_, token) in &started {
                    token.cancel();
                }
            }
            End::Detach => {
                // Compactions are the socket's own errands: they end with it.
                for (request_id, token) in &started {
                    if !watching.iter().any(|turn| &turn.request_id == request_id) {
                        token.cancel();
                    }
                }
            }
        }
        if !detach {
            // Cancelled turns end while this socket still follows them: their last frame (and
            // what they store) comes before the close.
            for turn in watching.iter().filter(|turn| turn.cancel.is_cancelled()) {
                turn.finished().await;
            }
        }
        let live = &self.state.sockets.live;
        for turn in &watching {
            live.detach(turn, self.socket);
        }
        self.tasks.wait().await;
    }
}
