"""Drives mcp-platform's /mcp with the reference Python MCP client (the `mcp` package), as a
desktop app or agent would: connect in its default mode (it probes `server/discover`, then falls
back to `initialize`), list the tools, store a memory, find it, search the history; then the
conversations and memories as resources (list, read, template, completion), the prompts, and
logging (a failed tool call is logged to it after `logging/setLevel`).

Usage: python mcp_client_check.py URL. Prints one JSON object; exits non-zero on failure.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.types import PromptReference, ResourceTemplateReference


def dump(result):
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def main(url, conversation):
    logged = []

    async def on_log(params):
        logged.append(dump(params))

    async with Client(url, logging_callback=on_log) as client:
        tools = await client.list_tools()
        stored = await client.call_tool(
            "memory_store", {"text": "The deploy key rotates every 90 days", "tags": ["ops"]}
        )
        found = await client.call_tool("memory_find", {"query": "when does the deploy key rotate", "k": 3})
        bad = await client.call_tool("memory_find", {"query": "x", "k": 0})
        searched = await client.call_tool("conversation_search", {"query": "anything", "k": 2})
        await client.set_logging_level("warning")
        await client.call_tool("memory_delete", {"id": 987654})
        resources = await client.list_resources()
        templates = await client.list_resource_templates()
        read = await client.read_resource(f"mcp-platform://conversations/{conversation}")
        memories = await client.read_resource("mcp-platform://memories")
        try:
            await client.read_resource("mcp-platform://conversations/nope")
            missing = None
        except Exception as error:  # the SDK raises the JSON-RPC error
            missing = {"type": type(error).__name__, "error": str(error),
                       "code": getattr(getattr(error, "error", None), "code", None)}
        prompts = await client.list_prompts()
        recall = await client.get_prompt("recall", {"topic": "deploy key"})
        summary = await client.get_prompt("summarize_conversation", {"conversation_id": conversation})
        by_template = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="mcp-platform://conversations/{id}"),
            {"name": "id", "value": conversation[:4]},
        )
        by_prompt = await client.complete(
            PromptReference(type="ref/prompt", name="summarize_conversation"),
            {"name": "conversation_id", "value": "zzzz-no-such"},
        )
        # Give the log notification a moment to arrive.
        for _ in range(50):
            if logged:
                break
            await asyncio.sleep(0.05)
        print(json.dumps({
            "protocol_version": client.protocol_version,
            "server": dump(client.server_info) if client.server_info else None,
            "tools": sorted(tool.name for tool in tools.tools),
            "stored": dump(stored),
            "found": dump(found),
            "bad": dump(bad),
            "searched": dump(searched),
            "resources": dump(resources),
            "templates": dump(templates),
            "read": dump(read),
            "memories": dump(memories),
            "missing": missing,
            "prompts": dump(prompts),
            "recall": dump(recall),
            "summary": dump(summary),
            "completed": dump(by_template),
            "not_completed": dump(by_prompt),
            "logged": logged,
        }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
