"""Drives mcp-platform's /mcp with the reference Python MCP client (the `mcp` package), as a
desktop app or agent would: connect in its default mode (it probes `server/discover`, then falls
back to `initialize`), list the tools, store a memory, find it, search the history.

Usage: python mcp_client_check.py URL. Prints one JSON object; exits non-zero on failure.
"""

import asyncio
import json
import sys

from mcp import Client


def dump(result):
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def main(url):
    async with Client(url) as client:
        tools = await client.list_tools()
        stored = await client.call_tool(
            "memory_store", {"text": "The deploy key rotates every 90 days", "tags": ["ops"]}
        )
        found = await client.call_tool("memory_find", {"query": "when does the deploy key rotate", "k": 3})
        bad = await client.call_tool("memory_find", {"query": "x", "k": 0})
        searched = await client.call_tool("conversation_search", {"query": "anything", "k": 2})
        print(json.dumps({
            "protocol_version": client.protocol_version,
            "server": dump(client.server_info) if client.server_info else None,
            "tools": sorted(tool.name for tool in tools.tools),
            "stored": dump(stored),
            "found": dump(found),
            "bad": dump(bad),
            "searched": dump(searched),
        }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
