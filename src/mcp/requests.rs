//! What a server sends its host while one of our tool calls runs: progress notifications and
//! questions for the user (`elicitation/create`), routed to the call that caused them.
//!
//! Progress carries the call's progress token (rmcp puts one in every request's `_meta`), so
//! it finds its call exactly. An
//! elicitation carries nothing that names the call over stdio, so it goes to the server's
//! oldest call in flight (the usual case is one); with none in flight it is declined.

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

type Calls = Vec<(String, mpsc::UnboundedSender<Signal>)>;

/// One server's calls in flight, by progress token, oldest first.
#[derive(Default)]
pub struct CallRegistry {
    calls: Mutex<Calls>,
}

/// A call's place in the registry, left when dropped.
pub struct Registered {
    token: String,
    registry: Arc<CallRegistry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let token = &self.token;
        self.registry.lock().retain(|(t, _)| t != token);
    }
}

impl CallRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call whose progress token is `token`, until the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        token: String,
    ) -> (Registered, mpsc::UnboundedReceiver<Signal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push((token.clone(), tx));
        let registered = Registered {
            token,
            registry: self.clone(),
        };
        (registered, rx)
    }

    /// Progress for the call of `token`; dropped when that call is over.
    pub fn progress(&self, token: &str, progress: Progress) {
        if let Some((_, tx)) = self.lock().iter().find(|(t, _)| t == token) {
            let _ = tx.send(Signal::Progress(progress));
        }
    }

    /// Asks our model through the oldest call in flight (whose turn pays for it).
    pub async fn sample(&self, request: Sampling) -> Result<Sampled, String> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .lock()
            .first()
            .is_some_and(|(_, call)| call.send(Signal::Sample(request, tx)).is_ok());
        if !sent {
            return Err(
                "sampling is served only while one of this server's tool calls runs".into(),
            );
        }
        rx.await
            .unwrap_or_else(|_| Err("the tool call ended before the model answered".into()))
    }

    /// Asks the user through the oldest call in flight; declined when there is none.
    pub async fn elicit(&self, question: Elicitation) -> ElicitAnswer {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .lock()
            .first()
            .is_some_and(|(_, call)| call.send(Signal::Elicit(question, tx)).is_ok());
        if !sent {
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
        let (first, mut first_rx) = registry.register("1".into());
        let (second, mut second_rx) = registry.register("2".into());
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
}
