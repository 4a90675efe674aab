-- What a user attached to a message: MCP resources as read when the message was sent (uri,
-- server, mime type, text or size), a JSON array; NULL for none.
ALTER TABLE messages ADD COLUMN attachments TEXT;
