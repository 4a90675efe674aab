//! Turns that outlive their socket. A turn started on a socket is registered here under its
//! owner (the caller's principal) and request id; its frames are numbered (`seq`), kept in a
//! bounded buffer and sent to every socket watching it. A socket that closes stops watching:
//! the turn goes on, reading its provider at its own pace, for at most
//! `chat.service.detached_turn_timeout` without a watcher (then it is cancelled, what was
//! answered stored). `attach` from any socket of the same owner sends the frames after the
//! `seq` it names, then the live ones. A turn that ends without a watcher keeps its frames
//! for the same time; one that ends watched lets them go at once (under load, keeping every
//! turn's frames for minutes would cost gigabytes), and an `attach` then replays its stored
//! answer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frames::ServerFrame;
use super::outbox::Outbox;
use super::render::frames;
use crate::chat::{TurnEvent, TurnSink};
use crate::store::ConversationId;

/// Frames a turn keeps for late watchers at most, and their text in bytes at most; past
/// either the oldest go (an `attach` from before them is refused).
const MAX_KEPT_FRAMES: usize = 8192;
const MAX_KEPT_BYTES: usize = 8 << 20;

/// Live turns by (owner, request id): one per conversation that used the id.
type Registry = HashMap<(String, String), Vec<Arc<LiveTurn>>>;

/// Every live turn, by (owner, request id).
pub struct LiveTurns {
    turns: Mutex<Registry>,
    /// The turns' tasks: shutdown waits for them, then cancels them.
    tasks: TaskTracker,
    /// `chat.service.detached_turn_timeout`.
    keep: Duration,
    next_socket: AtomicU64,
}

/// One turn: its frames so far and who watches it.
pub struct LiveTurn {
    pub request_id: String,
    owner: String,
    /// Cancels the turn (what was answered is stored).
    pub cancel: CancellationToken,
    /// Cancelled once the turn has ended (its last frame sent).
    done: CancellationToken,
    state: Mutex<State>,
}

struct State {
    conversation: Option<ConversationId>,
    frames: VecDeque<ServerFrame>,
    bytes: usize,
    last_seq: u64,
    watchers: Vec<(u64, Outbox)>,
    /// Since when no socket watches the unfinished turn.
    detached_since: Option<Instant>,
}

/// Why an `attach` cannot send what was asked.
#[derive(Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_kept: u64,
}

fn frame_bytes(frame: &ServerFrame) -> usize {
    frame.chunk.data.as_ref().map_or(0, String::len) + 256
}

impl LiveTurns {
    pub fn new(keep: Duration) -> Self {
        Self {
            turns: Mutex::default(),
            tasks: TaskTracker::new(),
            keep,
            next_socket: AtomicU64::new(1),
        }
    }

    /// A new id for a socket (its watcher entries).
    pub fn socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a turn (stopped by `cancel`) watched by `watcher` (a socket and its outbox)
    /// from its first frame.
    pub fn start(
        &self,
        owner: &str,
        request_id: &str,
        cancel: CancellationToken,
        watcher: (u64, Outbox),
    ) -> Arc<LiveTurn> {
        let turn = Arc::new(LiveTurn {
            request_id: request_id.to_string(),
            owner: owner.to_string(),
            cancel,
            done: CancellationToken::new(),
            state: Mutex::new(State {
                conversation: None,
                frames: VecDeque::new(),
                bytes: 0,
                last_seq: 0,
                watchers: vec![watcher],
                detached_since: None,
            }),
        });
        self.lock()
            .entry((owner.to_string(), request_id.to_string()))
            .or_default()
            .push(turn.clone());
        turn
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` (the turn) to its end on the registry's tasks; the turn is then finished,
    /// and forgotten `keep` later.
    pub fn spawn(
        self: &Arc<Self>,
        turn: Arc<LiveTurn>,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let registry = self.clone();
        self.tasks.spawn(async move {
            work.await;
            // A turn that ended watched has been seen to its end: nothing is kept for later
            // (an `attach` then replays the stored answer). One that ended alone keeps its
            // frames for `keep`, for the client that comes back.
            if !turn.finish() {
                tokio::time::sleep(registry.keep).await;
            }
            registry.forget(&turn);
        });
    }

    fn forget(&self, turn: &Arc<LiveTurn>) {
        let mut turns = self.lock();
        let key = (turn.owner.clone(), turn.request_id.clone());
        if let Some(list) = turns.get_mut(&key) {
            list.retain(|t| !Arc::ptr_eq(t, turn));
            if list.is_empty() {
                turns.remove(&key);
            }
        }
    }

    /// The owner's turn `request_id` of `conversation`, live or recently ended.
    pub fn find(&self, owner: &str, request_id: &str, conversation: &str) -> Option<Arc<LiveTurn>> {
        self.lock()
            .get(&(owner.to_string(), request_id.to_string()))?
            .iter()
            .rev()
            .find(|turn| turn.is_in(conversation))
            .cloned()
    }

    /// `socket` stops watching `turn`; a turn left without watchers is cancelled if it is
    /// still running `keep` later and nobody has attached meanwhile.
    pub fn detach(&self, turn: &Arc<LiveTurn>, socket: u64) {
        let Some(since) = turn.remove_watcher(socket) else {
            return;
        };
        let (turn, keep) = (turn.clone(), self.keep);
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(keep) => {}
                () = turn.done.cancelled() => return,
            }
            if turn.detached_since() == Some(since) {
                tracing::info!(request_id = %turn.request_id,
                    "a turn without a socket for chat.service.detached_turn_timeout is cancelled");
                turn.cancel.cancel();
            }
        });
    }

    /// Turns still running (detached or not).
    pub fn running(&self) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|t| !t.is_finished())
            .count()
    }

    /// Turns running without a watcher.
    pub fn detached(&self) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|t| !t.is_finished() && t.detached_since().is_some())
            .count()
    }

    /// At shutdown: waits up to `deadline` for the running turns, then cancels them and waits
    /// for them to store what they have.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let running: Vec<Arc<LiveTurn>> = self.lock().values().flatten().cloned().collect();
        let all_done = async {
            for turn in &running {
                turn.done.cancelled().await;
            }
        };
        if tokio::time::timeout(deadline, all_done).await.is_ok() {
            return true;
        }
        for turn in &running {
            turn.cancel.cancel();
        }
        for turn in &running {
            turn.done.cancelled().await;
        }
        false
    }
}

impl LiveTurn {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the turn belongs to `conversation` (without a copy of its id).
    fn is_in(&self, conversation: &str) -> bool {
        self.state()
            .conversation
            .as_ref()
            .is_some_and(|c| c.as_str() == conversation)
    }

    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Waits until the turn has ended.
    pub async fn finished(&self) {
        self.done.cancelled().await;
    }

    fn detached_since(&self) -> Option<Instant> {
        self.state().detached_since
    }

    /// The instant it became detached, if removing `socket` left it so.
    fn remove_watcher(&self, socket: u64) -> Option<Instant> {
        let mut state = self.state();
        let before = state.watchers.len();
        state.watchers.retain(|(id, _)| *id != socket);
        if state.watchers.len() == before || !state.watchers.is_empty() || self.is_finished() {
            return None;
        }
        let now = Instant::now();
        state.detached_since = Some(now);
        Some(now)
    }

    /// Sends `socket` the frames after `after_seq`, then (until the end) every new one.
    pub fn attach(&self, socket: u64, out: Outbox, after_seq: u64) -> Result<(), Gap> {
        let mut state = self.state();
        let first_kept = state
            .frames
            .front()
            .and_then(|f| f.seq)
            .unwrap_or(state.last_seq + 1);
        if after_seq + 1 < first_kept {
            return Err(Gap { first_kept });
        }
        for frame in state.frames.iter().filter(|f| f.seq > Some(after_seq)) {
            out.send(frame);
        }
        if !self.is_finished() {
            state.watchers.retain(|(id, _)| *id != socket);
            state.watchers.push((socket, out));
            state.detached_since = None;
        }
        Ok(())
    }

    /// Ends the turn; whether a socket watched its end (its frames are then let go).
    fn finish(&self) -> bool {
        let mut state = self.state();
        let watched = !state.watchers.is_empty();
        state.watchers = Vec::new();
        state.detached_since = None;
        if watched {
            // Not `clear()`: that keeps the buffer, and a socket holds its finished turns
            // until it next starts one.
            state.frames = VecDeque::new();
            state.bytes = 0;
        }
        self.done.cancel();
        watched
    }

    /// Numbers `frame`, keeps it and sends it to every watcher.
    pub fn publish(&self, mut frame: ServerFrame) {
        let mut state = self.state();
        state.last_seq += 1;
        frame.seq = Some(state.last_seq);
        // A watcher whose queue gave up is left to its session, which detaches it as it ends.
        for (_, out) in &state.watchers {
            out.send(&frame);
        }
        state.bytes += frame_bytes(&frame);
        state.frames.push_back(frame);
        while state.frames.len() > MAX_KEPT_FRAMES || state.bytes > MAX_KEPT_BYTES {
            let Some(old) = state.frames.pop_front() else {
                break;
            };
            state.bytes -= frame_bytes(&old);
        }
    }
}

impl TurnSink for LiveTurn {
    fn emit(&self, event: TurnEvent) {
        if let TurnEvent::Accepted { conversation, .. } = &event {
            self.state().conversation = Some(conversation.clone());
        }
        frames(&self.request_id, event, |frame| self.publish(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::{OutboxLimits, OutboxReceiver};
    use super::*;

    fn outbox() -> (Outbox, OutboxReceiver) {
        Outbox::channel(OutboxLimits {
            queue_frames: 1000,
            buffer_bytes: 1 << 20,
            stall_limit: Duration::from_secs(10),
        })
    }

    fn seqs(rx: &mut OutboxReceiver) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv())
            .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .filter_map(|frame| frame["seq"].as_u64())
            .collect()
    }

    fn text(turn: &LiveTurn, n: usize) {
        for i in 0..n {
            turn.emit(TurnEvent::TextDelta(format!("t{i} ")));
        }
    }

    #[tokio::test]
    async fn a_late_watcher_gets_what_it_missed_then_the_live_frames_once_each() {
        let live = LiveTurns::new(Duration::from_secs(60));
        let (first, mut first_rx) = outbox();
        let turn = live.start("alice", "r", CancellationToken::new(), (1, first));
        text(&turn, 3);
        assert_eq!(seqs(&mut first_rx), [1, 2, 3]);
        let (second, mut second_rx) = outbox();
        turn.attach(2, second, 1).expect("kept");
        text(&turn, 2);
        assert_eq!(seqs(&mut second_rx), [2, 3, 4, 5]);
        assert_eq!(seqs(&mut first_rx), [4, 5]);
        // A third follower from where the others are; each gets every new frame once.
        let (again, mut again_rx) = outbox();
        turn.attach(3, again, 5).expect("kept");
        text(&turn, 1);
        assert_eq!(seqs(&mut again_rx), [6]);
        assert_eq!(seqs(&mut second_rx), [6]);
    }

    #[tokio::test]
    async fn a_turn_left_alone_is_detached_and_a_watched_end_lets_its_frames_go() {
        let live = LiveTurns::new(Duration::from_secs(60));
        let (out, _rx) = outbox();
        let turn = live.start("alice", "r", CancellationToken::new(), (1, out));
        live.detach(&turn, 1);
        assert_eq!(live.detached(), 1);
        let (back, _back_rx) = outbox();
        turn.attach(2, back, 0).expect("kept");
        assert_eq!(live.detached(), 0);
        text(&turn, 2);
        assert!(turn.finish(), "a watcher saw the end");
        // Let go, buffer and all: a socket may hold the finished turn a while longer.
        assert_eq!(turn.state().frames.capacity(), 0);
        assert!(turn.is_finished());
        assert_eq!(live.running(), 0);
    }

    #[tokio::test]
    async fn frames_past_the_bound_are_dropped_and_an_attach_before_them_is_refused() {
        let live = LiveTurns::new(Duration::from_secs(60));
        let (out, _rx) = outbox();
        let turn = live.start("alice", "r", CancellationToken::new(), (1, out));
        text(&turn, MAX_KEPT_FRAMES + 10);
        let (late, _late_rx) = outbox();
        assert_eq!(turn.attach(2, late, 0), Err(Gap { first_kept: 11 }));
        let (recent, mut recent_rx) = outbox();
        let last = (MAX_KEPT_FRAMES + 10) as u64;
        turn.attach(3, recent, last - 2).expect("kept");
        assert_eq!(seqs(&mut recent_rx), [last - 1, last]);
    }
}
