#!/usr/bin/env python3
"""Time to first token and total time of one answer from a real engine, asked directly and
through the server's two doors (/v1/chat/completions streamed, /ws/chat), side by side, in
rounds (one of each per round), medians over the rounds. Python's standard library only.

    benches/real_engine.py --engine http://127.0.0.1:8080 --server http://127.0.0.1:8000

The same prompt every time, at temperature 0 (greedy) and at most --max-tokens, so each
answer is the same length: the server's provider entry for the engine should say the same
(temperature: 0, max_tokens: 32), since /ws/chat takes no sampling settings, and its system
prompt should be empty (chat.service.system_prompt: ""), so that every door sends the engine
the same messages. benches/real_engine.yaml is such a configuration.
"""

import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import time
import urllib.parse

PROMPT = "Name three colours of the rainbow."


def sse_answer(base, path, body):
    """(seconds to the first content delta, seconds to [DONE]) of a streamed request."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"{base}{path}: HTTP {response.status}: {response.read()[:300]!r}")
    first = None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        for choice in chunk.get("choices") or []:
            if first is None and (choice.get("delta") or {}).get("content"):
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    conn.close()
    return first if first is not None else total, total


def ws_answer(base, text):
    """(seconds to the first `chunk` frame, seconds to `complete`) of a /ws/chat turn."""
    url = urllib.parse.urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=120)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/chat HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    reader = sock.makefile("rb")
    status = reader.readline()
    if b" 101 " not in status:
        raise SystemExit(f"/ws/chat upgrade refused: {status!r}")
    while reader.readline() not in (b"\r\n", b""):
        pass
    frame = {"action": "chat", "request_id": "bench", "payload": {"text": text}}
    started = time.perf_counter()
    send_text(sock, json.dumps(frame))
    first = None
    while True:
        message = json.loads(read_text(reader))
        if message.get("request_id") != "bench":
            continue
        if message["status"] == "chunk" and first is None:
            first = time.perf_counter() - started
        if message["status"] in ("complete", "error"):
            if message["status"] == "error":
                raise SystemExit(f"/ws/chat: {message}")
            total = time.perf_counter() - started
            sock.close()
            return first if first is not None else total, total


def send_text(sock, text):
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read_text(reader):
    while True:
        first, second = reader.read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(reader.read(2), "big")
        elif length == 127:
            length = int.from_bytes(reader.read(8), "big")
        payload = reader.read(length)
        if first & 0x0F == 1:
            return payload.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="the engine, e.g. http://127.0.0.1:8080")
    parser.add_argument("--server", required=True, help="this server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    conn = http.client.HTTPConnection(urllib.parse.urlparse(args.engine).netloc, timeout=30)
    conn.request("GET", "/v1/models")
    model = json.loads(conn.getresponse().read())["data"][0]["id"]
    body = {
        "model": model,
        "stream": True,
        "temperature": 0,
        "max_tokens": args.max_tokens,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    rows = {"engine directly": [], "through /v1": [], "through /ws/chat": []}
    for _ in range(args.runs):
        rows["engine directly"].append(sse_answer(args.engine, "/v1/chat/completions", body))
        rows["through /v1"].append(sse_answer(args.server, "/v1/chat/completions", body))
        rows["through /ws/chat"].append(ws_answer(args.server, PROMPT))
    print(f"medians of {args.runs}, one of each per round:")
    for name, runs in rows.items():
        ttft = statistics.median(r[0] for r in runs) * 1000
        total = statistics.median(r[1] for r in runs) * 1000
        print(f"  {name:18} first token {ttft:7.1f} ms   total {total:7.1f} ms")


if __name__ == "__main__":
    main()
