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

/// Past this many slots, an empty set gives its table back (a burst of turns grew it).
const KEPT_CAPACITY: usize = 256;

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = self
            .owner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        keys.remove(&self.key);
        if keys.is_empty() && keys.capacity() > KEPT_CAPACITY {
            keys.shrink_to(KEPT_CAPACITY);
        }
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

    #[test]
    fn the_set_gives_back_what_a_burst_grew_once_empty() {
        let in_flight = InFlight::default();
        let conversation = ConversationId::generate();
        let ids: Vec<String> = (0..5000).map(|i| format!("r{i}")).collect();
        let claims: Vec<_> = ids
            .iter()
            .map(|id| in_flight.claim(&conversation, id).expect("fresh"))
            .collect();
        assert!(in_flight.keys.lock().expect("lock").capacity() >= 5000);
        drop(claims);
        let capacity = in_flight.keys.lock().expect("lock").capacity();
        assert!(capacity <= 2 * KEPT_CAPACITY, "{capacity}");
    }
}
