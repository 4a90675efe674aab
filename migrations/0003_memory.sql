-- Semantic memory and history search (sqlite-vec). `{{dimensions}}` and `{{embedder}}` are
-- filled in from `memory` in config.yaml when this migration runs; later starts check them
-- against the config, and `mcp-platform reembed` rebuilds the vector tables for another
-- embedder. The checksum covers this text, not the values.

-- What the vectors are made with. One row.
CREATE TABLE vector_space (
    id                      INTEGER PRIMARY KEY CHECK (id = 1),
    embedder                TEXT NOT NULL,
    dimensions              INTEGER NOT NULL CHECK (dimensions > 0),
    -- History search: messages up to this id have been embedded (or skipped).
    messages_embedded_up_to INTEGER NOT NULL DEFAULT 0,
    updated_at              INTEGER NOT NULL
) STRICT;

INSERT INTO vector_space (id, embedder, dimensions, updated_at)
VALUES (1, {{embedder}}, {{dimensions}}, CAST(unixepoch('subsec') * 1000 AS INTEGER));

-- What the model (or an MCP client) asked to remember.
CREATE TABLE memories (
    id              INTEGER PRIMARY KEY,
    text            TEXT NOT NULL CHECK (length(trim(text)) > 0),
    -- A JSON array of at most 8 tags.
    tags            TEXT NOT NULL DEFAULT '[]',
    -- The conversation it was stored from, if any (kept when the conversation is deleted).
    conversation_id TEXT,
    created_at      INTEGER NOT NULL
) STRICT;

-- A memory's vector, once untagged (tag '') and once per tag, so that a tag filter runs inside
-- the KNN query (vec0 metadata columns hold one value). rowid = memory id * 16 + slot.
CREATE VIRTUAL TABLE memory_vectors USING vec0(
    embedding float[{{dimensions}}] distance_metric=cosine,
    tag text,
    conversation_id text
);

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

-- History search: one vector per finished user or assistant message.
CREATE VIRTUAL TABLE message_vectors USING vec0(
    message_id integer primary key,
    embedding float[{{dimensions}}] distance_metric=cosine,
    conversation_id text
);

-- A deleted message (a deleted conversation, retention) takes its vector with it, in the same
-- transaction.
CREATE TRIGGER messages_delete_vectors AFTER DELETE ON messages BEGIN
    DELETE FROM message_vectors WHERE message_id = OLD.id;
END;
