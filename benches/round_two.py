#!/usr/bin/env python3
"""Issue 20's figures ("performance round two"), for one binary or several side by side.

    benches/round_two.py target/release/mcp-platform                    # one binary
    benches/round_two.py --before /tmp/old/mcp-platform target/release/mcp-platform
    benches/round_two.py --before REF/mcp-platform --before OLD/mcp-platform NEW/mcp-platform
    benches/round_two.py --only start,idle,load100 --rounds 3 BIN

Every scenario runs on a fresh server and database, binaries interleaved round by round so
that the machine's drift falls on all alike; the table gives medians and, with more than one
binary, the last column's ratio to the first (a reference build measured in the same run turns
a figure taken on a VM of drifting speed into one that can be compared across days). The set-up is the
one of docs/load-testing.md: the built-in mock provider (20 chunks) on 127.0.0.1:8081,
benches/loadtest.yaml's limits, the load generator of the first binary given or of --client
(the same client for both). The stdio MCP test server (`mcp-test-server`) is looked up beside each
binary (`cargo build --release --bins`).

Scenarios:
  start      exec -> accepting (the --ready-json line), embedded defaults and with 3 stdio
             MCP servers configured (median of 11 starts each)
  idle       RssAnon and RSS 5 s after start, before any turn
  families   RSS after 200 turns on an o200k model and 200 on a cl100k model (/v1 door)
  load100    100 connections x 200 turns: server CPU per turn, turns/s, /health p99
  load1      1 connection x 1000 turns: server CPU per turn, turn p50
  tools      1 connection x 300 tool turns (echo on the stdio test server): p50, CPU/turn
  idle10k    RSS with 10,000 idle sockets open
  burst      1,000 connections x 10 turns: RssAnon and RSS before, and 5 s and 65 s after
             they closed
  soak       3 minutes at --rate 800: RssAnon and RSS at the end (not in the default set:
             --only soak)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["start", "idle", "families", "load100", "load1", "tools", "idle10k", "burst"]
HEALTH = "http://127.0.0.1:8000/health"


def rss_mb(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status in MB: VmRSS, or RssAnon (private memory, what
    the process costs; RSS also counts clean code pages the kernel may drop)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def config(work, servers=None, families=False):
    """benches/loadtest.yaml with the database (and servers file) in `work`."""
    text = (ROOT / "benches/loadtest.yaml").read_text()
    text = text.replace("./data/loadtest.db", str(work / "db.sqlite"))
    servers_file = work / "servers.json"
    servers_file.write_text(json.dumps({"mcpServers": servers or {}}))
    text = text.replace("./no-mcp-servers.json", str(servers_file))
    if families:
        text = text.replace(
            "      model: gpt-4o-mini\n",
            "      model: gpt-4o-mini\n      models: [llama-3.1-8b-instant]\n",
        )
    path = work / "config.yaml"
    path.write_text(text)
    return path


def test_servers(binary, count):
    server = str(Path(binary).parent / "mcp-test-server")
    if not os.access(server, os.X_OK):
        sys.exit(f"{server} is missing: cargo build --bins with the same profile")
    return {f"t{i}": {"command": server, "args": []} for i in range(count)}


class Server:
    def __init__(self, binary, conf):
        self.proc = subprocess.Popen(
            [binary, "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(HEALTH, timeout=1).read()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        sys.exit(f"{binary} did not answer /health")

    def rss(self):
        return rss_mb(self.proc.pid)

    def rss_anon(self):
        return rss_mb(self.proc.pid, "RssAnon")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def loadtest(client, *args):
    out = subprocess.run(
        [client, "loadtest", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {}


def start_ms(binary, conf):
    begin = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--config", str(conf), "--port", "0", "--ready-json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdout.readline()
    elapsed = (time.perf_counter() - begin) * 1000
    proc.terminate()
    proc.wait()
    return elapsed


def scenario_start(binary, client, work):
    plain = config(work / "plain")
    with_mcp = config(work / "mcp", servers=test_servers(binary, 3))
    start_ms(binary, plain)  # creates the database
    start_ms(binary, with_mcp)
    return {
        "start ms": statistics.median(start_ms(binary, plain) for _ in range(11)),
        "start ms, 3 stdio MCP servers": statistics.median(
            start_ms(binary, with_mcp) for _ in range(11)
        ),
    }


def scenario_idle(binary, client, work):
    server = Server(binary, config(work))
    time.sleep(5)
    figures = {
        "RssAnon 5 s after start MB": server.rss_anon(),
        "RSS 5 s after start MB": server.rss(),
    }
    server.stop()
    return figures


def scenario_families(binary, client, work):
    server = Server(binary, config(work, families=True))
    for model in ["gpt-4o-mini", "llama-3.1-8b-instant"]:
        loadtest(client, "--api", "openai", "--store", "--model", model,
                 "--connections", "10", "--turns", "20", "--ramp-up", "0s")
    time.sleep(2)
    figures = {"RSS after turns on both families MB": server.rss()}
    server.stop()
    return figures


def chat(binary, client, work, *args, servers=None):
    server = Server(binary, config(work, servers=servers))
    # One turn first: the tokenizer tables are built when the first socket comes (once per
    # process, ~0.1 s of CPU), which is not a per-turn cost.
    loadtest(client, "--connections", "1", "--turns", "1", "--ramp-up", "0s")
    report = loadtest(client, *args)
    server.stop()
    return report


def scenario_load100(binary, client, work):
    r = chat(binary, client, work, "--connections", "100", "--turns", "200", "--ramp-up", "0s")
    return {
        "100 conns: CPU ms/turn": r["server"]["cpu_ms_per_turn"],
        "100 conns: turns/s": r["turns_per_s"],
        "100 conns: turn p50 ms": r["turn_ms"]["p50"],
        "100 conns: /health p99 ms": r["server"]["health_ms"]["p99"],
        "100 conns: errors": r["turns_failed"],
    }


def scenario_load1(binary, client, work):
    r = chat(binary, client, work, "--connections", "1", "--turns", "1000", "--ramp-up", "0s")
    return {
        "1 conn: CPU ms/turn": r["server"]["cpu_ms_per_turn"],
        "1 conn: turn p50 ms": r["turn_ms"]["p50"],
    }


def scenario_tools(binary, client, work):
    r = chat(binary, client, work, "--connections", "1", "--turns", "300", "--ramp-up", "0s",
             "--tool-call", 'echo {"text": "ping"}', servers=test_servers(binary, 1))
    return {
        "tool turn p50 ms": r["turn_ms"]["p50"],
        "tool turn: CPU ms/turn": r["server"]["cpu_ms_per_turn"],
        "tool calls / turns": r["tool_calls"] / max(r["turns_completed"], 1),
    }


def scenario_idle10k(binary, client, work):
    server = Server(binary, config(work))
    r = loadtest(client, "--idle", "10000")
    server.stop()
    mb = lambda b: (b or 0) / 1048576  # noqa: E731
    return {
        "10k idle: RssAnon before MB": mb(r.get("rss_anon_bytes_before")),
        "10k idle: RssAnon open MB": mb(r.get("rss_anon_bytes_open")),
        "10k idle: RssAnon after close MB": mb(r.get("rss_anon_bytes_after_close")),
        "10k idle: RSS before MB": mb(r.get("rss_bytes_before")),
        "10k idle: RSS open MB": mb(r.get("rss_bytes_open")),
        "10k idle: RSS after close MB": mb(r.get("rss_bytes_after_close")),
    }


def scenario_burst(binary, client, work):
    """RSS 5 s after a warm-up, then 5 s and 65 s after a 1,000-connection burst: the server
    gives memory back once quiet (2 s) and again once idle provider connections have closed
    (2 x keepalive_expiry, 30 s by default, later)."""
    server = Server(binary, config(work))
    loadtest(client, "--connections", "10", "--turns", "10", "--ramp-up", "0s")
    time.sleep(5)
    before, anon_before = server.rss(), server.rss_anon()
    r = loadtest(client, "--connections", "1000", "--turns", "10", "--ramp-up", "1s")
    peak = r.get("server", {}).get("rss_bytes_after") or 0
    time.sleep(5)
    after, anon_after = server.rss(), server.rss_anon()
    time.sleep(60)
    later, anon_later = server.rss(), server.rss_anon()
    server.stop()
    return {
        "burst: RssAnon before MB": anon_before,
        "burst: RssAnon 5 s after MB": anon_after,
        "burst: RssAnon 65 s after MB": anon_later,
        "burst: RssAnon 65 s after / before": anon_later / anon_before,
        "burst: RSS before MB": before,
        "burst: RSS at end of run MB": peak / 1048576,
        "burst: RSS 5 s after MB": after,
        "burst: after / before": after / before,
        "burst: RSS 65 s after MB": later,
        "burst: 65 s after / before": later / before,
    }


def scenario_soak(binary, client, work):
    server = Server(binary, config(work))
    r = loadtest(client, "--connections", "100", "--rate", "800", "--duration", "180s",
                 "--ramp-up", "0s")
    figures = {
        "soak: RssAnon at end MB": server.rss_anon(),
        "soak: RSS at end MB": server.rss(),
        "soak: turns/s": r.get("turns_per_s"),
        "soak: turn p99 ms": r.get("turn_ms", {}).get("p99"),
    }
    server.stop()
    return figures


def number(value):
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument(
        "--before", action="append", default=[],
        help="a binary to run side by side before BINARY (may be given more than once: the "
             "first is the reference the ratio column divides by)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(DEFAULT))
    parser.add_argument(
        "--client",
        help="the binary whose load generator drives both columns (default: the first given)",
    )
    args = parser.parse_args()
    binaries = [*args.before, args.binary]
    client = args.client or binaries[0]
    mock = subprocess.Popen([client, "mock-provider", "--port", "8081", "--chunks", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    results = {b: {} for b in binaries}
    try:
        for name in args.only.split(","):
            run = globals()[f"scenario_{name}"]
            # One start round holds 11 starts; one soak round takes 3 minutes per binary.
            for round_ in range(args.rounds if name not in ("start", "soak") else 1):
                for binary in binaries:
                    work = Path(tempfile.mkdtemp(prefix="round-two-"))
                    for sub in ["plain", "mcp"]:
                        (work / sub).mkdir()
                    try:
                        figures = run(binary, client, work)
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
                    print(f"{name} round {round_ + 1} {binary}: {figures}", file=sys.stderr)
                    for key, value in figures.items():
                        results[binary].setdefault(key, []).append(value)
    finally:
        mock.terminate()
    keys = list(results[binaries[-1]].keys())
    ratio = len(binaries) > 1
    print("| figure | " + " | ".join(binaries) + (" | last / first |" if ratio else " |"))
    print("|---|" + "---:|" * (len(binaries) + ratio))
    for key in keys:
        medians = []
        for b in binaries:
            values = [v for v in results[b].get(key, []) if v is not None]
            medians.append(statistics.median(values) if values else None)
        cells = [number(m) if m is not None else "-" for m in medians]
        if ratio:
            first, last = medians[0], medians[-1]
            cells.append(f"{last / first:.2f}" if first and last is not None else "-")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
