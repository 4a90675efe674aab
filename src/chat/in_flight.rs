//! The turns in flight across all sockets, by (conversation, request id): the same request
//! sent twice at once (two tabs, a client retrying too early) runs once; the second is `busy`.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use crate::store::ConversationId;

#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashSet<(String, String)>>,
}

/// Held while the turn runs; dropping it frees the request id.
pub struct Claim<'a> {
    owner: &'a InFlight,
    key: (String, String),
}

impl InFlight {
    /// The request ids in flight in `conversation`, sorted.
    pub fn in_conversation(&self, conversation: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(c, _)| c == conversation)
            .map(|(_, request)| request.clone())
            .collect();
        ids.sort();
        ids
    }

    /// `None` when the request is already in flight.
    pub fn claim(&self, conversation: &ConversationId, request_id: &str) -> Option<Claim<'_>> {
        let key = (conversation.as_str().to_string(), request_id.to_string());
        let fresh = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        // Built only when fresh: a Claim dropped here would free the running turn's key.
        fresh.then(|| Claim { owner: self, key })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.owner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_claimed_once_until_released() {
        let in_flight = InFlight::default();
        let conversation = ConversationId::generate();
        let claim = in_flight.claim(&conversation, "r1");
        assert!(claim.is_some());
        assert!(in_flight.claim(&conversation, "r1").is_none());
        // A refused claim leaves the running one in place.
        assert!(in_flight.claim(&conversation, "r1").is_none());
        assert_eq!(in_flight.in_conversation(conversation.as_str()), ["r1"]);
        assert!(in_flight.claim(&ConversationId::generate(), "r1").is_some());
        drop(claim);
        assert!(in_flight.claim(&conversation, "r1").is_some());
    }
}
