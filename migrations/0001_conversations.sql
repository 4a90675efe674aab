-- Conversations and their messages.

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY,
    title         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- Order of the next message, taken and bumped inside the write transaction that appends,
    -- so concurrent appends never race on MAX(seq) + 1.
    next_seq      INTEGER NOT NULL DEFAULT 1,
    message_count INTEGER NOT NULL DEFAULT 0,
    token_count   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX conversations_by_activity ON conversations (updated_at DESC, id DESC);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         TEXT NOT NULL,
    -- Assistant messages: the tool calls the model made, a JSON array.
    tool_calls      TEXT,
    -- Tool messages: the id of the call this result answers.
    tool_call_id    TEXT,
    -- The chat request that produced the message (client-chosen, unique per conversation).
    request_id      TEXT,
    status          TEXT NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('complete', 'cancelled', 'failed')),
    token_count     INTEGER NOT NULL DEFAULT 0,
    model           TEXT,
    -- Assistant messages: the provider's usage object, JSON.
    usage           TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq)
) STRICT;

-- One user message per (conversation, request_id): a repeated request is replayed, not re-run.
CREATE UNIQUE INDEX messages_by_request
    ON messages (conversation_id, request_id)
    WHERE role = 'user' AND request_id IS NOT NULL;
