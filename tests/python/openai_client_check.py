"""Drives /v1 with the official `openai` SDK, as a user's script would.

Usage: openai_client_check.py BASE_URL API_KEY SCENARIO [MODEL]
Prints one JSON object: what the SDK returned, or the class of the exception it raised.
"""

import json
import sys

import openai


def main() -> None:
    base_url, api_key, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    model = sys.argv[4] if len(sys.argv) > 4 else "mock-model"
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "hello"}]
    try:
        if scenario == "stream":
            text, usage, finish = "", None, None
            stream = client.chat.completions.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finish = choice.finish_reason or finish
            report = {"text": text, "usage": usage, "finish_reason": finish}
        elif scenario == "whole":
            completion = client.chat.completions.create(model=model, messages=messages)
            choice = completion.choices[0]
            extra = (completion.model_extra or {}).get("mcp_platform")
            report = {
                "text": choice.message.content,
                "finish_reason": choice.finish_reason,
                "usage": completion.usage.model_dump() if completion.usage else None,
                "mcp_platform": extra,
            }
        elif scenario in ("client_tool", "client_tool_stream"):
            tools = [{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }]
            if scenario == "client_tool":
                completion = client.chat.completions.create(
                    model=model, messages=messages, tools=tools
                )
                choice = completion.choices[0]
                calls = [
                    {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                    for c in choice.message.tool_calls or []
                ]
                report = {"finish_reason": choice.finish_reason, "calls": calls,
                          "content": choice.message.content}
            else:
                calls, finish = {}, None
                for chunk in client.chat.completions.create(
                    model=model, messages=messages, tools=tools, stream=True
                ):
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        for call in choice.delta.tool_calls or []:
                            entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                            entry["id"] = call.id or entry["id"]
                            if call.function is not None:
                                entry["name"] += call.function.name or ""
                                entry["arguments"] += call.function.arguments or ""
                report = {"finish_reason": finish, "calls": [calls[i] for i in sorted(calls)]}
        elif scenario == "models":
            report = {"ids": [m.id for m in client.models.list()]}
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    except openai.APIStatusError as error:
        report = {"error": type(error).__name__, "status": error.status_code}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
