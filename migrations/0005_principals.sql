-- Who owns what: principals (one per API key, plus `local`), browser sessions, usage for
-- quotas; an owner on conversations, memories and their vectors; ids never handed out twice.

-- A principal is an API key's identity. `local` (id 1, no key) owns what is created while
-- authentication is off. Rows are never deleted: a revoked key keeps owning its data.
CREATE TABLE principals (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    -- SHA-256 of the key; the key itself is shown once and never stored.
    key_hash         BLOB UNIQUE,
    -- The key's first characters, to tell keys apart in listings.
    key_prefix       TEXT,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER,
    revoked_at       INTEGER,
    -- Quotas; NULL is unlimited.
    turns_per_minute INTEGER CHECK (turns_per_minute > 0),
    tokens_per_day   INTEGER CHECK (tokens_per_day > 0),
    concurrent_turns INTEGER CHECK (concurrent_turns > 0)
) STRICT;

INSERT INTO principals (id, name, role, created_at)
VALUES (1, 'local', 'admin', CAST(unixepoch('subsec') * 1000 AS INTEGER));

-- Turns and provider tokens per principal per UTC day (days since the Unix epoch).
CREATE TABLE principal_usage (
    principal_id      INTEGER NOT NULL REFERENCES principals (id),
    day               INTEGER NOT NULL,
    turns             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (principal_id, day)
) STRICT, WITHOUT ROWID;

-- Browser sessions (POST /api/login): the cookie's SHA-256, never the cookie.
CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Conversations: existing ones belong to `local`.
ALTER TABLE conversations ADD COLUMN owner_id INTEGER NOT NULL DEFAULT 1;
CREATE INDEX conversations_by_owner ON conversations (owner_id, updated_at DESC, id DESC);

-- Messages: AUTOINCREMENT, so that the id of a deleted last message is never handed out again
-- (the copy keeps every id; sqlite_sequence starts past the largest).
CREATE TABLE messages_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         TEXT NOT NULL,
    tool_calls      TEXT,
    tool_call_id    TEXT,
    request_id      TEXT,
    status          TEXT NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('complete', 'cancelled', 'failed')),
    token_count     INTEGER NOT NULL DEFAULT 0,
    model           TEXT,
    usage           TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq)
) STRICT;
INSERT INTO messages_next SELECT id, conversation_id, seq, role, content, tool_calls,
    tool_call_id, request_id, status, token_count, model, usage, created_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_next RENAME TO messages;
CREATE UNIQUE INDEX messages_by_request
    ON messages (conversation_id, request_id)
    WHERE role = 'user' AND request_id IS NOT NULL;
CREATE INDEX messages_by_age ON messages (created_at);
-- The history indexer's watermark may be past the largest kept id (it saw messages deleted
-- since): new ids start past it too, or they would never be indexed.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'messages', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages');
UPDATE sqlite_sequence
    SET seq = max(seq, (SELECT messages_embedded_up_to FROM vector_space WHERE id = 1))
    WHERE name = 'messages';

-- Memories: AUTOINCREMENT too, and an owner (existing ones: `local`).
CREATE TABLE memories_next (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    text            TEXT NOT NULL CHECK (length(trim(text)) > 0),
    tags            TEXT NOT NULL DEFAULT '[]',
    conversation_id TEXT,
    created_at      INTEGER NOT NULL,
    owner_id        INTEGER NOT NULL DEFAULT 1
) STRICT;
INSERT INTO memories_next (id, text, tags, conversation_id, created_at)
    SELECT id, text, tags, conversation_id, created_at FROM memories;
DROP TABLE memories;
ALTER TABLE memories_next RENAME TO memories;

-- The vectors carry their owner, so that search filters by owner inside the KNN query.
CREATE TABLE memory_vectors_copy AS
    SELECT rowid AS id, embedding, tag, conversation_id FROM memory_vectors;
DROP TABLE memory_vectors;
CREATE VIRTUAL TABLE memory_vectors USING vec0(
    embedding float[{{dimensions}}] distance_metric=cosine,
    tag text,
    conversation_id text,
    owner_id integer,
    chunk_size=64
);
INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id, owner_id)
    SELECT id, embedding, tag, conversation_id, 1 FROM memory_vectors_copy ORDER BY id;
DROP TABLE memory_vectors_copy;

CREATE TABLE message_vectors_copy AS
    SELECT message_id, embedding, conversation_id FROM message_vectors;
DROP TABLE message_vectors;
CREATE VIRTUAL TABLE message_vectors USING vec0(
    message_id integer primary key,
    embedding float[{{dimensions}}] distance_metric=cosine,
    conversation_id text,
    owner_id integer,
    chunk_size=64
);
INSERT INTO message_vectors (message_id, embedding, conversation_id, owner_id)
    SELECT message_id, embedding, conversation_id, 1 FROM message_vectors_copy ORDER BY message_id;
DROP TABLE message_vectors_copy;

-- The triggers went with the tables they were on.
CREATE TRIGGER memories_delete_vectors AFTER DELETE ON memories BEGIN
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 1;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 2;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 3;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 4;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 5;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 6;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 7;
    DELETE FROM memory_vectors WHERE rowid = OLD.id * 16 + 8;
END;
CREATE TRIGGER messages_delete_vectors AFTER DELETE ON messages BEGIN
    DELETE FROM message_vectors WHERE message_id = OLD.id;
END;
