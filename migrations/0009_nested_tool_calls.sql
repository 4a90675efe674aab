-- Tool calls stored before this migration are flat, `{"id", "name", "arguments"}`; every reader
-- (the page, `get_history`, REST, export) is promised OpenAI's nested shape, `{"id", "type":
-- "function", "function": {"name", "arguments"}}`, which is what is stored from now on. Each
-- flat call is rewritten nested; calls already nested are kept as they are.
UPDATE messages
SET tool_calls = (
    SELECT json_group_array(
        CASE
            WHEN json_type(call.value, '$.function') = 'object' THEN json(call.value)
            ELSE json_object(
                'id', json_extract(call.value, '$.id'),
                'type', 'function',
                'function', json_object(
                    'name', json_extract(call.value, '$.name'),
                    'arguments', coalesce(json_extract(call.value, '$.arguments'), '{}')
                )
            )
        END
    )
    FROM json_each(messages.tool_calls) AS call
)
WHERE tool_calls IS NOT NULL
  AND json_valid(tool_calls)
  AND json_type(tool_calls) = 'array'
  AND EXISTS (
      SELECT 1 FROM json_each(messages.tool_calls) AS call
      WHERE json_type(call.value, '$.function') IS NOT 'object'
  );
