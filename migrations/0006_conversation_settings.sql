-- A conversation's own system prompt (set from the chat page or `update_conversation`);
-- NULL uses `chat.service.system_prompt`.
ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
