-- Retention by age (`retention.policy: time_based`) finds old messages through this index
-- instead of scanning every message.

CREATE INDEX messages_by_age ON messages (created_at);
