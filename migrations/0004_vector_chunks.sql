-- Smaller vec0 chunks. vec0 keeps each column's vectors in one blob per chunk of rows (1,024
-- rows by default: 1.5 MB at 384 dimensions); every insert writes into that blob, and SQLite
-- reaches an offset inside a blob by walking its overflow pages from the start, so an insert
-- cost grew with the chunk's size. With 64 rows per chunk the walk is short (history indexing
-- took ~0.4 ms of CPU per chat turn before, ~0.2 ms after); a KNN query still reads every row.
--
-- {{dimensions}} is the size recorded in vector_space, not the configured one: this migration
-- keeps the vectors it copies.

CREATE TABLE memory_vectors_copy AS
    SELECT rowid AS id, embedding, tag, conversation_id FROM memory_vectors;
DROP TABLE memory_vectors;
CREATE VIRTUAL TABLE memory_vectors USING vec0(
    embedding float[{{dimensions}}] distance_metric=cosine,
    tag text,
    conversation_id text,
    chunk_size=64
);
INSERT INTO memory_vectors (rowid, embedding, tag, conversation_id)
    SELECT id, embedding, tag, conversation_id FROM memory_vectors_copy ORDER BY id;
DROP TABLE memory_vectors_copy;

CREATE TABLE message_vectors_copy AS
    SELECT message_id, embedding, conversation_id FROM message_vectors;
DROP TABLE message_vectors;
CREATE VIRTUAL TABLE message_vectors USING vec0(
    message_id integer primary key,
    embedding float[{{dimensions}}] distance_metric=cosine,
    conversation_id text,
    chunk_size=64
);
INSERT INTO message_vectors (message_id, embedding, conversation_id)
    SELECT message_id, embedding, conversation_id FROM message_vectors_copy ORDER BY message_id;
DROP TABLE message_vectors_copy;
