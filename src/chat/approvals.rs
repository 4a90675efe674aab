//! Tool calls waiting for the user (`approval: ask`): each pending approval has an unguessable
//! id, belongs to one principal's turn, and is answered at most once (`approve`); decisions a
//! user asked to remember hold for the rest of the conversation (in memory: a restart forgets
//! them, and the user is asked again).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Conversations × tools remembered at most; the least recently used are forgotten first.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// The client's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    /// Apply it to later calls of the same tool in the conversation.
    pub remember: bool,
}

/// Why an `approve` was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no approval `{0}` is waiting in this turn (unknown, already answered, or timed out)")]
    NotWaiting(String),
}

struct Pending {
    owner: i64,
    request_id: String,
    answer: oneshot::Sender<Answer>,
}

/// What a turn's tool call waits on.
pub struct Waiting {
    pub id: String,
    pub answer: oneshot::Receiver<Answer>,
    approvals: std::sync::Arc<Approvals>,
}

impl Drop for Waiting {
    /// Timed out, cancelled or answered: nobody can answer it any more.
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.id);
    }
}

/// Where a remembered decision applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub conversation: String,
    pub server: String,
    pub tool: String,
}

pub struct Approvals {
    pending: Mutex<HashMap<String, Pending>>,
    remembered: quick_cache::sync::Cache<Scope, Decision>,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
        }
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new pending approval for `owner`'s turn `request_id`.
    pub fn open(self: &std::sync::Arc<Self>, owner: i64, request_id: &str) -> Waiting {
        let id = format!("appr_{}", uuid::Uuid::new_v4().simple());
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            id.clone(),
            Pending {
                owner,
                request_id: request_id.to_string(),
                answer: tx,
            },
        );
        Waiting {
            id,
            answer: rx,
            approvals: self.clone(),
        }
    }

    /// Answers approval `id` of `owner`'s turn `request_id`; anything else is not waiting.
    pub fn answer(
        &self,
        owner: i64,
        request_id: &str,
        id: &str,
        answer: Answer,
    ) -> Result<(), AnswerError> {
        let mut pending = self.lock();
        let mine = pending
            .get(id)
            .is_some_and(|p| p.owner == owner && p.request_id == request_id);
        let not_waiting = || AnswerError::NotWaiting(id.to_string());
        if !mine {
            return Err(not_waiting());
        }
        let waiting = pending.remove(id).ok_or_else(not_waiting)?;
        waiting.answer.send(answer).map_err(|_| not_waiting())
    }

    pub fn remembered(&self, scope: &Scope) -> Option<Decision> {
        self.remembered.get(scope)
    }

    pub fn remember(&self, scope: Scope, decision: Decision) {
        self.remembered.insert(scope, decision);
    }

    /// Approvals waiting now, for `/health`.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const ALLOW: Answer = Answer {
        decision: Decision::Allow,
        remember: false,
    };

    #[tokio::test]
    async fn only_the_turn_that_asked_can_answer_and_only_once() {
        let approvals = Arc::new(Approvals::default());
        let mut waiting = approvals.open(7, "r1");
        let id = waiting.id.clone();
        assert!(
            approvals.answer(8, "r1", &id, ALLOW).is_err(),
            "another principal"
        );
        assert!(
            approvals.answer(7, "r2", &id, ALLOW).is_err(),
            "another turn"
        );
        assert!(approvals.answer(7, "r1", "appr_nope", ALLOW).is_err());
        assert_eq!(approvals.answer(7, "r1", &id, ALLOW), Ok(()));
        assert!(approvals.answer(7, "r1", &id, ALLOW).is_err(), "twice");
        assert_eq!((&mut waiting.answer).await, Ok(ALLOW));
    }

    #[test]
    fn a_dropped_wait_cannot_be_answered() {
        let approvals = Arc::new(Approvals::default());
        let waiting = approvals.open(1, "r1");
        let id = waiting.id.clone();
        assert_eq!(approvals.waiting(), 1);
        drop(waiting);
        assert_eq!(approvals.waiting(), 0);
        assert!(approvals.answer(1, "r1", &id, ALLOW).is_err());
    }
}
