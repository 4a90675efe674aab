//! Questions a turn puts to its user and waits on: tool approvals (`approve`) and servers'
//! elicitations (`elicit`). Each pending question has an unguessable id, belongs to one
//! principal's turn, may check an answer before taking it (an invalid one leaves it open),
//! and is answered at most once. Approval decisions a user asked to remember hold for the rest
//! of the conversation, in memory (a restart asks again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Conversations × tools remembered at most; the least recently used are forgotten first.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// The client's answer to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    /// Apply it to later calls of the same tool in the conversation.
    pub remember: bool,
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no question `{0}` is waiting in this turn (unknown, already answered, or timed out)")]
    NotWaiting(String),
    #[error("the answer does not fit the question: {why}; the question is still open")]
    Invalid { id: String, why: String },
}

type Check<A> = Box<dyn Fn(&A) -> Result<(), String> + Send + Sync>;

struct Pending<A> {
    owner: i64,
    request_id: String,
    answer: oneshot::Sender<A>,
    check: Option<Check<A>>,
}

/// Pending questions of one kind (`A` is the answer).
pub struct Questions<A> {
    /// Ids start with it: `appr_`, `elic_`.
    prefix: &'static str,
    pending: Mutex<HashMap<String, Pending<A>>>,
}

/// What a turn waits on; nobody can answer once it is dropped (timed out, cancelled).
pub struct Waiting<A> {
    pub id: String,
    pub answer: oneshot::Receiver<A>,
    questions: Arc<Questions<A>>,
}

impl<A> Drop for Waiting<A> {
    fn drop(&mut self) {
        self.questions.lock().remove(&self.id);
    }
}

impl<A> Questions<A> {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            pending: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending<A>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new question of `owner`'s turn `request_id`; `check` refuses answers that do not fit.
    pub fn open(
        self: &Arc<Self>,
        owner: i64,
        request_id: &str,
        check: Option<Check<A>>,
    ) -> Waiting<A> {
        let id = format!("{}{}", self.prefix, uuid::Uuid::new_v4().simple());
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            id.clone(),
            Pending {
                owner,
                request_id: request_id.to_string(),
                answer: tx,
                check,
            },
        );
        Waiting {
            id,
            answer: rx,
            questions: self.clone(),
        }
    }

    /// Answers question `id` of `owner`'s turn `request_id`.
    pub fn answer(
        &self,
        owner: i64,
        request_id: &str,
        id: &str,
        answer: A,
    ) -> Result<(), AnswerError> {
        let mut pending = self.lock();
        let not_waiting = || AnswerError::NotWaiting(id.to_string());
        let question = pending
            .get(id)
            .filter(|p| p.owner == owner && p.request_id == request_id)
            .ok_or_else(not_waiting)?;
        if let Some(check) = &question.check {
            check(&answer).map_err(|why| AnswerError::Invalid {
                id: id.to_string(),
                why,
            })?;
        }
        let question = pending.remove(id).ok_or_else(not_waiting)?;
        question.answer.send(answer).map_err(|_| not_waiting())
    }

    /// Questions waiting now, for `/health`.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

/// Where a remembered approval applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub conversation: String,
    pub server: String,
    pub tool: String,
}

/// Approvals waiting, and the decisions remembered per conversation.
pub struct Approvals {
    pub questions: Arc<Questions<Answer>>,
    remembered: quick_cache::sync::Cache<Scope, Decision>,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            questions: Arc::new(Questions::new("appr_")),
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
        }
    }
}

impl Approvals {
    pub fn remembered(&self, scope: &Scope) -> Option<Decision> {
        self.remembered.get(scope)
    }

    pub fn remember(&self, scope: Scope, decision: Decision) {
        self.remembered.insert(scope, decision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: Answer = Answer {
        decision: Decision::Allow,
        remember: false,
    };

    #[tokio::test]
    async fn only_the_turn_that_asked_can_answer_and_only_once() {
        let questions = Arc::new(Questions::new("appr_"));
        let mut waiting = questions.open(7, "r1", None);
        let id = waiting.id.clone();
        assert!(id.starts_with("appr_"));
        assert!(
            questions.answer(8, "r1", &id, ALLOW).is_err(),
            "another principal"
        );
        assert!(
            questions.answer(7, "r2", &id, ALLOW).is_err(),
            "another turn"
        );
        assert!(questions.answer(7, "r1", "appr_nope", ALLOW).is_err());
        assert_eq!(questions.answer(7, "r1", &id, ALLOW), Ok(()));
        assert!(questions.answer(7, "r1", &id, ALLOW).is_err(), "twice");
        assert_eq!((&mut waiting.answer).await, Ok(ALLOW));
    }

    #[tokio::test]
    async fn an_answer_that_does_not_fit_leaves_the_question_open() {
        let questions = Arc::new(Questions::new("elic_"));
        let check: Check<u32> = Box::new(|n| {
            if *n > 10 {
                Err("too big".into())
            } else {
                Ok(())
            }
        });
        let mut waiting = questions.open(1, "r1", Some(check));
        let id = waiting.id.clone();
        assert!(matches!(
            questions.answer(1, "r1", &id, 11),
            Err(AnswerError::Invalid { .. })
        ));
        assert_eq!(questions.answer(1, "r1", &id, 3), Ok(()));
        assert_eq!((&mut waiting.answer).await, Ok(3));
    }

    #[test]
    fn a_dropped_wait_cannot_be_answered() {
        let questions = Arc::new(Questions::<Answer>::new("appr_"));
        let waiting = questions.open(1, "r1", None);
        let id = waiting.id.clone();
        assert_eq!(questions.waiting(), 1);
        drop(waiting);
        assert_eq!(questions.waiting(), 0);
        assert!(questions.answer(1, "r1", &id, ALLOW).is_err());
    }
}
