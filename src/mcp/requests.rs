//! What a server sends its host while one of our tool calls runs: progress notifications and
//! questions for the user (`elicitation/create`), routed to the call that caused them.
//!
//! Progress carries the call's progress token (rmcp puts one in every request's `_meta`), so
//! it finds its call exactly. A question (elicitation, sampling) carries nothing that names
//! the call over stdio, so it goes to the server's oldest call in flight, and only when every
//! call in flight belongs to the same caller: a question is never shown to, or paid by,
//! someone who did not cause it. With no call in flight, or calls of several callers, it is
//! refused (an elicitation declined).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

/// A progress notification of a running call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// A server's question for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Elicitation {
    pub message: String,
    /// The requested schema: an object of primitive properties.
    pub schema: Value,
}

/// The user's answer to an [`Elicitation`].
#[derive(Debug, Clone, PartialEq)]
pub enum ElicitAnswer {
    Accept(Map<String, Value>),
    Decline,
    Cancel,
}

/// A server's request to our model (`sampling/createMessage`), text only.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// The server's own system prompt (ours is not used).
    pub system_prompt: Option<String>,
    /// `(is_user, text)` in order.
    pub messages: Vec<(bool, String)>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    /// Model names or families the server prefers, best first.
    pub hints: Vec<String>,
}

/// What our model answered a [`Sampling`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub text: String,
    pub model: String,
    /// `endTurn` or `maxTokens`.
    pub stop_reason: &'static str,
}

/// What the caller of a tool does for the server while the call runs.
pub trait CallHandler: Send + Sync {
    /// Who the call is for (a principal): a server's question is routed to a call only when
    /// every call in flight on that server has the same owner.
    fn owner(&self) -> String;
    fn progress(&self, progress: Progress);
    /// Asks our model; `Err` is the reason the server reads.
    fn sample<'a>(
        &'a self,
        server: &'a str,
        request: Sampling,
    ) -> Pin<Box<dyn Future<Output = Result<Sampled, String>> + Send + 'a>>;
    /// Asks the user; the call's timeout is paused meanwhile.
    fn elicit<'a>(
        &'a self,
        server: &'a str,
        question: Elicitation,
    ) -> Pin<Box<dyn Future<Output = ElicitAnswer> + Send + 'a>>;
}

/// A caller that shows no progress and cannot ask anyone (questions are declined).
pub struct NoHandler;

impl CallHandler for NoHandler {
    fn owner(&self) -> String {
        String::new()
    }

    fn progress(&self, _progress: Progress) {}

    fn sample<'a>(
        &'a self,
        _server: &'a str,
        _request: Sampling,
    ) -> Pin<Box<dyn Future<Output = Result<Sampled, String>> + Send + 'a>> {
        Box::pin(std::future::ready(Err(
            "this call's caller cannot ask a model".to_string(),
        )))
    }

    fn elicit<'a>(
        &'a self,
        _server: &'a str,
        _question: Elicitation,
    ) -> Pin<Box<dyn Future<Output = ElicitAnswer> + Send + 'a>> {
        Box::pin(std::future::ready(ElicitAnswer::Decline))
    }
}

/// What reaches a running call from its server.
pub enum Signal {
    Progress(Progress),
    Elicit(Elicitation, oneshot::Sender<ElicitAnswer>),
    Sample(Sampling, oneshot::Sender<Result<Sampled, String>>),
}

/// Signals waiting for a call that is busy (answering a question): past this, progress is
/// dropped and further questions refused, so a flooding server cannot grow our memory.
pub const SIGNALS_QUEUED: usize = 32;

struct Call {
    token: String,
    owner: String,
    signals: mpsc::Sender<Signal>,
}

/// One server's calls in flight, by progress token, oldest first.
#[derive(Default)]
pub struct CallRegistry {
    calls: Mutex<Vec<Call>>,
}

/// A call's place in the registry, left when dropped.
pub struct Registered {
    token: String,
    registry: Arc<CallRegistry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let token = &self.token;
        self.registry.lock().retain(|call| &call.token != token);
    }
}

/// Why a server's question reached no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unrouted {
    NoCall,
    SeveralCallers,
    Busy,
}

impl Unrouted {
    fn reason(self) -> &'static str {
        match self {
            Self::NoCall => "questions are served only while one of this server's tool calls runs",
            Self::SeveralCallers => {
                "calls of several users are in flight on this server, and the request does not \
                 say which one it belongs to"
            }
            Self::Busy => "too many requests are already waiting on this call",
        }
    }
}

impl CallRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call whose progress token is `token`, made for `owner`, until the returned guard
    /// is dropped.
    pub fn register(
        self: &Arc<Self>,
        token: String,
        owner: String,
    ) -> (Registered, mpsc::Receiver<Signal>) {
        let (signals, rx) = mpsc::channel(SIGNALS_QUEUED);
        self.lock().push(Call {
            token: token.clone(),
            owner,
            signals,
        });
        let registered = Registered {
            token,
            registry: self.clone(),
        };
        (registered, rx)
    }

    /// Progress for the call of `token`; dropped when that call is over or busy.
    pub fn progress(&self, token: &str, progress: Progress) {
        if let Some(call) = self.lock().iter().find(|call| call.token == token) {
            let _ = call.signals.try_send(Signal::Progress(progress));
        }
    }

    /// Sends a question to the oldest call in flight, when all calls have one owner.
    fn route(&self, signal: Signal) -> Result<(), Unrouted> {
        let calls = self.lock();
        let Some(oldest) = calls.first() else {
            return Err(Unrouted::NoCall);
        };
        if calls.iter().any(|call| call.owner != oldest.owner) {
            return Err(Unrouted::SeveralCallers);
        }
        oldest.signals.try_send(signal).map_err(|_| Unrouted::Busy)
    }

    /// Asks our model through the oldest call in flight (whose turn pays for it).
    pub async fn sample(&self, request: Sampling) -> Result<Sampled, String> {
        let (tx, rx) = oneshot::channel();
        if let Err(unrouted) = self.route(Signal::Sample(request, tx)) {
            return Err(format!("sampling refused: {}", unrouted.reason()));
        }
        rx.await
            .unwrap_or_else(|_| Err("the tool call ended before the model answered".into()))
    }

    /// Asks the user through the oldest call in flight; declined when it cannot be routed.
    pub async fn elicit(&self, question: Elicitation) -> ElicitAnswer {
        let (tx, rx) = oneshot::channel();
        if let Err(unrouted) = self.route(Signal::Elicit(question, tx)) {
            tracing::debug!(reason = unrouted.reason(), "elicitation declined");
            return ElicitAnswer::Decline;
        }
        // The call ended before answering: the question is moot.
        rx.await.unwrap_or(ElicitAnswer::Cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_reach_their_call_and_questions_the_oldest() {
        let registry = Arc::new(CallRegistry::default());
        let (first, mut first_rx) = registry.register("1".into(), "ann".into());
        let (second, mut second_rx) = registry.register("2".into(), "ann".into());
        let step = Progress {
            progress: 1.0,
            total: Some(2.0),
            message: None,
        };
        registry.progress("2", step.clone());
        assert!(matches!(second_rx.try_recv(), Ok(Signal::Progress(p)) if p == step));
        assert!(first_rx.try_recv().is_err());

        let question = Elicitation {
            message: "Name?".into(),
            schema: Value::Null,
        };
        let asking = tokio::spawn({
            let registry = registry.clone();
            let question = question.clone();
            async move { registry.elicit(question).await }
        });
        let Some(Signal::Elicit(asked, answer)) = first_rx.recv().await else {
            panic!("the oldest call gets the question");
        };
        assert_eq!(asked, question);
        let _ = answer.send(ElicitAnswer::Decline);
        assert_eq!(asking.await.ok(), Some(ElicitAnswer::Decline));

        drop(first);
        drop(second);
        assert_eq!(registry.elicit(question).await, ElicitAnswer::Decline);
    }

    #[tokio::test]
    async fn questions_are_refused_when_calls_of_several_callers_are_in_flight() {
        let registry = Arc::new(CallRegistry::default());
        let (_ann, mut ann_rx) = registry.register("1".into(), "ann".into());
        let (bob, mut bob_rx) = registry.register("2".into(), "bob".into());
        let question = Elicitation {
            message: "Password?".into(),
            schema: Value::Null,
        };
        assert_eq!(
            registry.elicit(question.clone()).await,
            ElicitAnswer::Decline
        );
        let request = Sampling {
            system_prompt: None,
            messages: vec![(true, "hi".into())],
            max_tokens: 10,
            temperature: None,
            hints: vec![],
        };
        let refused = registry.sample(request).await.expect_err("ambiguous");
        assert!(refused.contains("several users"), "{refused}");
        assert!(ann_rx.try_recv().is_err() && bob_rx.try_recv().is_err());

        // Bob's call is over: Ann's call gets the question.
        drop(bob);
        let asking = tokio::spawn({
            let registry = registry.clone();
            async move { registry.elicit(question).await }
        });
        let Some(Signal::Elicit(_, answer)) = ann_rx.recv().await else {
            panic!("Ann's call gets the question");
        };
        let _ = answer.send(ElicitAnswer::Cancel);
        assert_eq!(asking.await.ok(), Some(ElicitAnswer::Cancel));
    }

    #[tokio::test]
    async fn a_busy_call_drops_progress_past_its_queue() {
        let registry = Arc::new(CallRegistry::default());
        let (_call, mut rx) = registry.register("1".into(), "ann".into());
        for step in 0..u32::try_from(SIGNALS_QUEUED * 4).expect("small") {
            registry.progress(
                "1",
                Progress {
                    progress: f64::from(step),
                    total: None,
                    message: None,
                },
            );
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, SIGNALS_QUEUED);
    }
}
